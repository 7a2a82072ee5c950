"""Viewers read what an execution did, not the tracebacks of its failed steps (issue #12, 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from remediation_kit import drain, start

pytestmark = pytest.mark.usefixtures("test_packs")


def test_a_failed_step_shows_its_traceback_to_operators_and_one_line_to_viewers(
    api: Any, tmp_path: Path
) -> None:
    execution_id = start("testing.flaky", {"marker": str(tmp_path / "marker"), "fail_times": 5})
    drain()
    url = f"/api/v1/remediation/executions/{execution_id}"
    operator = api.get(url, role="operator").json
    shaky = next(s for s in operator["steps"] if s["name"] == "shaky")
    traces = [e["message"] for e in shaky["logs"] if "Traceback" in e["message"]]
    assert traces and "packs" in traces[0]  # the operator sees where it failed

    viewer = api.get(url, role="viewer").json
    assert viewer["status"] == operator["status"] == "failed"
    shaky = next(s for s in viewer["steps"] if s["name"] == "shaky")
    messages = [e["message"] for e in shaky["logs"]]
    assert all("\n" not in m for m in messages)
    assert not any("File " in m and ".py" in m for m in messages)
    assert any(m.startswith("Traceback") and m.endswith("(details hidden)") for m in messages)
    assert shaky["error"] == "RuntimeError: planned failure 3"
