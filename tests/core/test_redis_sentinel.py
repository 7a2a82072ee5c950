"""Redis Sentinel: the `redis+sentinel://` setting, its checks and masking, and a real
failover (master killed, replica promoted) that workers, the scheduler and the submitting
process ride out without a restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import rq.worker.base as rq_base
from click.testing import CliRunner
from popcorn_testing import Processes, free_port, wait_until

from popcorn import jobs
from popcorn.cli import cli
from popcorn.commands import register
from popcorn.config import Settings, reset_settings
from popcorn.db import session_scope
from popcorn.redis_urls import SENTINEL_PORT, mask_redis_url, parse_sentinel_url

register(cli)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SERVICE = "popcorn"


def test_sentinel_url_is_read_with_defaults_and_both_passwords() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://:redis%2Fpw@s1:26380,s2,[::1]:26381/popcorn/3"
        "?sentinel_password=sent&sentinel_username=watch"
    )
    assert target.sentinels == [("s1", 26380), ("s2", SENTINEL_PORT), ("::1", 26381)]
    assert (target.service, target.db) == ("popcorn", 3)
    assert (target.username, target.password) == (None, "redis/pw")
    assert target.sentinel_options == {"sentinel_password": "sent", "sentinel_username": "watch"}
    plain = parse_sentinel_url("redis+sentinel://app:pw@s1/popcorn")
    assert (plain.username, plain.password, plain.db) == ("app", "pw", 0)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://s1:26379", "names no service"),
        ("redis+sentinel:///popcorn/0", "names no Sentinel host"),
        ("redis+sentinel://s1:26379,:26380/popcorn", "empty host"),
        ("redis+sentinel://s1:port/popcorn", "port 'port' of s1"),
        ("redis+sentinel://s1:70000/popcorn", "port '70000'"),
        ("redis+sentinel://s1/popcorn/zero", "database must be a number"),
        ("redis+sentinel://s1/popcorn/0/extra", "expected /service[/db]"),
        ("redis+sentinel://s1/popcorn?socket_timeout=1", "option 'socket_timeout'"),
        ("sentinel://s1:26379", "must start with one of"),
        ("s1:6379", "must start with one of"),
    ],
)
def test_a_wrong_redis_url_is_one_line_naming_the_fault(
    url: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="redis_url") as raised:
        Settings(redis_url=url)
    assert says in str(raised.value)
    monkeypatch.setenv("POPCORN_REDIS_URL", url)
    reset_settings()
    try:
        shown = CliRunner().invoke(cli, ["config", "show"], catch_exceptions=False)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert shown.exit_code == 1
    lines = shown.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and says in lines[0]


def test_config_show_masks_redis_and_sentinel_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "redis+sentinel://app:hunter2@s1:26379,s2:26379/popcorn/0?sentinel_password=s3cret"
    monkeypatch.setenv("POPCORN_REDIS_URL", url)
    reset_settings()
    try:
        shown = json.loads(CliRunner().invoke(cli, ["config", "show", "--json"]).stdout)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert shown["redis_url"] == (
        "redis+sentinel://app:****@s1:26379,s2:26379/popcorn/0?sentinel_password=****"
    )
    assert mask_redis_url("redis://:pw@h:6379/0") == "redis://:****@h:6379/0"
    assert mask_redis_url("unix:///tmp/r.sock?db=1&password=pw") == (
        "unix:///tmp/r.sock?db=1&password=****"
    )
    assert mask_redis_url("redis://h:6379/0") == "redis://h:6379/0"


@dataclass
class SentinelSet:
    """A master, its replica and three Sentinels (quorum 2), each a real redis-server."""

    root: Path
    master_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        data = 'bind 127.0.0.1\nsave ""\nappendonly no\n'
        self._server("master", f"{data}port {self.master_port}\n")
        self._server(
            "replica", f"{data}port {self.replica_port}\nreplicaof 127.0.0.1 {self.master_port}\n"
        )
        for i, port in enumerate(self.sentinel_ports):
            self._server(
                f"sentinel{i}",
                f"bind 127.0.0.1\nport {port}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n",
                sentinel=True,
            )
        wait_until(self._ready, timeout=30, interval=0.2)

    def _server(self, name: str, config: str, *, sentinel: bool = False) -> None:
        folder = self.root / name
        folder.mkdir()
        conf = folder / "redis.conf"  # a Sentinel rewrites its file: one each, writable
        conf.write_text(f"{config}dir {folder}\n")
        argv = [REDIS_SERVER, str(conf), *(["--sentinel"] if sentinel else [])]
        log = (folder / "log").open("wb")
        self.servers[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _ready(self) -> bool:
        """The replica is in sync and every Sentinel knows the replica and the other two
        (else a failover cannot be agreed on)."""
        try:
            replica = redis_lib.Redis(port=self.replica_port, socket_timeout=1)
            if replica.info("replication").get("master_link_status") != "up":
                return False
            for port in self.sentinel_ports:
                sentinel = redis_lib.Redis(port=port, socket_timeout=1)
                if len(sentinel.sentinel_sentinels(SERVICE)) != 2:
                    return False
                if not sentinel.sentinel_slaves(SERVICE):
                    return False
        except redis_lib.RedisError:
            return False
        return True

    def master_port_now(self) -> int | None:
        """The master's port as the first Sentinel that answers tells it."""
        for port in self.sentinel_ports:
            try:
                found = redis_lib.Redis(
                    port=port, socket_timeout=1
                ).sentinel_get_master_addr_by_name(SERVICE)
            except redis_lib.RedisError:
                continue
            return int(found[1]) if found else None
        return None

    def stop(self) -> None:
        for server in self.servers.values():
            if server.poll() is None:
                server.kill()
            server.wait(timeout=10)


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed: a Sentinel failover needs real servers")
    servers = SentinelSet(tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def _submit(task: str, **kwargs: Any) -> int:
    with session_scope() as session:
        return jobs.enqueue(session, task, **kwargs).id


def _blpop_or_error(client: redis_lib.Redis, key: str) -> Any:
    try:
        return client.blpop([key], timeout=4)
    except redis_lib.RedisError as exc:
        return exc


def _blocked_clients(port: int) -> int:
    return int(redis_lib.Redis(port=port).info("clients")["blocked_clients"])


def _job(job_id: int) -> jobs.JobRecord:
    with session_scope(readonly=True) as session:
        return jobs.get_job(session=session, job_id=job_id)


@pytest.mark.slow
@pytest.mark.parametrize("worker_args", [(), ("--no-fork",)], ids=["forking", "no-fork"])
def test_jobs_keep_running_through_a_sentinel_failover(
    worker_args: tuple[str, ...],
    sentinel_set: SentinelSet,
    processes: Processes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The master is SIGKILLed; once Sentinel promotes the replica, a job submitted by the
    same process runs on the same worker, and a delayed one is handed over by the same
    scheduler: no process restarted, no client rebuilt."""
    monkeypatch.setenv("POPCORN_REDIS_URL", sentinel_set.url)
    reset_settings()
    jobs.reset_redis()
    try:
        processes.env["POPCORN_REDIS_URL"] = sentinel_set.url
        worker = processes.start("worker", *worker_args, log=sentinel_set.root / "worker.log")
        scheduler = processes.start("scheduler", log=sentinel_set.root / "scheduler.log")
        first = _submit("core.echo", arguments={"n": 1})
        wait_until(lambda: _job(first).status == "finished", timeout=30)
        assert str(worker.pid) in _job(first).worker

        # A command waiting on the master when it dies is sent again to the new one.
        waited: list[Any] = []
        already = _blocked_clients(sentinel_set.master_port)  # the idle worker's pop
        blocked = threading.Thread(
            target=lambda: waited.append(_blpop_or_error(jobs.get_redis(), "popcorn:nothing"))
        )
        blocked.start()
        wait_until(lambda: _blocked_clients(sentinel_set.master_port) > already, timeout=10)
        sentinel_set.servers["master"].send_signal(signal.SIGKILL)
        sentinel_set.servers["master"].wait()
        wait_until(lambda: sentinel_set.master_port_now() == sentinel_set.replica_port, timeout=30)

        second = _submit("core.echo", arguments={"n": 2})
        delayed = _submit("core.echo", arguments={"n": 3}, delay_seconds=1)
        wait_until(lambda: _job(second).status == "finished", timeout=30)
        wait_until(lambda: _job(delayed).status == "finished", timeout=30)
        assert _job(second).result["echo"] == {"n": 2}
        assert _job(second).attempts == 1
        assert str(worker.pid) in _job(second).worker
        assert str(worker.pid) in _job(delayed).worker
        assert worker.poll() is None and scheduler.poll() is None
        blocked.join(timeout=30)
        assert waited == [None]  # the pop timed out on the new master, no ConnectionError
        # the process's own client now talks to the promoted replica
        assert jobs.get_redis().info("server")["tcp_port"] == sentinel_set.replica_port
    finally:
        processes.stop_all()
        monkeypatch.undo()
        reset_settings()
        jobs.reset_redis()


def test_a_worker_waits_for_redis_instead_of_ending(monkeypatch: pytest.MonkeyPatch) -> None:
    """rq ends a worker whose Redis is away outside its blocking pop (a failover longer
    than the client's retries); ours waits and then runs the job."""
    import popcorn_test_plugins  # noqa: F401  (the test tasks, in this process)

    from popcorn.jobs.runner import PopcornSimpleWorker

    job_id = _submit("core.echo", arguments={"n": 1})
    beat, suspended = PopcornSimpleWorker.heartbeat, rq_base.BaseWorker.check_for_suspension
    failures = {"beat": 2, "suspended": 1}

    def away(kind: str) -> None:
        if failures[kind]:
            failures[kind] -= 1
            raise redis_lib.ConnectionError("Error 111 connecting: Connection refused.")

    def flaky_beat(self: Any, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is None:
            away("beat")
        beat(self, timeout, pipeline)

    def flaky_suspended(self: Any, burst: bool) -> None:
        away("suspended")
        suspended(self, burst)

    monkeypatch.setattr(PopcornSimpleWorker, "heartbeat", flaky_beat)
    monkeypatch.setattr(rq_base.BaseWorker, "check_for_suspension", flaky_suspended)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        jobs.run_worker(burst=True, fork=False)  # in this process: rq installs its handlers
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert failures == {"beat": 0, "suspended": 0}
    assert _job(job_id).status == "finished"
