"""Events API: CloudEvents and Alertmanager ingest with tokens, search, rules, incidents,
dead letters, secrets and settings."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from popcorn import jobs
from popcorn.db import session_scope

RULES = """
- name: disk-runbook
  description: Clean the cache disk of the alerting host.
  events: [alertmanager.alert.firing]
  priority: 10
  conditions:
    labels.alertname: CacheDiskFull
    any:
      - labels.severity: critical
      - data.annotations.summary: {regex: "9[5-9]% full"}
  actions:
    - type: runbook
      params:
        runbook: storage.disk-cleanup
        inputs: {mount: "{{ labels.mountpoint }}"}
        target: {device: "{{ labels.instance.split(':')[0] }}"}
- name: disk-incident
  events: ["alertmanager.alert.*"]
  conditions: {labels.alertname: CacheDiskFull}
  actions:
    - type: incident
      params:
        key: "{{ data.fingerprint }}"
        title: "{{ data.annotations.summary }}"
        severity: "{{ labels.severity }}"
"""

CLOUDEVENT = {
    "specversion": "1.0",
    "id": "deploy-8812",
    "source": "ci/spinnaker",
    "type": "deploy.finished",
    "subject": "edge-api",
    "time": "2024-05-06T08:01:02Z",
    "region": "eu-west-1",
    "data": {"version": "v2.14.1", "result": "success"},
}


@pytest.fixture
def runbooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Records start_runbook calls instead of running runbooks."""
    from popcorn.remediation import api as remediation

    calls: list[dict[str, Any]] = []

    class Execution:
        status = "pending"

        def __init__(self) -> None:
            self.id = len(calls)

    def start_runbook(*, session: Any, runbook: str, **kwargs: Any) -> Execution:
        calls.append({"runbook": runbook, **kwargs})
        return Execution()

    monkeypatch.setattr(remediation, "start_runbook", start_runbook)
    yield calls


def run_jobs() -> None:
    for _ in range(10):
        with session_scope() as session:
            ids = list(
                session.scalars(select(jobs.JobRecord.id).where(jobs.JobRecord.status == "pending"))
            )
        if not ids:
            return
        for job_id in ids:
            jobs.execute(job_id)


def load_rules(api: Any, text: str = RULES) -> Any:
    return api.post(
        "/api/v1/events/rules?file=disk.yaml",
        data=text,
        headers={"Content-Type": "application/yaml"},
        role="operator",
    )


def test_alertmanager_webhook_with_bearer_token_end_to_end(
    api: Any, alertmanager_payload: dict[str, Any], runbooks: list[dict[str, Any]]
) -> None:
    assert load_rules(api).status_code == 200
    body = json.dumps(alertmanager_payload)
    headers = {"Content-Type": "application/json"}
    assert (
        api.post("/api/v1/events/alertmanager", data=body, headers=headers, role=None).status_code
        == 401
    )
    assert (
        api.post(
            "/api/v1/events/alertmanager", data=body, headers=headers, role="viewer"
        ).status_code
        == 403
    )

    answer = api.post("/api/v1/events/alertmanager", data=body, headers=headers, role="operator")
    assert answer.status_code == 202
    result = answer.get_json()
    assert result["accepted"] == 3 and result["duplicates"] == 0
    assert [e["type"] for e in result["events"]] == [
        "alertmanager.alert.firing",
        "alertmanager.alert.firing",
        "alertmanager.alert.resolved",
    ]
    ids = [e["id"] for e in result["events"]]
    stored = api.get(f"/api/v1/events/{ids[0]}", role="viewer").get_json()
    assert stored["status"] == "pending" and stored["origin"] == "alertmanager"
    assert stored["labels"]["instance"] == "oca-ams-017:9100"
    assert stored["received_by"] == "token:test-operator"

    again = api.post("/api/v1/events/alertmanager", data=body, headers=headers, role="operator")
    assert again.status_code == 202
    assert again.get_json()["duplicates"] == 3
    assert [e["id"] for e in again.get_json()["events"]] == ids

    run_jobs()
    assert [(c["runbook"], c["target"], c["inputs"]) for c in runbooks] == [
        ("storage.disk-cleanup", {"device": "oca-ams-017"}, {"mount": "/cache"})
    ]
    first = api.get(f"/api/v1/events/{ids[0]}", role="viewer").get_json()
    assert first["status"] == "processed"
    assert [(m["rule_name"], m["acted"]) for m in first["matches"]] == [
        ("disk-runbook", True),
        ("disk-incident", True),
    ]
    assert [a["status"] for m in first["matches"] for a in m["actions"]] == ["succeeded"] * 2
    assert first["incidents"][0]["change"] == "opened"
    warning = api.get(f"/api/v1/events/{ids[1]}", role="viewer").get_json()
    assert [m["rule_name"] for m in warning["matches"]] == ["disk-incident"]

    # the resolved notification for the firing alert closes its incident
    resolved = copy.deepcopy(alertmanager_payload)
    resolved["status"] = "resolved"
    alert = resolved["alerts"][0]
    resolved["alerts"] = [{**alert, "status": "resolved", "endsAt": "2024-05-06T08:20:00Z"}]
    answer = api.post("/api/v1/events/alertmanager", data=json.dumps(resolved), headers=headers,
                      role="operator")  # fmt: skip
    assert answer.get_json()["accepted"] == 1
    run_jobs()
    incidents = api.get("/api/v1/events/incidents", role="viewer").get_json()["items"]
    by_key = {i["key"]: i for i in incidents}
    assert by_key["8e1ac4f2d9b3c7a0"]["status"] == "resolved"
    assert by_key["8e1ac4f2d9b3c7a0"]["event_count"] == 2
    assert by_key["0f3b6e2a91c4d5e8"]["status"] == "open"
    shown = api.get(f"/api/v1/events/incidents/{by_key['8e1ac4f2d9b3c7a0']['id']}").get_json()
    assert [e["change"] for e in shown["events"]] == ["opened", "resolved"]


