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

A forking worker claims each job's record before the fork and stores its outcome
after the work horse has exited, over the worker's own database connection; the
horse runs the task and writes the outcome to a file. A horse opening a database
connection of its own paid for a connection and, on SQLite, a read of the whole
schema, per job, which was most of what a job cost.

Between two jobs a worker takes the next one at once, still "busy": a success is
stored with the next claim, and the worker says "idle" (and stores what is left)
only when no job waits.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
import tempfile
import time
from typing import Any

import redis.exceptions
from rq import Queue, SimpleWorker, Worker
from rq.worker import WorkerStatus

log = logging.getLogger("popcorn.jobs")

# How long the command thread blocks on one read: the longest a stop waits for it.
PUBSUB_READ_SECONDS = 1.0
# What a Redis that is away (killed, restarting, failing over) raises.
REDIS_AWAY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# rq's worker heartbeat (its own liveness in Redis, not a job's) at most this often.
WORKER_BEAT_SECONDS = 1.0


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


_RECORD_JOB = re.compile(r"popcorn-(\d+)-\d+")  # `popcorn.jobs.broker.rq_job_id`


class _FewerRoundTrips:
    """Mixin: rq's per-job bookkeeping of the worker itself, in fewer Redis round trips.

    rq beats the worker's heartbeat (three commands, one round trip each) three times
    per job and sets its state to idle twice; on a busy machine every round trip costs
    a switch to Redis and back, and these were half of the Redis calls of an echo job.
    A heartbeat here is one pipelined round trip, and is skipped when one that kept the
    worker's key at least as long went out within WORKER_BEAT_SECONDS; an unchanged
    state is not written again, and "idle" goes out with the heartbeat rq sends right
    after setting it.
    """

    connection: Any
    worker_ttl: int
    _state: str
    _beat_at = 0.0
    _beat_ttl = 0
    _state_unsent = False

    _after_job = False  # see `_BetweenJobs`: "idle" waits until no job does

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        ttl = timeout or self.worker_ttl + 60
        now = time.monotonic()
        if pipeline is None:
            recent = now - self._beat_at < WORKER_BEAT_SECONDS and ttl <= self._beat_ttl
            if recent and (self._after_job or not self._state_unsent):
                return
            with self.connection.pipeline(transaction=False) as pipe:
                self._add_state(pipe)
                super().heartbeat(timeout, pipe)  # type: ignore[misc]
                pipe.execute()
        else:  # part of rq's own pipeline, sent with it
            self._add_state(pipeline)
            super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        self._beat_at, self._beat_ttl = now, ttl

    def _add_state(self, pipeline: Any) -> None:
        if self._state_unsent:
            super().set_state(self._state, pipeline)  # type: ignore[misc]
            self._state_unsent = False

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._state:
            return
        if pipeline is None and state == WorkerStatus.IDLE:  # rq beats right after
            self._state, self._state_unsent = state, True
            return
        self._state_unsent = False
        super().set_state(state, pipeline)  # type: ignore[misc]


class _BetweenJobs:
    """Mixin: right after a job, take the next waiting one in one round trip, still "busy";
    only when none waits, store the successes left for the next claim, then wait as rq does.

    rq set the state to idle and back to busy around every job (a round trip), and each
    success cost a database commit of its own; a busy worker now does neither.
    """

    _after_job: bool
    connection: Any
    queue_class: Any
    job_class: Any
    serializer: Any
    death_penalty_class: Any
    name: str
    log: Any
    _ordered_queues: Any

    def work(self, *args: Any, **kwargs: Any) -> bool:
        from popcorn.jobs import worker as run

        run.defer_successes(True)
        try:
            return bool(super().work(*args, **kwargs))  # type: ignore[misc]
        finally:
            run.defer_successes(False)
            run.store_deferred_outcomes()

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
        finally:
            self._after_job = True

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        if self._after_job:
            self._after_job = False
            found = self._next_waiting_job()
            if found is not None:
                return found
        from popcorn.jobs import worker as run

        run.store_deferred_outcomes()
        wait = 0.5
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
            except REDIS_AWAY as exc:
                # rq waits out a Redis that is away only inside its blocking pop; its "idle"
                # write before it, and heartbeat after it, end the worker. A Sentinel
                # failover (or a restart) that outlasts the client's retries is waited out.
                if self._stop_requested:  # type: ignore[attr-defined]
                    return None
                self.log.error(
                    "Worker %s: Redis is away (%s); again in %.1f s", self.name, exc, wait
                )
                time.sleep(wait)
                wait = min(wait * 2, self.max_connection_wait_time)  # type: ignore[attr-defined]

    def check_for_suspension(self, burst: bool) -> None:
        """rq's check, except that a Redis that is away is no reason to end the worker: the
        dequeue that follows waits for it."""
        try:
            super().check_for_suspension(burst)  # type: ignore[misc]
        except REDIS_AWAY:
            self.log.warning("Worker %s: Redis is away; not checking for suspension", self.name)

    def _next_waiting_job(self) -> Any:
        """The first job waiting on this worker's queues, or None (Redis errors included:
        rq's own dequeue, next, waits them out)."""
        if self.should_run_maintenance_tasks:  # type: ignore[attr-defined]
            self.run_maintenance_tasks()  # type: ignore[attr-defined]
        try:
            found = self.queue_class.dequeue_any(
                self._ordered_queues,
                None,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )
        except REDIS_AWAY:
            return None
        if found is not None:
            job, queue = found
            self.reorder_queues(reference_queue=queue)  # type: ignore[attr-defined]
            job.redis_server_version = self.get_redis_server_version()  # type: ignore[attr-defined]
            self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
        return found


