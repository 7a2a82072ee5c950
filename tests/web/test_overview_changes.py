"""The overview's "Recent changes" shows what people changed, not every batch of data."""

from __future__ import annotations

from collections.abc import Callable

from console_kit import Console, text_of

from popcorn.audit import record_change
from popcorn.db import session_scope


def test_recent_changes_leave_out_signal_ingest(console: Callable[[str], Console]) -> None:
    with session_scope() as session:
        record_change(session, "update", "traffic_region", "us-east-1", after={"instances": 14})
        for minute in range(12):
            record_change(session, "ingest", "signals_batch", f"batch-{minute}", after={"n": 60})
    overview = text_of(console("viewer").page("/ui/"))
    assert "traffic_region" in overview and "us-east-1" in overview
    assert "batch-" not in overview
    log = text_of(console("viewer").page("/ui/audit"))
    assert "batch-11" in log
