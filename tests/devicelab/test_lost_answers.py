"""A beat whose answer is lost (the agent timed out after the platform had committed the
assignment) must not leave the test assigned for ever and the device idle: the next beat
hands the same attempt out again, and the agent runs it once."""

from __future__ import annotations

from typing import Any

import httpx
from lab_kit import FakeAgent, catalog, device

from popcorn.devicelab import agent as device_agent

API = "/api/v1/devicelab"


def _run(api: Any, name: str) -> dict[str, Any]:
    """Two tests on one single-slot device: one to hold it, one waiting behind it."""
    assert api.post(f"{API}/tests", json={"tests": catalog()}, role="operator").status_code == 200
    response = api.post(
        f"{API}/runs",
        json={
            "build": {"app_version": "7.2.0", "change": "CL-2"},
            "query": "name:playback.start or name:ui.browse",
            "devices": f"name:{name}",
        },
        role="operator",
    )
    assert response.status_code == 201, response.json
    return dict(response.json)


def _executions(api: Any, run: dict[str, Any]) -> list[dict[str, Any]]:
    items = api.get(f"{API}/runs/{run['id']}/executions", role="viewer").json["items"]
    return sorted(items, key=lambda e: e["id"])


def _redelivered(api: Any, name: str) -> list[dict[str, Any]]:
    device_id = api.get(f"{API}/devices/{name}", role="viewer").json["id"]
    audit = api.get("/api/v1/audit?object_type=devicelab_device&limit=100", role="admin").json
    return [
        r for r in audit["items"] if r["object_id"] == str(device_id) and r["action"] == "redeliver"
    ]


def test_a_lost_answer_is_handed_out_again_as_the_same_attempt(api: Any) -> None:
    agent = FakeAgent(api, device("tv5", "tv-a"))
    run = _run(api, "tv5")
    lost = agent.poll()["assignments"]  # committed by the platform, never seen by the agent
    assert len(lost) == 1 and lost[0]["redelivered"] is False
    held = lost[0]["execution"]

    again = agent.poll()["assignments"]
    assert [(a["execution"], a["attempt"], a["redelivered"]) for a in again] == [(held, 1, True)]
    assert [r["after"]["executions"] for r in _redelivered(api, "tv5")] == [[held]]

    # Once the agent says it runs it, it is not handed out again, and the slot stays full.
    assert agent.poll(running=[held])["assignments"] == []
    statuses = {e["id"]: e["status"] for e in _executions(api, run)}
    assert statuses[held] == "running"
    assert len(_redelivered(api, "tv5")) == 1

    result = {"execution": held, "status": "passed", "duration_s": 1.0}
    following = agent.poll(results=[result])
    assert following["recorded"] == [held]
    assert [a["redelivered"] for a in following["assignments"]] == [False]
    assert following["assignments"][0]["execution"] != held
    # A redelivery is neither a retry nor a failure: one attempt per test, nothing lost.
    outcomes = sorted((e["attempt"], e["status"]) for e in _executions(api, run))
    assert outcomes == [(1, "assigned"), (1, "passed")]


class _LosingTransport(httpx.BaseTransport):
    """Serves the app in process; `lose` beats reach the platform but their answers do not
    reach the agent (as when the agent's request times out after the platform committed)."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.WSGITransport(app=app)
        self.lose = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.lose and request.url.path.endswith("/poll"):
            self.lose -= 1
            response.read()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_the_agent_runs_work_whose_answer_it_lost_exactly_once(api: Any, app: Any) -> None:
    args = device_agent.parser().parse_args(
        ["--name", "tv6", "--family", "tv-a", "--token", api.tokens["operator"],
         "--url", "http://lab.test", "--pool", "lab-1", "--time-scale", "1000"]
    )  # fmt: skip
    agent = device_agent.Agent(args)
    transport = _LosingTransport(app)
    agent.client.close()
    agent.client = httpx.Client(
        transport=transport, headers={"Authorization": f"Bearer {api.tokens['operator']}"}
    )
    try:
        agent.register()
        run = _run(api, "tv6")
        transport.lose = 1
        agent.beat()  # the platform assigns a test; the agent never hears of it
        assert agent.running == {}
        assigned = [e for e in _executions(api, run) if e["status"] == "assigned"]
        assert [e["device_name"] for e in assigned] == ["tv6"]

        agent.beat()  # the next beat's answer carries it again
        assert list(agent.running) == [assigned[0]["id"]]
        started = agent.running[assigned[0]["id"]]

        agent.beat()  # reported running: it is running, and it is not started twice
        assert agent.running == {assigned[0]["id"]: started}
        statuses = {e["id"]: e["status"] for e in _executions(api, run)}
        assert statuses[assigned[0]["id"]] == "running"
        assert sorted(statuses.values()) == ["queued", "running"]  # one slot, one test
    finally:
        agent.shutdown()
        for cancel in list(agent.running.values()):
            cancel.set()
        agent.client.close()
