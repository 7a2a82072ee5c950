"""The core's own public tasks, with the limits people's submissions must keep to."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from popcorn.jobs.registry import task
from popcorn.jobs.worker import report_progress

MAX_ECHO_BYTES = 8192
MAX_SLEEP_SECONDS = 60


class EchoArguments(BaseModel):
    """Any keyword arguments, as long as they are small."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _small(self) -> EchoArguments:
        if len(json.dumps(self.model_extra, default=str)) > MAX_ECHO_BYTES:
            raise ValueError(f"at most {MAX_ECHO_BYTES} bytes of arguments")
        return self


class SleepArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=1.0, ge=0, le=MAX_SLEEP_SECONDS)


@task("core.echo", queue="high", public=True, retries=0, timeout=30, arguments=EchoArguments)
def echo(**kwargs: Any) -> dict[str, Any]:
    """Returns its arguments and where it ran: proves a worker is alive end to end."""
    return {"echo": kwargs, "worker": f"{socket.gethostname()}:{os.getpid()}"}


@task(
    "core.sleep",
    public=True,
    retries=0,
    timeout=MAX_SLEEP_SECONDS + 30,
    max_timeout=MAX_SLEEP_SECONDS + 30,
    arguments=SleepArguments,
)
def sleep(seconds: float = 1.0) -> dict[str, float]:
    """Sleeps, reporting progress: for checking timeouts, progress and worker loss.

    People may ask for up to a minute; the platform's own callers (tests, checks) may
    enqueue longer sleeps with their own timeout.
    """
    seconds = max(0.0, min(float(seconds), 3600.0))
    steps = max(1, int(seconds * 4))
    for i in range(steps):
        time.sleep(seconds / steps)
        report_progress(i + 1, steps)
    return {"slept": seconds}
