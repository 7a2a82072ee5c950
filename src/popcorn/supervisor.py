"""`popcorn up`: the API, workers and scheduler as supervised child processes.

Children run in their own process groups so that Ctrl-C reaches only the
supervisor, which then asks them to stop in order: the API first (no new work), then
workers with a warm shutdown (the running job finishes), then the scheduler, and waits
for them all together.
A child that dies is restarted with backoff. When no Redis URL is set the
supervisor owns the embedded Redis, so it outlives every child, and starts it
again (same socket, same configuration, data from its append-only file) if it
dies; the children reconnect by themselves.

Nothing outlives the supervisor, whatever kills it (kill -9 included): every
child gets SIGTERM from the kernel when it dies (a parent-death signal), and a
small guard stops the embedded Redis, a daemon no one is parent of (see
`popcorn.lifeline`).

Workers: `job_workers` general ones serve every queue, "alerts" first, and one
more serves the "alerts" queue alone, so alert processing never waits behind
long jobs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from popcorn.config import get_settings
from popcorn.lifeline import STAND_DOWN, die_with_parent

log = logging.getLogger("popcorn.supervisor")


def stop_flag() -> Callable[[], bool]:
    """A flag set by SIGTERM or SIGINT, for loops that should end cleanly."""
    event = threading.Event()

    def handle(_signum: int, _frame: object) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return event.is_set


def _metrics_dir() -> str:
    path = get_settings().home.resolve() / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def gunicorn_argv(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--config",
        "python:popcorn.gunicorn_conf",
        "popcorn.wsgi:app",
    ]


def exec_gunicorn(host: str, port: int, workers: int) -> None:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _metrics_dir())
    argv = gunicorn_argv(host, port, workers)
    os.execv(argv[0], argv)


@dataclass
class Child:
    name: str
    argv: list[str]
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv, env=env, start_new_session=True, preexec_fn=die_with_parent()
        )
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_stop(self) -> None:
        """Ask the child to stop (it finishes what it is doing), without waiting."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(self.stop_signal)

    def wait_stopped(self, deadline: float) -> None:
        """Wait for a child asked to stop until `deadline` (monotonic), then kill it."""
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, self.stop_timeout)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        self.signal_stop()
        self.wait_stopped(time.monotonic() + self.stop_timeout)


def stop_all(children: list[Child]) -> None:
    """Stop children together: every one is asked first, in order, then all are waited on,
    so the stop takes as long as the slowest child rather than the sum of them."""
    started = time.monotonic()
    for child in children:
        child.signal_stop()
    for child in children:
        child.wait_stopped(started + child.stop_timeout)


@dataclass
class Supervisor:
    host: str
    port: int
    web_workers: int = 2
    job_workers: int = 2
    fork_jobs: bool = False
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        popcorn = [sys.executable, "-m", "popcorn"]
        self.children = [Child("api", gunicorn_argv(self.host, self.port, self.web_workers))]
        fork = [] if self.fork_jobs else ["--no-fork"]
        self.children += [
            Child(f"worker-{i + 1}", [*popcorn, "worker", *fork]) for i in range(self.job_workers)
        ]
        self.children.append(
            Child("worker-alerts", [*popcorn, "worker", "--queue", "alerts", *fork])
        )
        self.children.append(Child("scheduler", [*popcorn, "scheduler"]))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir()
        env["POPCORN_HOME"] = str(get_settings().home.resolve())
        return env

    def run(self, stop: Callable[[], bool] | None = None) -> None:
        logging.basicConfig(
            level=get_settings().log_level, format="%(asctime)s %(name)s %(message)s"
        )
        stop = stop or stop_flag()
        redis_owner = None
        guard: subprocess.Popen[bytes] | None = None
        env = self._env()
        if not get_settings().redis_url:
            from popcorn.jobs import embedded_redis_server

            redis_owner = embedded_redis_server()  # lives as long as the supervisor
            env["POPCORN_REDIS_URL"] = f"unix://{redis_owner.socket_file}"
            guard = self._guard_redis(redis_owner.pidfile, env)
        for child in self.children:
            child.start(env)
        try:
            while not stop():
                if redis_owner is not None:
                    self._keep_redis()
                for child in self.children:
                    if not child.alive() and not stop():
                        self._restart(child, env)
                time.sleep(0.5)
        finally:
            log.info("stopping")
            stop_all(self.children)  # api, workers, then scheduler are asked in that order
            if redis_owner is not None:
                from popcorn.jobs import stop_embedded_redis

                stop_embedded_redis()
            if guard is not None:
                guard.send_signal(STAND_DOWN)
                guard.wait(10)

    @staticmethod
    def _guard_redis(pidfile: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the guard that stops the embedded Redis if this supervisor dies."""
        argv = [sys.executable, "-m", "popcorn.lifeline"]
        argv += ["--pidfile", pidfile, "--parent", str(os.getpid())]
        return subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=die_with_parent())

    def _keep_redis(self) -> None:
        """Start the embedded Redis again if its server process died."""
        from popcorn.jobs import embedded_redis_alive, restart_embedded_redis

        if embedded_redis_alive():
            return
        log.warning("embedded Redis is gone; starting it again")
        try:
            restart_embedded_redis()
        except Exception:
            log.exception("could not restart the embedded Redis; trying again")

    def _restart(self, child: Child, env: dict[str, str]) -> None:
        code = child.process.returncode if child.process else None
        quick = time.monotonic() - child.started_at < 10
        child.restarts = child.restarts + 1 if quick else 1
        delay = min(2**child.restarts, 30) if quick else 0.5
        log.warning("%s exited with %s; restarting in %.1fs", child.name, code, delay)
        time.sleep(delay)
        child.start(env)
