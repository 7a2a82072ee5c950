"""Nothing outlives its supervisor: a parent-death signal for children, a guard for Redis.

Every child of `popcorn up` asks the kernel (Linux `prctl(PR_SET_PDEATHSIG)`) for
SIGTERM when the supervisor dies, however it dies, kill -9 included: workers then
stop after their current job, the scheduler and the API stop cleanly.

The embedded Redis daemonizes, so it is no child of anyone; `python -m
popcorn.lifeline --pidfile P` is a tiny guard the supervisor starts beside it.
When the supervisor dies, the guard stops the Redis named in the pidfile (SIGTERM,
then SIGKILL if it will not go). On a normal stop the supervisor stops Redis itself
and sends the guard SIGINT, which means "stand down".

This module imports only the standard library, so the guard starts in milliseconds.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
STAND_DOWN = signal.SIGINT
REDIS_STOP_SECONDS = 10.0


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A Popen `preexec_fn`: the child gets `sig` when the process starting it dies."""
    parent = os.getpid()

    def preexec() -> None:
        set_parent_death_signal(sig)
        if os.getppid() != parent:  # the parent died before the request was in place
            os.kill(os.getpid(), sig)

    return preexec


def _pid_from(pidfile: str) -> int:
    try:
        with open(pidfile) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _is_redis(pid: int) -> bool:
    """Guard against a recycled pid: only a redis-server is ever signalled."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"redis-server" in fh.read()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_redis(pid: int, *, timeout: float = REDIS_STOP_SECONDS) -> None:
    """SIGTERM a redis-server, then SIGKILL it if it is still there after `timeout`."""
    if pid <= 0 or not _is_redis(pid):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def guard_redis(pidfile: str, parent: int) -> int:
    """Wait for the supervisor to die (or to say stand down); then stop its Redis."""
    stand_down = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stand_down
        stand_down = stand_down or signum == STAND_DOWN

    signal.signal(STAND_DOWN, on_signal)
    signal.signal(signal.SIGTERM, on_signal)  # the parent-death signal: look at the parent
    set_parent_death_signal(signal.SIGTERM)
    while os.getppid() == parent and not stand_down:
        time.sleep(0.5)
    if not stand_down:
        stop_redis(_pid_from(pidfile))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stop the embedded Redis if its owner dies.")
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    return guard_redis(args.pidfile, args.parent)


if __name__ == "__main__":
    sys.exit(main())