def test_malformed_alertmanager_payload_names_the_field(
    api: Any, alertmanager_payload: dict[str, Any]
) -> None:
    alertmanager_payload["alerts"][2]["labels"]["severity"] = 3
    answer = api.post("/api/v1/events/alertmanager", json=alertmanager_payload, role="operator")
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["details"]["path"] == "alerts[2].labels.severity"
    assert "must be a string" in error["message"]
    bad = api.post("/api/v1/events/alertmanager", data="{not json", role="operator",
                   headers={"Content-Type": "application/json"})  # fmt: skip
    assert bad.status_code == 422 and "not valid JSON" in bad.get_json()["error"]["message"]
    assert api.get("/api/v1/events", role="viewer").get_json()["count"] == 0


def test_cloudevents_single_batch_and_errors(api: Any) -> None:
    single = api.post(
        "/api/v1/events",
        data=json.dumps(CLOUDEVENT),
        headers={"Content-Type": "application/cloudevents+json"},
        role="operator",
    )
    assert single.status_code == 202 and single.get_json()["accepted"] == 1
    batch = [{**CLOUDEVENT, "id": f"deploy-{n}", "subject": f"svc-{n}"} for n in range(3)] + [
        CLOUDEVENT
    ]
    answer = api.post(
        "/api/v1/events",
        data=json.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
        role="operator",
    )
    assert answer.status_code == 202
    assert [e["status"] for e in answer.get_json()["events"]] == ["accepted"] * 3 + ["duplicate"]

    broken = [CLOUDEVENT, {**CLOUDEVENT, "id": "x", "source": ""}]
    answer = api.post("/api/v1/events", json=broken, role="operator")
    assert answer.status_code == 422
    assert answer.get_json()["error"]["details"] == {
        "path": "[1].source",
        "reason": "must not be empty",
    }
    answer = api.post("/api/v1/events", data=json.dumps(CLOUDEVENT), role="operator",
                      headers={"Content-Type": "text/csv"})  # fmt: skip
    assert answer.status_code == 422
    assert "unsupported content type" in answer.get_json()["error"]["message"]
    assert (
        api.get("/api/v1/events", role="viewer").get_json()["count"] == 4
    )  # nothing of the bad batch


def test_search_filters(api: Any, alertmanager_payload: dict[str, Any]) -> None:
    api.post("/api/v1/events/alertmanager", json=alertmanager_payload, role="operator")
    api.post("/api/v1/events", json=CLOUDEVENT, role="operator")

    def subjects(query: str) -> list[str | None]:
        answer = api.get("/api/v1/events?" + query, role="viewer")
        assert answer.status_code == 200, answer.get_json()
        return [e["subject"] for e in answer.get_json()["items"]]

    assert subjects("type=deploy.finished") == ["edge-api"]
    assert subjects("label=region:eu-west-1") == ["edge-api"]
    assert subjects("label=severity:critical&label=instance:oca-ams-017:9100") == ["CacheDiskFull"]
    assert subjects("q=v2.14") == ["edge-api"]
    assert subjects("source=alertmanager&type__ic=resolved") == ["CacheDiskFull"]
    assert subjects("time__gte=2024-05-06T08:00:00Z") == ["edge-api"]
    page = api.get("/api/v1/events?limit=2", role="viewer").get_json()
    assert page["count"] == 4 and len(page["items"]) == 2 and page["next"]
    rest = api.get(f"/api/v1/events?limit=2&cursor={page['next']}", role="viewer").get_json()
    assert len(rest["items"]) == 2
    assert api.get("/api/v1/events?label=nocolon", role="viewer").status_code == 422
    assert api.get("/api/v1/events/deploy-8812", role="viewer").get_json()["subject"] == "edge-api"
    assert api.get("/api/v1/events/nope", role="viewer").status_code == 404


