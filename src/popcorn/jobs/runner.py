"""Popcorn's rq worker classes: a prompt shutdown and a warm start.

rq's worker listens for commands on a pub/sub thread that blocks up to 60 s per
read, and redis-py's `stop()` now waits for that read to end, so a worker took
about a minute to exit after SIGTERM. Ours reads in short slices and stops
within a second once it is told to; `leave_process` then skips the interpreter's
teardown, which alone took several seconds on a busy machine.

The worker also prepares, once and before any fork, what every job needs
(configured SQLAlchemy mappers, compiled statements), and a domain's tasks when
its first job arrives, so a forked work horse starts with them instead of
redoing them per job.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from typing import Any

from rq import SimpleWorker, Worker

log = logging.getLogger("popcorn.jobs")

# How long the command thread blocks on one read: the longest a stop waits for it.
PUBSUB_READ_SECONDS = 1.0


class _PromptStop:
    """Mixin: subscribe with a short read so unsubscribing never waits a minute."""

    connection: Any
    pubsub: Any
    pubsub_thread: Any
    name: str

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})  # type: ignore[attr-defined]
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_READ_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,  # type: ignore[attr-defined]
        )

    def unsubscribe(self) -> None:
        if self.pubsub_thread:
            # Clear the thread's flag first, then wake its read with the unsubscribe reply
            # (rq does these the other way round: a thread that reads the reply before the
            # flag is cleared blocks for its whole read).
            self.pubsub_thread.stop(timeout=0)
            self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=PUBSUB_READ_SECONDS + 1)
            try:
                self.pubsub.close()
            except Exception:  # the thread may already have closed it
                log.debug("closing the worker's pub/sub failed", exc_info=True)
            self.pubsub_thread = None


class PopcornWorker(_PromptStop, Worker):
    """Forks a work horse per job (isolation); the horse starts warm."""

    def execute_job(self, job: Any, queue: Any) -> None:
        # In the worker, before the fork: the first job of a domain loads that domain's
        # tasks here, once, so no work horse imports it for itself.
        prepare_for(job.meta.get("task"))
        super().execute_job(job, queue)


class PopcornSimpleWorker(_PromptStop, SimpleWorker):
    """Runs jobs in the worker process itself (what `popcorn up` runs by default)."""


def warm_up() -> None:
    """What every job needs, done once in the worker so forks inherit it: the core's
    tables with their mappers configured, the job statements compiled, the plugins' tasks.
    A domain's tasks load with its first job (`prepare_for`), not at start-up."""
    import popcorn.audit
    import popcorn.auth
    import popcorn.domains
    import popcorn.outbox  # the core's tables: jobs, audit, tokens, events
    from popcorn.jobs.worker import prepare_statements

    popcorn.domains.load_plugins()
    prepare_for(None)
    prepare_statements()


_prepared = 0  # how many of BEFORE_FORK this process has run


def prepare_for(task_name: str | None) -> None:
    """Load what a job of `task_name` needs (its domain's tasks and their before-fork work)
    and configure any new mappers; nothing when that is done already."""
    global _prepared
    from sqlalchemy.orm import configure_mappers

    from popcorn.jobs.registry import BEFORE_FORK, TASKS

    if task_name is not None:
        if task_name in TASKS:
            return
        import popcorn.domains

        try:
            popcorn.domains.load_tasks_of(task_name)
        except Exception:  # the work horse records the failure on the job
            log.warning("could not load the tasks of %s", task_name, exc_info=True)
    while _prepared < len(BEFORE_FORK):  # domains' slow imports, once here
        BEFORE_FORK[_prepared]()
        _prepared += 1
    configure_mappers()  # else each work horse configures the new mappers on first use
    # What is loaded so far lives as long as the worker: keep the collector off it, so a
    # work horse's collections do not copy the parent's pages (the `gc.freeze` advice in
    # Python's documentation for processes that fork without exec).
    gc.collect()
    gc.freeze()


def make_worker(queues: list[Any], *, connection: Any, name: str, fork: bool) -> Any:
    worker_class = PopcornWorker if fork else PopcornSimpleWorker
    return worker_class(queues, connection=connection, name=name)


def leave_process(code: int) -> None:
    """End a stopped worker's process without tearing the interpreter down.

    Everything a worker owns is in the database and Redis by now; what is left is
    the interpreter's own teardown of every imported domain, which took several
    seconds on a busy machine, and a supervisor waits on that exit.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
