"""Running one argv on the host: never a shell, always its own process group, always bounded.

Every process an action starts goes through `run_argv`, so the agent can kill a
whole process group (a script and whatever it spawned) on timeout, on
cancellation and when the agent stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# After the main process exits, how long to keep reading pipes that a
# background child may still hold open.
DRAIN_GRACE = 0.5


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False


class ProcessTracker:
    """The live process groups of this agent, killed together when the agent stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self, grace: float) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            kill_group(proc, grace)


def kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, give the leader `grace` seconds, then SIGKILL the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_argv(
    argv: Sequence[str],
    *,
    on_output: Callable[[str, bytes], None],
    deadline: float,
    kill_grace: float,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    cancel: threading.Event | None = None,
    tracker: ProcessTracker | None = None,
) -> ProcessOutcome:
    """Run `argv` (shell=False) until it exits, `deadline` (monotonic) passes or `cancel` is set.

    Output is handed to `on_output("stdout"|"stderr", bytes)` as it arrives.
    Raises OSError when the program cannot be started.
    """
    proc = subprocess.Popen(
        list(argv),
        shell=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    if tracker is not None:
        tracker.add(proc)
    try:
        return _supervise(proc, on_output, deadline, kill_grace, cancel)
    finally:
        if tracker is not None:
            tracker.discard(proc)


def _supervise(
    proc: subprocess.Popen[bytes],
    on_output: Callable[[str, bytes], None],
    deadline: float,
    kill_grace: float,
    cancel: threading.Event | None,
) -> ProcessOutcome:
    assert proc.stdout is not None and proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
    selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
    exited_at: float | None = None
    stop: str | None = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                stop = "timeout"
                break
            if cancel is not None and cancel.is_set():
                stop = "cancel"
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > DRAIN_GRACE:
                break
            for key, _ in selector.select(min(deadline - now, 0.2)):
                data = os.read(key.fd, READ_SIZE)
                if data:
                    on_output(key.data, data)
                else:
                    selector.unregister(key.fileobj)
        if stop is None:
            while True:
                try:
                    proc.wait(timeout=min(max(deadline - time.monotonic(), 0.0), 0.2))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        stop = "timeout"
                        break
                    if cancel is not None and cancel.is_set():
                        stop = "cancel"
                        break
    finally:
        selector.close()
        if stop is not None:
            kill_group(proc, kill_grace)
        proc.stdout.close()
        proc.stderr.close()
    if stop == "timeout":
        return ProcessOutcome(exit_code=proc.returncode, timed_out=True)
    if stop == "cancel":
        return ProcessOutcome(exit_code=proc.returncode, cancelled=True)
    return ProcessOutcome(exit_code=proc.returncode)
