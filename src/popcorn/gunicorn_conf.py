"""Gunicorn settings for `popcorn serve` and `popcorn up`."""

from __future__ import annotations

from typing import Any

accesslog = "-"
graceful_timeout = 30
timeout = 120


def worker_exit(_server: Any, _worker: Any) -> None:
    """End a stopping worker without the interpreter's teardown of every loaded domain
    (seconds of CPU per worker, which `popcorn up` and the demo waited on)."""
    from popcorn.jobs.runner import leave_process

    leave_process(0)


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead worker's metric files so /metrics stays right across restarts."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# Several Popcorn processes may run on one host; a shared control socket would collide.
control_socket_disable = True

# Long URLs (a filter with thousands of values) reach the app, which answers 414 in the
# JSON error envelope; Gunicorn's own limit would answer with an HTML page. Gunicorn still
# caps a request line at 1 MiB when this is 0.
limit_request_line = 0