def test_rules_api_versions_errors_and_explain(
    api: Any, alertmanager_payload: dict[str, Any]
) -> None:
    first = load_rules(api).get_json()
    assert first["created"] == 2
    broken = RULES.replace('regex: "9[5-9]% full"', 'regex: "9[5-9"')
    answer = load_rules(api, broken)
    assert answer.status_code == 422
    details = answer.get_json()["error"]["details"]
    assert details["file"] == "disk.yaml" and details["line"] == 10
    assert details["reason"].startswith("invalid regular expression")
    assert details["path"].endswith("summary.regex")
    rules = api.get("/api/v1/events/rules", role="viewer").get_json()["items"]
    assert {r["name"]: r["active_version"] for r in rules} == {
        "disk-incident": 1,
        "disk-runbook": 1,
    }
    assert rules[1]["priority"] == 10 and rules[1]["actions"] == ["runbook"]

    changed = api.post(
        "/api/v1/events/rules",
        json={"text": RULES.replace("priority: 10", "priority: 20"), "file": "disk.yaml"},
        role="operator",
    ).get_json()
    assert {r["name"]: r["change"] for r in changed["rules"]} == {
        "disk-runbook": "updated",
        "disk-incident": "unchanged",
    }
    shown = api.get("/api/v1/events/rules/disk-runbook", role="viewer").get_json()
    assert shown["active_version"] == 2 and shown["priority"] == 20
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    old = api.get("/api/v1/events/rules/disk-runbook/versions/1", role="viewer").get_json()
    assert "priority: 10" in old["source"]
    assert api.post("/api/v1/events/rules/disk-runbook/activate", json={"version": 1},
                    role="operator").status_code == 200  # fmt: skip
    assert api.get("/api/v1/events/rules/disk-runbook").get_json()["priority"] == 10

    explained = api.post(
        "/api/v1/events/rules/test", json={"event": alertmanager_payload}, role="operator"
    ).get_json()["results"]
    assert [len(r["rules"]) for r in explained] == [2, 2, 2]
    second = {r["rule"]: r for r in explained[1]["rules"]}
    assert second["disk-runbook"]["matched"] is False
    assert "labels.severity" in second["disk-runbook"]["reason"]
    assert second["disk-incident"]["actions"][0]["params"]["key"] == "0f3b6e2a91c4d5e8"
    candidate = api.post(
        "/api/v1/events/rules/test",
        json={
            "event": CLOUDEVENT,
            "rules": "name: d\nevents: [deploy.*]\nconditions: {labels.region: eu-west-1}\n",
        },
        role="operator",
    ).get_json()["results"]
    assert candidate[0]["rules"][0]["matched"] is True
    assert api.post("/api/v1/events/rules/test", json={"event": {"id": 1}},
                    role="operator").status_code == 422  # fmt: skip

    assert api.delete("/api/v1/events/rules/disk-runbook", role="operator").status_code == 200
    assert [r["name"] for r in api.get("/api/v1/events/rules").get_json()["items"]] == [
        "disk-incident"
    ]
    assert api.delete("/api/v1/events/rules/disk-runbook", role="operator").status_code == 409
    assert load_rules(api, "").status_code == 422
    assert api.post("/api/v1/events/rules", json={"txt": "x"}, role="operator").status_code == 422


