"""Gunicorn settings for `popcorn serve` and `popcorn up`."""

from __future__ import annotations

from typing import Any

accesslog = "-"
graceful_timeout = 30
timeout = 120


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead worker's metric files so /metrics stays right across restarts."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# Several Popcorn processes may run on one host; a shared control socket would collide.
control_socket_disable = True
