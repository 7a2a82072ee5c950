"""Events jobs: process stored events, deliver webhooks, apply retention."""

from __future__ import annotations

from typing import Any

from popcorn import jobs
from popcorn.db import session_scope
from popcorn.events import actions, service
from popcorn.events import settings as event_settings


@jobs.task(service.PROCESS_TASK, queue=service.ALERTS_QUEUE, retries=8, timeout=600)
def process(event_ids: list[int], queue: str = service.ALERTS_QUEUE) -> dict[str, Any]:
    """Match stored events against the active rules and run the actions (idempotent);
    then sweep any backlog of pending events."""
    return service.drain(event_ids, queue=queue)


@jobs.task(service.SWEEP_TASK, queue=service.ALERTS_QUEUE, retries=0, timeout=600)
def sweep() -> dict[str, Any]:
    """Process events pending for too long (their drainer job was lost); scheduled."""
    return service.sweep()


@jobs.task(actions.WEBHOOK_TASK, queue="default", retries=actions.DEFAULT_WEBHOOK_RETRIES)
def webhook(action_run_id: int) -> dict[str, Any]:
    """One delivery attempt; raising makes the job retry with exponential backoff."""
    return actions.deliver_webhook(action_run_id)


@jobs.task("events.retention", queue="low", retries=2, timeout=3600)
def retention() -> dict[str, Any]:
    """Delete events older than the retention period (scheduled hourly)."""
    with session_scope() as session:
        return event_settings.apply_retention(session=session)