def test_dead_letters_listed_and_replayed(api: Any, runbooks: list[dict[str, Any]]) -> None:
    rule = (
        "name: deploys\nevents: [deploy.*]\nactions:\n"
        "  - {type: job, params: {job: '{{ data.job }}'}}\n"
    )
    api.post("/api/v1/events/rules", data=rule, headers={"Content-Type": "text/plain"},
             role="operator")  # fmt: skip
    api.post("/api/v1/events", json={**CLOUDEVENT, "data": {"job": "core.nope"}}, role="operator")
    run_jobs()
    dead = api.get("/api/v1/events/dead-letters", role="viewer").get_json()
    assert dead["count"] == 1
    (item,) = dead["items"]
    assert item["error"] == "params.job: no registered task named 'core.nope'"
    assert (
        api.post(f"/api/v1/events/dead-letters/{item['id']}/replay", role="viewer").status_code
        == 403
    )
    with session_scope() as session:  # an operator fixed the cause: make the stored params valid
        from popcorn.events.models import ActionRun

        found = session.get(ActionRun, item["id"])
        assert found is not None
        found.params = {"job": "core.echo"}
    replayed = api.post(f"/api/v1/events/dead-letters/{item['id']}/replay", role="operator")
    assert replayed.status_code == 200 and replayed.get_json()["status"] == "succeeded"
    assert api.get("/api/v1/events/dead-letters").get_json()["count"] == 0
    again = api.post(f"/api/v1/events/dead-letters/{item['id']}/replay", role="operator")
    assert again.status_code == 409
    actions = api.get("/api/v1/events/actions?type=job&status=succeeded").get_json()
    assert actions["count"] == 1 and actions["items"][0]["replays"] == 1
    matches = api.get("/api/v1/events/matches?rule=deploys").get_json()
    assert matches["count"] == 1


def test_secrets_are_admin_only_and_shown_once(api: Any) -> None:
    bound = {"allowed_targets": ["hooks.example.net"]}
    assert api.put("/api/v1/events/secrets/default", json=bound, role="operator").status_code == 403
    assert api.put("/api/v1/events/secrets/default", json={}, role="admin").status_code == 422
    created = api.put("/api/v1/events/secrets/default", json=bound, role="admin")
    assert created.status_code == 200 and len(created.get_json()["secret"]) >= 32
    listed = api.get("/api/v1/events/secrets", role="admin").get_json()["items"]
    assert [s["name"] for s in listed] == ["default"] and "secret" not in listed[0]
    assert listed[0]["allowed_targets"] == ["hooks.example.net"]
    assert api.put("/api/v1/events/secrets/x", json={**bound, "value": "short"}).status_code == 422
    assert api.delete("/api/v1/events/secrets/default").status_code == 200
    assert api.delete("/api/v1/events/secrets/default").status_code == 404


def test_settings_and_manual_incident_resolution(api: Any) -> None:
    assert api.get("/api/v1/events/settings", role="viewer").get_json()["retention_days"] == 14
    assert api.patch("/api/v1/events/settings", json={"retention_days": 3},
                     role="operator").status_code == 403  # fmt: skip
    assert api.patch("/api/v1/events/settings", json={"retention_days": 0}).status_code == 422
    assert api.patch("/api/v1/events/settings", json={"retention_days": 3}).get_json() == {
        "retention_days": 3,
        "max_hops": 5,
    }
    rule = (
        "name: inc\nevents: [deploy.*]\n"
        "actions: [{type: incident, params: {title: 'deploy {{ subject }}'}}]\n"
    )
    api.post("/api/v1/events/rules", json={"text": rule}, role="operator")
    api.post("/api/v1/events", json=CLOUDEVENT, role="operator")
    run_jobs()
    (incident,) = api.get("/api/v1/events/incidents?status=open").get_json()["items"]
    assert incident["title"] == "deploy edge-api" and incident["key"] == "deploy edge-api"
    resolved = api.post(f"/api/v1/events/incidents/{incident['id']}/resolve", role="operator")
    assert resolved.get_json()["status"] == "resolved"
    assert api.post(f"/api/v1/events/incidents/{incident['id']}/resolve").status_code == 409
    assert api.get("/api/v1/events/incidents/999").status_code == 404


def test_openapi_documents_the_events_routes(api: Any) -> None:
    spec = api.get("/openapi.json", role=None).get_json()
    for path in ("/api/v1/events", "/api/v1/events/alertmanager", "/api/v1/events/rules",
                 "/api/v1/events/dead-letters/{run_id}/replay"):  # fmt: skip
        assert path in spec["paths"], path


def test_metrics_show_the_backlog(api: Any) -> None:
    api.post(
        "/api/v1/events/rules", json={"text": "name: d\nevents: [deploy.*]\n"}, role="operator"
    )
    api.post("/api/v1/events", json=CLOUDEVENT, role="operator")
    text = api.get("/metrics", role=None).get_data(as_text=True)
    assert "popcorn_events_pending_events 1.0" in text
    assert "popcorn_events_open_incidents 0.0" in text
