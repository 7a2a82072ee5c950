"""The agent's local audit log: one JSON line per call, kept even when Popcorn is unreachable.

The file is opened per write in append mode, so log rotation (move and recreate)
needs no signal to the agent.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def record(
        self,
        *,
        caller: str,
        action: str | None,
        args: Any,
        outcome: str,
        duration_s: float,
        **extra: Any,
    ) -> None:
        """Append one entry; a write failure is logged, never raised into the request."""
        entry = {
            "time": datetime.now(UTC).isoformat(),
            "caller": caller,
            "action": action,
            "args": args,
            "outcome": outcome,
            "duration_s": round(duration_s, 3),
            **extra,
        }
        line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
        except OSError as exc:
            log.error("cannot write audit log %s: %s", self.path, exc)
