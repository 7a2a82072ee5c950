"""Helpers for Popcorn's tests: API calls with a role, real child processes, polling.

Import them with `from popcorn_testing import ...` (tests/support is on sys.path); never
import a conftest module, since every test folder may have its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class Api:
    """Calls the test app with a role's token: api.get("/api/v1/jobs", role="viewer")."""

    def __init__(self, client: Any, tokens: dict[str, str]):
        self.client = client
        self.tokens = tokens

    def _headers(self, role: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if role:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        role: str | None = "admin",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        return self.client.open(path, method=method, headers=self._headers(role, headers), **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Real child processes (workers, servers) that are always killed at teardown."""

    def __init__(self, env: dict[str, str]):
        self.env = {**os.environ, **env}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        from popcorn.lifeline import die_with_parent

        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "popcorn", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # none outlives a test run that is killed
        )
        self.procs.append(proc)
        return proc

    def serve(self, log: Path, *, workers: int = 1, timeout: float = 30) -> str:
        """Gunicorn serving the app on a free loopback port; its URL once it answers."""
        import httpx

        port = free_port()
        self.start("serve", "--port", str(port), "--workers", str(workers), log=log)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=timeout)
        return url

    def kill(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout: float = 30
    ) -> None:
        """Signal a process and all its descendants (rq work horses have their own group)."""
        import psutil

        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(sig)
        proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    self.kill(proc, signal.SIGTERM, timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill(proc, signal.SIGKILL)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; fail the test with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")
