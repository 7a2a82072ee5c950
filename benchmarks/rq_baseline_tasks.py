"""The bare-rq baseline's job: what `core.echo` does, with no job record around it."""

from __future__ import annotations

import os
import socket
from typing import Any


def echo(**kwargs: Any) -> dict[str, Any]:
    return {"echo": kwargs, "worker": f"{socket.gethostname()}:{os.getpid()}"}
