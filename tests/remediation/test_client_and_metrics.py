"""The Python client's remediation section, and the domain's Prometheus metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from remediation_kit import drain

from popcorn.client import Client, PopcornAPIError

pytestmark = pytest.mark.usefixtures("test_packs")


@pytest.fixture
def popcorn_client(app: Any, tokens: dict[str, str]) -> Any:
    with Client("http://popcorn", tokens["operator"], transport=httpx.WSGITransport(app=app)) as c:
        yield c


def test_start_wait_approve_and_read_back(popcorn_client: Any) -> None:
    client = popcorn_client
    assert "testing" in [p["name"] for p in client.remediation.packs()]
    started = client.remediation.start("testing.gated", {"n": 2})
    drain()
    waiting = client.remediation.wait(started["id"], timeout=10)
    assert waiting["status"] == "waiting_approval"
    approval = next(client.remediation.approvals(status="pending"))
    with pytest.raises(PopcornAPIError) as refused:
        client.remediation.approve(approval["id"], {"ticket": "nope"})
    assert refused.value.status == 422
    client.remediation.approve(approval["id"], {"ticket": "CHG-3"}, comment="ok")
    drain()
    done = client.remediation.wait(started["id"], timeout=10)
    assert done["status"] == "succeeded"
    assert [s["status"] for s in done["steps"]] == ["succeeded", "succeeded"]
    assert [e["id"] for e in client.remediation.executions(status="succeeded")] == [started["id"]]
    assert client.remediation.circuit()["state"] == "closed"
    with pytest.raises(PopcornAPIError) as missing:
        client.remediation.start("nope.nope")
    assert missing.value.status == 404


def test_metrics_count_executions_and_waiting_approvals(api: Any) -> None:
    from remediation_kit import start

    start("testing.trivial")
    start("testing.gated")
    drain()
    body = api.get("/metrics", role=None).data.decode()
    assert (
        'popcorn_remediation_executions{runbook="testing.trivial",status="succeeded"} 1.0' in body
    )
    assert "popcorn_remediation_approvals_pending 1.0" in body
    assert "popcorn_remediation_circuit_open 0.0" in body
