"""The demo's processes and its home: the platform, a local AWS endpoint, the Bolt agent.

The platform is `popcorn up`'s supervisor (API under Gunicorn, workers, scheduler) run in
a thread of the demo, its children writing to log files in POPCORN_HOME/logs so the
narrative stays readable. The AWS endpoint is a moto server on a loopback port, the Bolt
agent a real `python -m popcorn.remediation.agent` process. Everything started here is
stopped here, in reverse order, including the embedded Redis.

The demo works in the installation's home. A marker (`demo/world.json`) says the home
holds a demo world, which a rerun wipes and rebuilds; a home holding anything else is
left alone unless the user forces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import inspect, text

from popcorn.config import get_settings
from popcorn.supervisor import Child, Supervisor

MARKER = Path("demo") / "world.json"
# Tables whose rows are a user's data; anything else (tokens, jobs, leases) is bookkeeping.
DATA_PREFIXES = (
    "inventory_", "signals_", "events_", "remediation_", "traffic_", "certificates_", "triage_",
    "security_",
)  # fmt: skip
REDIS_KEYS = ("rq:*", "popcorn:*")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class DemoError(Exception):
    """A step of the demo could not be done; `step` says which."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


def home() -> Path:
    return get_settings().home.resolve()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# --- the home ---------------------------------------------------------------------------------


def _data_rows() -> int:
    """Rows in the installation's data tables (0 when there is no database yet)."""
    from popcorn.db import get_engine

    settings = get_settings()
    if not settings.database_url and not (home() / "popcorn.db").exists():
        return 0
    engine = get_engine()
    with engine.connect() as conn:
        names = [n for n in inspect(conn).get_table_names() if n.startswith(DATA_PREFIXES)]
        return sum(
            int(conn.execute(text(f'SELECT COUNT(*) FROM "{n}"')).scalar() or 0) for n in names
        )


def prepare_home(*, force: bool, seed: int, fast: bool) -> str:
    """Wipe a previous demo world (or an empty home) and mark the home as a demo's.

    Returns what was found: "new", "demo" (rebuilt) or "forced".
    """
    base = home()
    marker = base / MARKER
    found = "demo" if marker.exists() else "new"
    if found == "new":
        try:
            rows = _data_rows()
        except Exception as exc:
            raise DemoError("home", f"cannot read the installation in {base}: {exc}") from exc
        if rows and not force:
            raise DemoError(
                "home",
                f"{base} holds a Popcorn installation with data that is not a demo world "
                "(no demo marker); point POPCORN_HOME at an empty directory or pass --force "
                "to wipe it",
            )
        found = "forced" if rows else "new"
    _wipe(base)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"seed": seed, "fast": fast, "started_at": time.time()}))
    return found


def _wipe(base: Path) -> None:
    from popcorn.db import dispose_engines, get_engine
    from popcorn.jobs import embedded_redis_server, get_redis

    settings = get_settings()
    if settings.database_url:
        from popcorn.db import Base
        from popcorn.domains import load_models

        load_models()
        with get_engine().begin() as conn:
            present = set(inspect(conn).get_table_names())
            for table in reversed(Base.metadata.sorted_tables):
                if table.name in present:
                    conn.execute(table.delete())
    dispose_engines()
    if not settings.database_url:
        for suffix in ("", "-wal", "-shm", "-journal"):
            (base / f"popcorn.db{suffix}").unlink(missing_ok=True)
    for name in ("signals", "bolt", "demo", "metrics", "logs"):
        shutil.rmtree(base / name, ignore_errors=True)
    if settings.redis_url:
        # A shared Redis keeps other keys: only the queues' and Popcorn's own state goes
        # (rule throttles and dedupes would otherwise silence the new world's alerts).
        redis = get_redis()
        for pattern in REDIS_KEYS:
            for chunk in _chunks(redis.scan_iter(match=pattern, count=1000), 500):
                redis.delete(*chunk)
    else:
        embedded_redis_server()  # a fresh one, or the one a previous run left behind
        get_redis().flushall()


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_marker(info: dict[str, Any]) -> None:
    marker = home() / MARKER
    data = json.loads(marker.read_text()) if marker.exists() else {}
    marker.write_text(json.dumps({**data, **info}, indent=2))


# --- processes --------------------------------------------------------------------------------


@dataclass
class _LoggedChild(Child):
    """A supervised child whose output goes to a log file instead of the demo's terminal."""

    log: Path | None = None

    def start(self, env: dict[str, str]) -> None:
        assert self.log is not None
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
            )
        self.started_at = time.monotonic()


