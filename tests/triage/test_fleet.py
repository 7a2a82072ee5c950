"""Triage over a fleet of real Bolt agents reading planted file trees.

Five healthy-looking web hosts, three of them each with one planted oddity (an extra
set-uid binary, a rogue authorized key, a cron entry nobody else has); a host that is
down, one whose agent cuts its answer at its output cap, and one that answers garbage.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from remediation_kit import Pki, make_pki
from sqlalchemy import select
from triage_kit import (
    ROGUE_CRON,
    Fleet,
    bolt_client,
    down_url,
    register_devices,
    start_garbage,
    start_host,
)

from popcorn.cli import cli
from popcorn.db import session_scope
from popcorn.outbox import OutboxEvent
from popcorn.triage.cli import group

cli.add_command(group)

pytestmark = pytest.mark.slow

PLANTED = {"web-02": "suid_files", "web-03": "authorized_keys", "web-04": "crontabs"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("triage-pki"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    running = Fleet()
    try:
        start_host(running, base, pki, "web-01", 1)
        start_host(running, base, pki, "web-02", 2, suid=True)
        start_host(running, base, pki, "web-03", 3, rogue_key=True)
        start_host(running, base, pki, "web-04", 4, cron=True)
        start_host(running, base, pki, "web-05", 5)
        start_host(running, base, pki, "web-07", 7, output_cap_bytes=1024)
        start_garbage(running, pki, "web-08")
        running.urls["web-06"] = down_url()
        running.base = base  # type: ignore[attr-defined]
        yield running
    finally:
        running.stop()


@pytest.fixture
def devices(fleet: Fleet, pki: Pki) -> Fleet:
    with bolt_client(pki):
        register_devices(dict(sorted(fleet.urls.items())))
    return fleet


def triage(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["triage", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def as_json(result: Result) -> Any:
    data = json.loads(result.output)
    # a list prints as {"items": [...]}, like every list of the CLI
    return data["items"] if isinstance(data, dict) and list(data) == ["items"] else data


def test_collect_then_outliers_ranks_the_planted_hosts_first(devices: Fleet) -> None:
    # The web group: inventory's role `server`, tagged `web`, at ams1.
    collection = as_json(
        triage("collect", "--role", "server", "--tag", "web", "--site", "ams1", "--json")
    )
    assert collection["status"] == "done"
    assert collection["scope"] == {"role": "server", "tags": ["web"], "site": "ams1"}

    hosts = {h["device"]: h for h in as_json(triage("hosts", "--json"))}
    assert {d: h["status"] for d, h in hosts.items()} == {
        "web-01": "ok", "web-02": "ok", "web-03": "ok", "web-04": "ok", "web-05": "ok",
        "web-06": "missing", "web-07": "oversized", "web-08": "error",
    }  # fmt: skip
    assert "not a JSON object" in hosts["web-08"]["reason"]
    assert hosts["web-06"]["reason"]
    # The five answering hosts are alike: one cluster, one baseline.
    assert {d for d, h in hosts.items() if h["cluster"] == 0} == {f"web-0{i}" for i in range(1, 6)}
    shown = as_json(triage("show", "--json"))
    assert [(c["cluster"], c["hosts"]) for c in shown["summary"]["clusters"]] == [(0, 5)]

    outliers = as_json(triage("outliers", "--json"))
    top = {o["device"] for o in outliers[:3]}
    assert top == set(PLANTED)
    assert len(outliers) == 3  # the clean hosts have no evidence at all
    for outlier in outliers:
        evidence = outlier["evidence"]
        tables = {e["table"] for e in evidence}
        # The planted row, and (for files) its fresh mtime among recent files: nothing else.
        assert PLANTED[outlier["device"]] in tables
        assert tables <= {PLANTED[outlier["device"]], "recent_files"}
        for item in evidence:
            assert (item["kind"], item["hosts_with"], item["peers"]) == ("extra", 1, 5)
    by_device = {o["device"]: o["evidence"] for o in outliers}
    suid = next(e for e in by_device["web-02"] if e["table"] == "suid_files")
    assert suid["row"]["path"] == "/usr/local/bin/.cache-helper"
    assert suid["row"]["mode"] == "4755"
    key = next(e for e in by_device["web-03"] if e["table"] == "authorized_keys")
    assert (key["row"]["user"], key["row"]["comment"]) == ("root", "backdoor@evil")
    cron = next(e for e in by_device["web-04"] if e["table"] == "crontabs")
    assert cron["row"]["command"] in ROGUE_CRON

    findings = as_json(triage("findings", "--json"))
    assert {tuple(f["hosts"]) for f in findings} == {(d,) for d in PLANTED}
    with session_scope(readonly=True) as session:
        events = list(
            session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "security.triage.outlier")
            )
        )
    assert sorted(tuple(e.payload["hosts"]) for e in events) == sorted((d,) for d in PLANTED)
    assert all(e.payload["rows"] for e in events)

    # The console-free table view names the evidence too.
    text = triage("outliers").output
    assert "cache-helper" in text and "backdoor@evil" in text


def test_noise_does_not_count(devices: Fleet) -> None:
    """PIDs, socket inodes, ephemeral ports and host names differ on every host; none of
    it makes a clean host odd, and the tables really were read."""
    as_json(triage("collect", "--device", "web-01", "--device", "web-05",
                   "--device", "web-02", "--json"))  # fmt: skip
    diff = as_json(triage("group-diff", "web-01", "--json"))
    assert diff["changes"] == []
    from popcorn.triage import service

    with session_scope(readonly=True) as session:
        ident = service.latest_collection(session=session).id
        _, tables = service.host_tables(session=session, collection=ident, device="web-01")
        rows = {t.table: t.rows for t in tables}
    sockets = rows["listening_sockets"]
    assert {(s["port"], s["process"], s["exe"], s["user"]) for s in sockets} == {
        (80, "nginx", "/usr/sbin/nginx", "www-data"),
        (33001, "nginx", "/usr/sbin/nginx", "www-data"),
    }
    process = rows["processes"][0]
    assert process["exe"] == "/usr/sbin/nginx" and len(process["sha256"]) == 64
    assert {p["name"] for p in rows["packages"]} == {"nginx", "openssh-server"}
    assert {m["name"] for m in rows["kernel_modules"]} == {"ext4", "nf_tables"}
    assert rows["systemd_timers"][0]["activates"] == "apt-daily.service"
    assert {u["name"] for u in rows["users"]} == {"root", "deploy", "www-data"}


def test_missing_hosts_are_collected_again_alone(devices: Fleet, pki: Pki) -> None:
    first = as_json(triage("collect", "--role", "server", "--json"))
    base: Path = devices.base  # type: ignore[attr-defined]
    start_host(devices, base, pki, "web-06", 6)  # the host comes back, at a new address
    from popcorn.inventory import api as inventory_api

    with session_scope() as session:
        inventory_api.record_agent_heartbeat(
            session=session, device="web-06", url=devices.urls["web-06"], version="t", actions=[]
        )
    try:
        before = {h["device"]: h for h in as_json(triage("hosts", str(first["id"]), "--json"))}
        triage("rerun", str(first["id"]), "--json")
        after = {h["device"]: h for h in as_json(triage("hosts", str(first["id"]), "--json"))}
    finally:
        devices.agents.pop("web-06").stop()
        devices.urls["web-06"] = down_url()
    assert after["web-06"]["status"] == "ok"
    for device in ("web-01", "web-07", "web-08"):  # untouched: not asked again
        assert after[device]["collected_at"] == before[device]["collected_at"]
    outliers = as_json(triage("outliers", str(first["id"]), "--json"))
    assert {o["device"] for o in outliers} == set(PLANTED)
    assert {e["peers"] for o in outliers for e in o["evidence"]} == {6}


def test_a_host_diff_between_two_collections(devices: Fleet) -> None:
    first = as_json(triage("collect", "--role", "server", "--table", "crontabs", "--json"))
    base: Path = devices.base  # type: ignore[attr-defined]
    added = base / "web-01" / "root" / "etc" / "cron.d" / "backup"
    added.write_text("30 2 * * * root /usr/local/bin/backup\n")
    try:
        second = as_json(triage("collect", "--role", "server", "--table", "crontabs", "--json"))
    finally:
        added.unlink()
    diff = as_json(triage("diff", "web-01", str(first["id"]), str(second["id"]), "--json"))
    assert diff["counts"] == {"added": 1}
    assert diff["changes"][0]["row"]["command"] == "/usr/local/bin/backup"
    assert (
        as_json(triage("diff", "web-02", str(first["id"]), str(second["id"]), "--json"))["changes"]
        == []
    )


def test_the_api_collects_as_a_job_and_viewers_only_read(devices: Fleet, api: Any) -> None:
    from popcorn import jobs

    body = {"scope": {"role": "server", "site": "ams1"}, "concurrency": 3}
    assert api.post("/api/v1/triage/collections", json=body, role="viewer").status_code == 403
    response = api.post("/api/v1/triage/collections", json=body, role="operator")
    assert response.status_code == 202, response.json
    ident = response.json["id"]
    with session_scope(readonly=True) as session:
        job = session.scalar(select(jobs.JobRecord).where(jobs.JobRecord.task == "triage.collect"))
        assert job is not None
    jobs.execute(job.id)
    shown = api.get(f"/api/v1/triage/collections/{ident}", role="viewer").json
    assert shown["status"] == "done"
    assert shown["summary"]["hosts"] == {"ok": 5, "missing": 1, "oversized": 1, "error": 1}
    outliers = api.get(f"/api/v1/triage/collections/{ident}/outliers", role="viewer").json
    assert {o["device"] for o in outliers["items"][:3]} == set(PLANTED)
    group = api.get(
        f"/api/v1/triage/collections/{ident}/hosts/web-03/group-diff", role="viewer"
    ).json
    assert any(c["row"].get("comment") == "backdoor@evil" for c in group["changes"])
    bad = api.post("/api/v1/triage/collections", json={"scope": {}}, role="operator")
    assert bad.status_code == 422
    nobody = api.post(
        "/api/v1/triage/collections", json={"scope": {"role": "web"}}, role="operator"
    )
    assert nobody.status_code == 422
    assert nobody.json["error"]["details"]["field"] == "scope.role"
    assert "server" in nobody.json["error"]["details"]["roles"]
    untagged = api.post(
        "/api/v1/triage/collections",
        json={"scope": {"role": "server", "tags": ["db"]}},
        role="operator",
    )
    assert untagged.status_code == 422  # no device has the tag
    by_model = api.post(
        "/api/v1/triage/collections", json={"scope": {"model": "edge-1"}}, role="operator"
    )
    assert by_model.status_code == 202
    assert by_model.json["scope"] == {"model": "edge-1"}
    no_model = api.post(
        "/api/v1/triage/collections", json={"scope": {"model": "nosuch"}}, role="operator"
    )
    assert no_model.status_code == 404


def test_reanalysing_holds_no_write_lock_while_it_clusters(
    devices: Fleet, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from popcorn.outbox import emit
    from popcorn.triage import baseline

    first = as_json(triage("collect", "--role", "server", "--tag", "web", "--json"))
    clustering, written = threading.Event(), threading.Event()
    seen: list[bool] = []
    real = baseline.rank_clustered

    def paused(*args: Any, **kwargs: Any) -> Any:
        clustering.set()
        seen.append(written.wait(20))  # shorter than SQLite's busy timeout: a held lock fails
        return real(*args, **kwargs)

    monkeypatch.setattr(baseline, "rank_clustered", paused)
    results: list[Result] = []
    runner = threading.Thread(
        target=lambda: results.append(triage("analyse", "--rare-fraction", "0.2", "--json"))
    )
    runner.start()
    try:
        assert clustering.wait(60), "the analysis never started clustering"
        with session_scope() as session:
            emit(session, "test.beside_triage", "test", 1, {})
        written.set()
    finally:
        written.set()
        runner.join()
    assert seen == [True]
    assert as_json(results[0])["rare_fraction"] == 0.2
    shown = as_json(triage("show", str(first["id"]), "--json"))
    assert shown["summary"]["rare_fraction"] == 0.2
    assert {o["device"] for o in as_json(triage("outliers", "--json"))[:3]} == set(PLANTED)
    missing = api.post(
        "/api/v1/triage/collections/424242/analyse", json={"rare_fraction": 0.2}, role="operator"
    )
    assert missing.status_code == 404


def test_a_role_that_inventory_does_not_have_is_a_one_line_error(devices: Fleet) -> None:
    result = CliRunner().invoke(cli, ["triage", "collect", "--role", "web", "--site", "ams1"])
    assert result.exit_code != 0
    assert "'web' is not an inventory role" in result.output
    assert "Traceback" not in result.output


def test_the_triage_runbook_attaches_its_report_to_the_execution(devices: Fleet) -> None:
    from remediation_kit import detail, drain, start

    execution = start("triage.group", {"role": "server", "site": "ams1", "top": 3})
    drain()
    found = detail(execution)
    assert found["status"] == "succeeded", found
    steps = {s["name"]: s for s in found["steps"]}
    assert set(steps["report"]["outputs"]["suspects"]) == set(PLANTED)
    evidence = [e for e in found["evidence"] if e.get("kind") == "triage_outliers"]
    assert len(evidence) == 1
    report = evidence[0]
    assert {o["device"] for o in report["outliers"]} == set(PLANTED)
    assert report["hosts"] == {"ok": 5, "missing": 1, "oversized": 1, "error": 1}
    rows = {e["table"] for o in report["outliers"] for e in o["evidence"]}
    assert set(PLANTED.values()) <= rows


def test_the_console_shows_a_collection_its_outliers_and_a_host_diff(
    devices: Fleet, app: Any, tokens: dict[str, str]
) -> None:
    from console_kit import Console, text_of

    first = as_json(triage("collect", "--role", "server", "--table", "suid_files", "--json"))
    second = as_json(triage("collect", "--role", "server", "--table", "suid_files", "--json"))
    viewer = Console(app.test_client(), tokens["viewer"])
    index = text_of(viewer.page("/ui/triage"))
    assert "web-02" in index  # the top outlier of each collection
    page = text_of(viewer.page(f"/ui/triage/collections/{second['id']}"))
    assert "/usr/local/bin/.cache-helper" in page and "(1/5)" in page
    assert "missing" in page and "oversized" in page and "not a JSON object" in page
    assert "#0: 5 hosts" in page  # one table of 3 rows: too few to cluster on
    host = text_of(viewer.page(f"/ui/triage/collections/{second['id']}/hosts/web-02"))
    assert "cache-helper" in host and "extra" in host
    same = text_of(
        viewer.page(f"/ui/triage/collections/{second['id']}/hosts/web-02?against={first['id']}")
    )
    assert "no difference" in same
    viewer.page(f"/ui/triage/collections/{second['id']}/hosts/nosuch", status=404)
    viewer.page("/ui/triage/collections/99999999999999999999999", status=404)
