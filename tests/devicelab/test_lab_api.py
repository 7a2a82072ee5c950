"""The device lab over HTTP: devices and reservations, catalog and queries, runs placed on
agents by capability, retries, lost devices, JUnit out and in, pipeline hooks."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
from lab_kit import FakeAgent, catalog, device

from popcorn.devicelab.protocol import SIGNATURE_HEADER, canonical, sign

API = "/api/v1/devicelab"


@pytest.fixture
def lab(api: Any) -> dict[str, FakeAgent]:
    response = api.post(f"{API}/tests", json={"tests": catalog()}, role="operator")
    assert response.status_code == 200, response.json
    assert (
        api.post(
            f"{API}/suites", json={"name": "smoke", "query": "suite:smoke"}, role="operator"
        ).status_code
        == 201
    )
    return {
        "tv1": FakeAgent(api, device("tv1", "tv-a", hdr=["hdr10", "dolby_vision"])),
        "tv2": FakeAgent(api, device("tv2", "tv-b", hdr=["hdr10"])),
        "con1": FakeAgent(api, device("con1", "console-a")),
    }


def _start(api: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "build": {
            "app_version": "7.1.0",
            "change": "CL-1",
            "branch": "feature",
            "components": ["ui"],
        },
        "suite": "smoke",
    }
    body.update(extra)
    response = api.post(f"{API}/runs", json=body, role="operator")
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_device_registry_reservation_and_roles(api: Any) -> None:
    created = api.post(
        f"{API}/devices", json=device("tv9", "tv-a", hdr=["hdr10"], site=""), role="operator"
    )
    assert created.status_code == 201
    assert (
        api.post(f"{API}/devices", json=device("tv9", "tv-a"), role="operator").status_code == 409
    )
    assert api.post(f"{API}/devices", json=device("tv8", "tv-a"), role="viewer").status_code == 403
    bad = api.post(f"{API}/devices", json={"name": "x", "platform": "toaster"}, role="operator")
    assert bad.status_code == 422 and bad.json["error"]["code"] == "validation_error"
    reserved = api.post(
        f"{API}/devices/tv9/reservation", json={"minutes": 30, "note": "debug"}, role="operator"
    )
    assert reserved.status_code == 200 and reserved.json["reserved_by"]
    listed = api.get(f"{API}/devices?q=platform:tv and hdr:hdr10", role="viewer").json
    assert [d["name"] for d in listed["items"]] == ["tv9"]
    query_error = api.get(f"{API}/devices?q=platform:tv and (hdr:hdr10", role="viewer")
    assert query_error.status_code == 422
    assert query_error.json["error"]["details"]["position"] == 26  # the end, where ")" is missing
    assert api.delete(f"{API}/devices/tv9/reservation", role="operator").json["reserved_by"] is None
    history = api.get("/api/v1/audit?object_type=devicelab_device", role="viewer").json["items"]
    assert {h["action"] for h in history} >= {"create", "reserve", "release"}


def test_expired_reservation_frees_the_device(api: Any) -> None:
    from popcorn.db import session_scope, utcnow
    from popcorn.devicelab import scheduling, service

    api.post(f"{API}/devices", json=device("tv7", "tv-a"), role="operator")
    api.post(f"{API}/devices/tv7/reservation", json={"minutes": 5}, role="operator")
    with session_scope() as session:
        found = service.get_device(session=session, ref="tv7")
        found.reserved_until = utcnow() - timedelta(seconds=1)
    with session_scope() as session:
        assert scheduling.sweep(session=session)["reservations_expired"] == 1
    assert api.get(f"{API}/devices/tv7", role="viewer").json["reserved_by"] is None


def test_catalog_query_and_errors(api: Any) -> None:
    api.post(f"{API}/tests", json={"tests": catalog()}, role="operator")
    found = api.get(
        f"{API}/tests?q=component:playback and platform:tv and not tag:flaky and duration<100",
        role="viewer",
    ).json
    assert [t["name"] for t in found["items"]] == ["playback.start"]
    either = api.get(
        f"{API}/tests?q=(component:login or tag:hdr) and duration>=100", role="viewer"
    ).json
    assert sorted(t["name"] for t in either["items"]) == ["login.long", "playback.hdr"]
    wrong = api.post(f"{API}/query", json={"query": "component:playback and and"}, role="viewer")
    assert wrong.status_code == 422
    assert wrong.json["error"]["details"]["position"] == 23
    unknown = api.post(f"{API}/query", json={"query": "colour:red"}, role="viewer")
    assert "unknown field" in unknown.json["error"]["message"]
    bad_require = api.post(
        f"{API}/tests",
        json={"tests": [{"name": "x.y", "requires": {"teleport": True}}]},
        role="operator",
    )
    assert bad_require.status_code == 422


def test_a_run_spreads_over_capable_devices_and_reports_junit(
    api: Any, lab: dict[str, FakeAgent]
) -> None:
    run = _start(api)
    # smoke: playback.start on 3 families, playback.hdr only on tv-a, ui.browse on 3 families
    assert run["summary"]["executions"] == 7
    given: dict[str, list[dict[str, Any]]] = {}
    for name, agent in lab.items():
        given[name] = agent.poll()["assignments"]
    assert all(len(items) == 1 for items in given.values())  # one slot each
    done = 0
    while True:
        progressed = False
        for name, agent in lab.items():
            for item in given.get(name, []):
                status = (
                    "failed"
                    if item["test"] == "ui.browse" and item["attempt"] == 1 and name == "tv2"
                    else "passed"
                )
                kind = "network" if status == "failed" else ""
                assert agent.result(item["execution"], status, kind).status_code == 200
                done += 1
                progressed = True
            given[name] = agent.poll()["assignments"]
            progressed = progressed or bool(given[name])
        if not progressed:
            break
    assert done == 8  # seven, plus the retry of the flaky-looking failure
    shown = api.get(f"{API}/runs/{run['id']}", role="viewer").json
    assert shown["status"] == "passed"
    assert shown["summary"]["flaky"] == 1
    hdr = api.get(f"{API}/runs/{run['id']}/executions?test_name=playback.hdr", role="viewer").json[
        "items"
    ]
    assert [e["device_name"] for e in hdr] == ["tv1"]  # the only Dolby Vision device
    report = api.get(f"{API}/runs/{run['id']}/junit", role="viewer")
    root = ET.fromstring(report.data)
    assert root.get("tests") == "7" and root.get("failures") == "0"
    assert len(root.findall(".//flakyFailure")) == 1
    status = api.get(f"{API}/runs/{run['id']}/status", role="viewer").json
    assert status["stage_status"] == "SUCCEEDED" and status["report_url"].endswith(
        f"/runs/{run['id']}"
    )


def test_results_ride_on_the_beat_and_are_audited_once_per_batch(
    api: Any, lab: dict[str, FakeAgent]
) -> None:
    big = FakeAgent(api, device("tv9", "tv-a", hdr=["dolby_vision"], slots=3))
    run = _start(api, devices="name:tv9")
    given = big.poll()["assignments"]
    assert len(given) == 3  # the smoke suite's three tests, one beat, three slots
    ids = sorted(item["execution"] for item in given)
    results = [
        {"execution": i, "status": "passed", "duration_s": 2.0, "message": "", "failure_kind": ""}
        for i in ids
    ]
    beat = big.poll(running=[], results=results)
    assert sorted(beat["recorded"]) == ids and beat["refused"] == [] and beat["cancel"] == []
    assert api.get(f"{API}/runs/{run['id']}", role="viewer").json["status"] == "passed"
    audit = api.get("/api/v1/audit?object_type=devicelab_device&limit=100", role="admin").json
    mine = [r for r in audit["items"] if r["object_id"] == str(_device_id(api, "tv9"))]
    assigned = [r for r in mine if r["action"] == "assign"]
    reported = [r for r in mine if r["action"] == "results"]
    assert len(assigned) == 1 and sorted(assigned[0]["after"]["executions"]) == ids
    assert len(reported) == 1 and reported[0]["after"]["results"] == {str(i): "passed" for i in ids}
    # A result sent again (its answer lost) is refused, never recorded twice.
    again = big.poll(results=results[:1])
    assert again["recorded"] == [] and again["refused"][0]["execution"] == ids[0]
    assert "already passed" in again["refused"][0]["reason"]
    bad = big.call("poll", {"running": [], "results": [{"execution": 1, "status": "maybe"}]})
    assert bad.status_code == 422 and "results.0" in bad.json["error"]["message"]


def _device_id(api: Any, name: str) -> int:
    return int(api.get(f"{API}/devices/{name}", role="viewer").json["id"])


def test_a_real_failure_is_attributed_to_the_change(api: Any, lab: dict[str, FakeAgent]) -> None:
    run = _start(api, query="component:ui", suite="", retries=0)
    for agent in lab.values():
        for item in agent.poll()["assignments"]:
            status = "failed" if agent.name == "con1" else "passed"
            agent.result(item["execution"], status, "assertion")
    shown = api.get(f"{API}/runs/{run['id']}", role="viewer").json
    assert shown["status"] == "failed"
    assert shown["summary"]["culprit"] == "CL-1"
    failed = api.get(f"{API}/runs/{run['id']}/executions?status=failed", role="viewer").json[
        "items"
    ]
    assert [(e["device_name"], e["attribution"]) for e in failed] == [("con1", "change")]
    assert (
        api.get(f"{API}/runs/{run['id']}/status", role="viewer").json["stage_status"] == "TERMINAL"
    )


def test_unplaceable_suite_is_refused_whole(api: Any, lab: dict[str, FakeAgent]) -> None:
    response = api.post(
        f"{API}/runs",
        json={
            "build": {"app_version": "1"},
            "suite": "smoke",
            "devices": "family:tv-b or family:console-a",
        },
        role="operator",
    )
    assert response.status_code == 422
    assert response.json["error"]["details"]["unplaceable"][0]["test"] == "playback.hdr"
    assert api.get(f"{API}/runs", role="viewer").json["items"] == []


def test_a_silent_device_is_marked_offline_and_its_test_rescheduled(
    api: Any, lab: dict[str, FakeAgent], monkeypatch: pytest.MonkeyPatch
) -> None:
    from popcorn.db import session_scope, utcnow
    from popcorn.devicelab import scheduling, service

    run = _start(api, query="name:login.long", suite="")
    first = lab["con1"].poll()["assignments"]
    assert [a["test"] for a in first] == ["login.long"]
    with session_scope() as session:
        found = service.get_device(session=session, ref="con1")
        found.last_heartbeat = utcnow() - timedelta(seconds=120)
    with session_scope() as session:
        swept = scheduling.sweep(session=session)
    assert swept["offline"] == 1 and swept["rescheduled"] == 1
    executions = api.get(f"{API}/runs/{run['id']}/executions", role="viewer").json["items"]
    assert [(e["status"], e["attempt"]) for e in executions] == [("lost", 1), ("queued", 2)]
    assert api.get(f"{API}/devices/con1", role="viewer").json["agent_state"] == "offline"
    # the late result of the lost attempt is refused; the agent is told to stop it
    late = lab["con1"].result(first[0]["execution"], "passed")
    assert late.status_code == 409
    again = lab["con1"].poll(running=[first[0]["execution"]])
    assert again["cancel"] == [first[0]["execution"]]
    assert again["assignments"][0]["attempt"] == 2


def test_agent_requests_must_be_signed_with_its_key(api: Any, lab: dict[str, FakeAgent]) -> None:
    forged = lab["tv1"].call("poll", {"running": []}, key="not-the-key")
    assert forged.status_code == 403
    unknown = api.post(f"{API}/agents/ghost/poll", data=b"{}", role="operator")
    assert unknown.status_code == 404 and unknown.json["error"]["details"]["register"] is True
    viewer = api.post(f"{API}/agents/register", json={"device": device("v", "tv-a")}, role="viewer")
    assert viewer.status_code == 403


def test_pipeline_hook_starts_a_run_only_when_signed(api: Any, lab: dict[str, FakeAgent]) -> None:
    assert (
        api.post(
            f"{API}/hooks", json={"name": "spin", "suite": "smoke"}, role="operator"
        ).status_code
        == 403
    )
    created = api.post(f"{API}/hooks", json={"name": "spin", "suite": "smoke"}, role="admin").json
    secret = created["secret"]
    assert "secret" not in api.get(f"{API}/hooks", role="admin").json["items"][0]
    body = canonical({"app_version": "7.2.0", "change": "CL-9", "components": ["playback"]})
    bad = api.post(
        f"{API}/hooks/spin/trigger",
        data=body,
        headers={SIGNATURE_HEADER.replace("Devicelab", "Popcorn"): "sha256=00"},
        role="operator",
    )
    assert bad.status_code == 403 and bad.json["error"]["code"] == "bad_signature"
    assert api.get(f"{API}/runs", role="viewer").json["items"] == []
    good = api.post(
        f"{API}/hooks/spin/trigger",
        data=body,
        headers={"X-Popcorn-Signature": sign(secret, body)},
        role="operator",
    )
    assert good.status_code == 202, good.json
    assert good.json["stage_status"] == "RUNNING"
    callback = canonical({"app_version": "7.2.0", "callback_url": "http://169.254.169.254/x"})
    refused = api.post(
        f"{API}/hooks/spin/trigger",
        data=callback,
        headers={"X-Popcorn-Signature": sign(secret, callback)},
        role="operator",
    )
    assert refused.status_code == 403 and refused.json["error"]["code"] == "outbound_refused"


def test_junit_in_counts_in_history_and_bad_xml_is_refused(api: Any) -> None:
    build = api.post(
        f"{API}/builds", json={"app_version": "6.0", "branch": "main"}, role="operator"
    ).json
    xml = b"""<testsuite name="ext"><testcase classname="ext" name="ext.one" time="1.5"/>
    <testcase classname="ext" name="ext.two" time="2"><failure message="boom"/></testcase>
    <testcase classname="ext" name="ext.two" time="2"/></testsuite>"""
    imported = api.post(f"{API}/builds/{build['id']}/junit?family=tv-a", data=xml, role="operator")
    assert imported.status_code == 201, imported.json
    assert imported.json["status"] == "passed" and imported.json["summary"]["flaky"] == 1
    flaky = api.get(f"{API}/flaky", role="viewer").json["items"]
    assert flaky[0]["test"] == "ext.two"
    broken = api.post(
        f"{API}/builds/{build['id']}/junit", data=b"<testsuite><testcase", role="operator"
    )
    assert broken.status_code == 422 and "line 1" in broken.json["error"]["message"]
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite>&a;</testsuite>'
    assert (
        api.post(f"{API}/builds/{build['id']}/junit", data=bomb, role="operator").status_code == 422
    )
    assert json.loads(api.get(f"{API}/runs", role="viewer").data)["count"] == 1
