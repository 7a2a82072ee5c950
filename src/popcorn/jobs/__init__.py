"""Background jobs on rq, with the database as the record of truth.

- `models`: the job record, schedules and leases; `registry`: tasks and the limits
  of the public ones; `broker`: Redis, rq and `enqueue`; `worker`: running one
  attempt; `scheduler`: the loop that promotes, re-sends and reaps, so that every
  state a crash can leave a job in leads somewhere; `service`: what people do with
  jobs (submit, cancel, list), audited; `tasks`: the core's own public tasks.

Everything other code uses is importable from `popcorn.jobs` itself.
"""

from __future__ import annotations

from popcorn.jobs.broker import (
    embedded_redis_alive,
    embedded_redis_server,
    enqueue,
    get_redis,
    reset_redis,
    restart_embedded_redis,
    rq_job_id,
    rq_queue,
    stop_embedded_redis,
)
from popcorn.jobs.models import ENDED, QUEUES, STATES, JobRecord, Lease, Schedule
from popcorn.jobs.registry import (
    RESERVED_QUEUES,
    TASKS,
    Task,
    before_fork,
    check_submission,
    get_task,
    public_tasks,
    task,
)
from popcorn.jobs.scheduler import (
    acquire_lease,
    next_run,
    promote_due,
    reap_lost,
    release_lease,
    resend_lost,
    run_due_schedules,
    run_scheduler,
    scheduler_tick,
)
from popcorn.jobs.service import (
    JOB_FILTERS,
    cancel_job,
    counts_by_status,
    create_schedule,
    delete_schedule,
    ensure_schedule,
    get_job,
    list_jobs,
    list_schedules,
    recent_jobs,
    submit_job,
    wait_for,
)
from popcorn.jobs.tasks import echo, sleep
from popcorn.jobs.worker import backoff_seconds, execute, report_progress, run_worker

__all__ = [
    "ENDED",
    "JOB_FILTERS",
    "QUEUES",
    "RESERVED_QUEUES",
    "STATES",
    "TASKS",
    "JobRecord",
    "Lease",
    "Schedule",
    "Task",
    "acquire_lease",
    "backoff_seconds",
    "before_fork",
    "cancel_job",
    "check_submission",
    "counts_by_status",
    "create_schedule",
    "delete_schedule",
    "echo",
    "embedded_redis_alive",
    "embedded_redis_server",
    "enqueue",
    "ensure_schedule",
    "execute",
    "get_job",
    "get_redis",
    "get_task",
    "list_jobs",
    "list_schedules",
    "next_run",
    "promote_due",
    "public_tasks",
    "reap_lost",
    "recent_jobs",
    "release_lease",
    "report_progress",
    "resend_lost",
    "reset_redis",
    "restart_embedded_redis",
    "rq_job_id",
    "rq_queue",
    "run_due_schedules",
    "run_scheduler",
    "run_worker",
    "scheduler_tick",
    "sleep",
    "stop_embedded_redis",
    "submit_job",
    "task",
    "wait_for",
]