class PopcornWorker(_PromptStop, _BetweenJobs, _FewerRoundTrips, Worker):
    """Forks a work horse per job (isolation); the horse starts warm and, unless its
    task uses the database, never opens it: the worker claims and stores around it."""

    _outcome_file: Any = None
    _horse_status: int | None = None

    def execute_job(self, job: Any, queue: Any) -> None:
        # In the worker, before the fork: the first job of a domain loads that domain's
        # tasks here, once, so no work horse imports it for itself.
        prepare_for(job.meta.get("task"))
        found = _RECORD_JOB.fullmatch(job.id)
        if found is None:  # not one of ours: rq's own way
            super().execute_job(job, queue)
            return
        from popcorn.jobs import worker as run

        record_id = int(found.group(1))
        try:
            claim = run._claim(record_id, run.worker_name())
        except Exception:  # the database refused: the horse claims for itself, as in-process
            log.warning("could not claim job %s before forking", record_id, exc_info=True)
            super().execute_job(job, queue)
            return
        if self._outcome_file is None:
            # lives as long as the worker (one file for every job)
            self._outcome_file = tempfile.TemporaryFile(prefix="popcorn-outcome-")  # noqa: SIM115
        fd = self._outcome_file.fileno()
        os.ftruncate(fd, 0)
        run.hand_off(record_id, claim, fd)
        try:
            if claim is None:  # canceled or a duplicate: the horse runs nothing
                super().execute_job(job, queue)
                return
            # The worker beats the heartbeat from the claim until the outcome is stored.
            with run._heartbeat(record_id):
                self._horse_status = None
                super().execute_job(job, queue)
                outcome = run.read_outcome(fd)
                if outcome is None:
                    outcome = (False, f"the work horse ended without an outcome ({self._ended()})")
                try:
                    run.store_outcome(claim, *outcome, defer=True)
                except Exception:  # left to the scheduler: the record stays running, unbeaten
                    log.exception("could not store the outcome of job %s", record_id)
        finally:
            run.end_hand_off()

    def wait_for_horse(self) -> Any:
        pid, status, rusage = super().wait_for_horse()
        if pid:
            self._horse_status = status
        return pid, status, rusage

    def _ended(self) -> str:
        """How the last work horse ended, in words."""
        status = self._horse_status
        if status is None:
            return "unknown exit"
        if os.WIFSIGNALED(status):
            return f"killed by signal {os.WTERMSIG(status)}"
        return f"exit status {os.waitstatus_to_exitcode(status)}"


class PopcornSimpleWorker(_PromptStop, _BetweenJobs, _FewerRoundTrips, SimpleWorker):
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


# The first job waiting on the first of several queues, in one round trip.
_FIRST_POP = """
for _, key in ipairs(KEYS) do
  local id = redis.call('LPOP', key)
  if id then return {key, id} end
end
return false
"""


class PopcornQueue(Queue):
    """rq's queue, except that a worker serving several queues in burst mode takes its
    next job with one Redis call instead of an LPOP per queue until one has a job
    (a burst worker serving every queue asked "alerts" first, in vain, for every job)."""

    @classmethod
    def lpop(cls, queue_keys: Any, timeout: int | None, connection: Any = None) -> Any:
        if timeout is not None or len(queue_keys) < 2:  # blocking: BLPOP takes them all
            return super().lpop(queue_keys, timeout, connection=connection)
        found = _first_pop(connection)(keys=list(queue_keys))
        return tuple(found) if found else None


_scripts: dict[int, Any] = {}


def _first_pop(connection: Any) -> Any:
    """The registered script, one per connection (registering hashes it again)."""
    script = _scripts.get(id(connection))
    if script is None or script.registered_client is not connection:
        script = _scripts[id(connection)] = connection.register_script(_FIRST_POP)
    return script


def make_worker(queue_names: list[str], *, connection: Any, name: str, fork: bool) -> Any:
    worker_class = PopcornWorker if fork else PopcornSimpleWorker
    queues = [PopcornQueue(q, connection=connection) for q in queue_names]
    return worker_class(queues, connection=connection, name=name, queue_class=PopcornQueue)


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