class Platform:
    """`popcorn up` in a background thread: API, workers and scheduler as child processes."""

    def __init__(self, host: str, port: int, *, job_workers: int = 2, web_workers: int = 2):
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        logs = home() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.supervisor = Supervisor(
            host=host, port=port, web_workers=web_workers, job_workers=job_workers
        )
        self.supervisor.children = [
            _LoggedChild(
                **{f.name: getattr(c, f.name) for f in fields(Child)}, log=logs / f"{c.name}.log"
            )
            for c in self.supervisor.children
        ]
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.supervisor.run, kwargs={"stop": self._stop.is_set}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise DemoError("platform", "the supervisor stopped; see the logs in POPCORN_HOME")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise DemoError(
            "platform", f"the API did not answer /readyz at {self.url} within {timeout:.0f}s"
        )

    def pids(self) -> dict[str, int]:
        return {
            c.name: c.process.pid
            for c in self.supervisor.children
            if c.process is not None and c.alive()
        }

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)


class AwsSandbox:
    """A moto server on a loopback port: the demo's own AWS (Auto Scaling, Route 53).

    It runs in its own process, launched first: importing moto takes seconds of CPU, which
    then overlap with building the world on the machine's other core.
    """

    def __init__(self) -> None:
        os.environ.update(AWS_ENV)  # throwaway credentials: nothing reaches a real account
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # where it will answer
        self.endpoint = ""  # the url, once it answers
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        log = home() / "demo" / "aws.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                # its default AMI catalogue takes seconds to load per region; the demo's
                # launch templates name an image moto does not check
                env={**os.environ, **AWS_ENV, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"},
            )

    def start(self, timeout: float = 120.0) -> str:
        """Wait until the server answers (launching it if that was not done yet)."""
        if self.process is None:
            self.launch()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not port_in_use("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise DemoError("aws", f"the moto server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise DemoError("aws", f"the moto server did not listen within {timeout:g} s")
            time.sleep(0.1)
        self.endpoint = self.url
        return self.endpoint

    def signal_stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process is not None:
            self.signal_stop()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self.endpoint = ""


class BoltAgent:
    """A host's Bolt agent as it runs there, its own process and config: the failing
    appliance's by default; the triage hosts' read their planted tree (`env`) with the
    collectors loaded (`settings`)."""

    def __init__(
        self,
        *,
        device: str,
        popcorn_url: str,
        token: str,
        tls: tuple[Path, Path, Path],
        disks: list[dict[str, Any]],
        directory: Path | None = None,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        log: str = "bolt-agent.log",
    ):
        self.directory = directory or home() / "demo" / "agent"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.disks = disks
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.disk_file = self.directory / "disks.yaml"
        cert, key, ca = tls
        self.config = self.directory / "agent.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "cert_file": str(cert),
                    "key_file": str(key),
                    "ca_file": str(ca),
                    "allowed_client_subjects": ["popcorn-runbook"],
                    "disk_health_file": str(self.disk_file),
                    "audit_log": str(self.directory / "audit.jsonl"),
                    "popcorn_url": popcorn_url,
                    "token": token,
                    "agent_name": f"{device}-bolt"[:100],
                    "device": device,
                    "advertise_url": self.url,
                    "heartbeat_interval": 10.0,
                    **(settings or {}),
                },
                sort_keys=False,
            )
        )
        self.write_disks(failing=None)
        self.env, self.log = env or {}, log
        self.process: subprocess.Popen[bytes] | None = None
        self._signalled = False

    def write_disks(self, failing: str | None) -> None:
        """What the host's disks report: all healthy, or one failing (SMART says so)."""
        disks = []
        for disk in self.disks:
            record = json.loads(json.dumps(disk))
            if record["name"] != failing:
                record["smart"] = {
                    k: v
                    for k, v in record["smart"].items()
                    if k in ("temperature_c", "power_on_hours")
                } | {"passed": True}
            disks.append(record)
        tmp = self.disk_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"disks": disks}, sort_keys=False))
        tmp.replace(self.disk_file)

    def start(self) -> None:
        log = home() / "logs" / self.log
        env = {**os.environ, "POPCORN_HOME": str(home()), **self.env}
        self._signalled = False
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "popcorn.remediation.agent", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_stop(self) -> None:
        if self.alive() and not self._signalled:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            self._signalled = True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal_stop()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def stop_embedded_redis() -> int | None:
    """Shut the embedded Redis down (it is a daemon, not a child); returns its pid."""
    from popcorn import jobs

    if get_settings().redis_url:
        return None
    jobs.embedded_redis_server()  # attach, so that the server it names is the one stopped
    return jobs.stop_embedded_redis()
