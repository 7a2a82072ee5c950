"""Popcorn as it runs on several machines, and a scheduler dying under it.

Two "machines", each with its own POPCORN_HOME and its own API (`popcorn serve`), worker
and scheduler, share nothing but PostgreSQL (a fresh schema), Redis and an S3 object store
(moto). Requests go round-robin to the two APIs, as behind a load balancer. The demo's
incident is played through them: signals ingested, Alertmanager's alert, the rule that
starts the error-rate runbook, whose ranking any API shows; an analysis spread over both
workers ranks like one job. Then the active scheduler is killed (SIGKILL): the other takes
its lease over, and no job, event or scheduled run is lost or run twice.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from popcorn_testing import Processes, free_port, wait_until
from sqlalchemy import create_engine, func, select, text

from popcorn.client import Client
from popcorn.db import dispose_engines, session_scope
from popcorn.signals.generate import Incident, generate_incident

TEST_DB = os.environ.get("POPCORN_TEST_DATABASE_URL")
TEST_REDIS = os.environ.get("POPCORN_TEST_REDIS_URL")
LEASE_SECONDS = 3  # the schedulers' lease here (15 s by default)
TICK_SECONDS = 3  # the interval of the schedule that must survive the failover

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (TEST_DB and TEST_DB.startswith("postgresql") and TEST_REDIS),
        reason="machines share only a server database and Redis: runs on the server pass "
        "(POPCORN_TEST_DATABASE_URL=postgresql://..., POPCORN_TEST_REDIS_URL)",
    ),
]


class RoundRobin(httpx.BaseTransport):
    """A load balancer in front of the APIs: each request goes to the next one in turn."""

    def __init__(self, backends: list[str]):
        self.backends = [httpx.URL(b) for b in backends]
        self.turn = itertools.cycle(range(len(backends)))
        self.transport = httpx.HTTPTransport()
        self.served: Counter[int] = Counter()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        i = next(self.turn)
        self.served[i] += 1
        backend = self.backends[i]
        request.url = request.url.copy_with(host=backend.host, port=backend.port)
        request.headers["Host"] = f"{backend.host}:{backend.port}"
        return self.transport.handle_request(request)

    def close(self) -> None:
        self.transport.close()


@dataclass
class Machine:
    name: str
    processes: Processes
    url: str
    scheduler: Any = None
    worker: Any = None


@dataclass
class Cluster:
    database_url: str
    machines: list[Machine]
    balancer: RoundRobin
    token: str
    clients: list[Client] = field(default_factory=list)

    @property
    def lb(self) -> Client:
        return self.clients[0]

    def api(self, i: int) -> Client:
        return self.clients[1 + i]


def _fresh_schema(url: str) -> tuple[str, str]:
    name = f"topology_{uuid.uuid4().hex[:8]}"
    from popcorn.config import normalize_database_url

    engine = create_engine(normalize_database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    engine.dispose()
    return name, f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"


def _drop_schema(url: str, name: str) -> None:
    from popcorn.config import normalize_database_url

    engine = create_engine(normalize_database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    engine.dispose()


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def cluster(installation: dict[str, str], moto_endpoint: str, tmp_path: Path) -> Iterator[Cluster]:
    import boto3

    assert TEST_DB and TEST_REDIS
    schema, database_url = _fresh_schema(TEST_DB)
    bucket = f"topology-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    shared = {
        **installation,
        "POPCORN_DATABASE_URL": database_url,
        "POPCORN_REDIS_URL": TEST_REDIS,
        "POPCORN_SECRET_KEY": uuid.uuid4().hex,
        "POPCORN_STORAGE_URL": f"s3://{bucket}/popcorn",
        "POPCORN_STORAGE_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POPCORN_SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS),
        "POPCORN_JOB_LOST_AFTER": "10",
    }
    from popcorn.jobs import get_redis

    get_redis().flushdb()  # the cluster uses the suite's Redis; nothing else runs meanwhile
    machines: list[Machine] = []
    clients: list[Client] = []
    try:
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            procs = Processes(
                {**shared, "POPCORN_HOME": str(home), "POPCORN_MACHINE_NAME": f"machine-{name}"}
            )
            machines.append(Machine(name, procs, f"http://127.0.0.1:{free_port()}"))
        first = machines[0].processes
        migrate = first.start("db", "upgrade", log=tmp_path / "upgrade.log")
        assert migrate.wait(timeout=300) == 0, (tmp_path / "upgrade.log").read_text()
        token = _token(first)
        for m in machines:
            port = m.url.rsplit(":", 1)[1]
            home = Path(m.processes.env["POPCORN_HOME"])
            m.processes.start("serve", "--port", port, "--workers", "1", log=home / "api.log")
            m.worker = m.processes.start("worker", "--no-fork", log=home / "worker.log")
        for m in machines:
            wait_until(lambda m=m: _up(m.url), timeout=120)
        balancer = RoundRobin([m.url for m in machines])
        clients = [Client("http://balancer", token, transport=balancer)]
        clients += [Client(m.url, token) for m in machines]
        for m in machines:  # one scheduler per machine; the first to start holds the lease
            home = Path(m.processes.env["POPCORN_HOME"])
            m.scheduler = m.processes.start("scheduler", log=home / "scheduler.log")
        found = Cluster(database_url, machines, balancer, token, clients)
        # A subscriber starts from the newest domain event: wait until the dispatcher is on.
        wait_until(lambda: _outbox_delivered(found), timeout=120)
        yield found
    finally:
        for client in clients:
            client.close()
        for m in machines:
            m.processes.stop_all()
        dispose_engines()
        _drop_schema(TEST_DB, schema)
        get_redis().flushdb()


def _token(procs: Processes) -> str:
    """An admin token made with the CLI on machine a (as an operator would)."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "popcorn",
            "token",
            "create",
            "--name",
            "ops",
            "--role",
            "admin",
            "--json",
        ],
        env=procs.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return str(json.loads(out.stdout)["token"])


# --- the incident --------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alert(name: str, alert_time: float, **labels: str) -> dict[str, Any]:
    """Alertmanager's webhook (version 4) with one firing alert."""
    labels = {"alertname": name, "severity": "critical", **labels}
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    return {
        "version": "4",
        "groupKey": f"{{}}:{{alertname={name!r}}}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "popcorn",
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{name} is firing"},
                "startsAt": _iso(alert_time),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.test:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


def _ingest(client: Client, inc: Incident) -> None:
    """The incident's signals, in batches that alternate between the APIs."""
    ts = inc.timestamps.astype(float)
    series = [
        {
            "metric": "play_errors_rate",
            "labels": {"service": "open-connect", "signal": "trigger"},
            "timestamps": ts.tolist(),
            "values": inc.trigger.tolist(),
        }
    ]
    for i, name in enumerate(inc.names):
        component, metric = name.split(".", 1)
        ok = inc.values[i] == inc.values[i]  # not NaN
        series.append(
            {
                "metric": metric.split("#")[0],
                "labels": {"service": "open-connect", "component": component, "signal": str(i)},
                "timestamps": ts[ok].tolist(),
                "values": inc.values[i][ok].tolist(),
            }
        )
    for lo in range(0, len(series), 100):
        client.signals.ingest(series[lo : lo + 100])


def _signal(name: str) -> int | None:
    found = re.search(r'signal="(\d+)"', name)
    return int(found.group(1)) if found else None


def _runbook_execution(client: Client, event_id: int) -> int | None:
    event = client.events.get(event_id)
    if event["status"] == "pending":
        return None
    assert event["status"] == "processed", event
    for match in event.get("matches", []):
        for action in match.get("actions", []):
            if action["type"] == "runbook":
                assert action["status"] != "failed", action
                response = action.get("response") or {}
                if response.get("execution_id"):
                    return int(response["execution_id"])
    return None


def _ranking(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(f["series_id"], f["verdict"], f["score"]) for f in data["result"]["findings"]]


# --- the state every process shares ---------------------------------------------------


def _scheduler_pid(cluster: Cluster) -> int | None:
    from popcorn.jobs import Lease

    with session_scope(cluster.database_url, readonly=True) as session:
        lease = session.get(Lease, "scheduler")
        if lease is None or lease.expires_at <= datetime.now(UTC):
            return None
        return int(lease.holder.split(":")[1])


def _jobs(cluster: Cluster) -> list[Any]:
    from popcorn.jobs import JobRecord

    with session_scope(cluster.database_url, readonly=True) as session:
        rows = list(session.scalars(select(JobRecord).order_by(JobRecord.id)))
        session.expunge_all()
        return rows


def _machines(cluster: Cluster) -> set[str]:
    from popcorn.machines import Machine as Registered

    with session_scope(cluster.database_url, readonly=True) as session:
        return set(session.scalars(select(Registered.hostname)))


def _outbox_delivered(cluster: Cluster) -> bool:
    """Every domain event reached the events subscriber (one events record each)."""
    from popcorn.events.models import EventRecord
    from popcorn.outbox import OutboxEvent, SubscriberCursor

    with session_scope(cluster.database_url, readonly=True) as session:
        last = session.scalar(select(func.max(OutboxEvent.id))) or 0
        cursor = session.get(SubscriberCursor, "events.ingest")
        stored = session.scalar(
            select(func.count()).select_from(EventRecord).where(EventRecord.origin == "outbox")
        )
        total = session.scalar(select(func.count()).select_from(OutboxEvent))
        return cursor is not None and cursor.last_id == last and stored == total


# --- the test --------------------------------------------------------------------------


def test_two_machines_play_the_incident_and_survive_the_active_scheduler_dying(
    cluster: Cluster,
) -> None:
    lb = cluster.lb
    assert {"machine-a", "machine-b"} <= _machines(cluster)  # both registered, store shared
    rules = (resources.files("popcorn.events") / "rules.d" / "alertmanager.yaml").read_text()
    lb.events.load_rules(rules.replace("mode: monitor", "mode: enforce"), file="alertmanager.yaml")

    # The incident: samples reach the store through both APIs; the alert through either.
    inc = generate_incident(300, 400, seed=5)
    planted = set(inc.culprits) | {f for fs in inc.followers.values() for f in fs}
    _ingest(lb, inc)
    answer = lb.events.alertmanager(
        _alert("HighErrorRate", inc.alert_time, service="open-connect", site="ams1")
    )
    event_id = int(answer["events"][0]["id"])
    execution_id = wait_until(lambda: _runbook_execution(lb, event_id), timeout=180)
    execution = lb.remediation.wait(execution_id, timeout=300)
    assert execution["status"] == "succeeded", execution
    detail = lb.remediation.execution(execution_id)
    evidence = [e for e in detail["evidence"] if e.get("source") == "signals"]
    analysis_id = int(evidence[0]["analysis_id"])
    seen = [cluster.api(i).signals.analysis(analysis_id) for i in (0, 1)]
    assert seen[0] == seen[1]  # the same ranking from either API
    ranked = [_signal(f["name"]) for f in seen[0]["result"]["findings"]]
    assert ranked[0] is None  # the error rate itself (no trigger named), then a culprit
    assert ranked[1] in planted

    # An analysis spread over both workers ranks like the one computed in a request.
    params = {
        "trigger": '{signal="trigger"}',
        "selector": '{service="open-connect",component=~".+"}',
        "window_minutes": 300,
        "after_minutes": 30,
    }
    inline = lb.signals.analyze(inc.alert_time, inline=True, **params)
    sharded = lb.signals.analyze(inc.alert_time, inline=False, chunk_size=40, **params)
    assert sharded["status"] == "queued" and sharded["chunks_total"] == 8
    done = lb.signals.wait_for_analysis(sharded["id"], timeout=300)
    assert done["status"] == "finished", done["error"]
    assert _ranking(done) == _ranking(inline)
    assert done["result"]["clusters"] == inline["result"]["clusters"]

    # A schedule and delayed jobs, which only the active scheduler moves along.
    lb.post(
        "/api/v1/schedules",
        {"name": "topology.tick", "task": "core.echo", "interval_seconds": TICK_SECONDS},
    )
    for i in range(8):
        lb.post(
            "/api/v1/jobs", {"task": "core.echo", "arguments": {"i": i}, "delay_seconds": 1 + i}
        )
    active_pid = wait_until(lambda: _scheduler_pid(cluster), timeout=60)
    by_pid = {m.scheduler.pid: m for m in cluster.machines}
    assert active_pid in by_pid
    active = by_pid[active_pid]
    standby = next(m for m in cluster.machines if m is not active)
    wait_until(lambda: sum(j.schedule == "topology.tick" for j in _jobs(cluster)) >= 2, timeout=60)
    active.processes.kill(active.scheduler)  # SIGKILL: no lease released

    # Meanwhile alerts keep coming, through either API.
    late = [
        int(
            lb.events.alertmanager(_alert("TopologyCheck", inc.alert_time + n, n=str(n)))["events"][
                0
            ]["id"]
        )
        for n in range(4)
    ]
    wait_until(lambda: _scheduler_pid(cluster) == standby.scheduler.pid, timeout=60)
    fired_before = sum(j.schedule == "topology.tick" for j in _jobs(cluster))
    wait_until(
        lambda: sum(j.schedule == "topology.tick" for j in _jobs(cluster)) >= fired_before + 2,
        timeout=60,
    )
    lb.delete("/api/v1/schedules/topology.tick")
    wait_until(lambda: all(j.status == "finished" for j in _jobs(cluster)), timeout=120)
    wait_until(lambda: _outbox_delivered(cluster), timeout=60)

    records = _jobs(cluster)
    assert all(j.attempts == 1 for j in records), [  # none ran twice
        (j.id, j.task, j.attempts) for j in records if j.attempts != 1
    ]
    delayed = sorted(
        j.result["echo"]["i"] for j in records if j.task == "core.echo" and not j.schedule
    )
    assert delayed == list(range(8))  # none lost
    ticks = sorted(j.created_at for j in records if j.schedule == "topology.tick")
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)]
    # Runs are TICK_SECONDS apart, less the time a busy scheduler takes from noting the time
    # to recording the job; one run fired by both schedulers would be two jobs at once.
    assert min(gaps) > TICK_SECONDS / 3, gaps
    workers = {j.worker.split(":")[1] for j in records}
    assert workers == {str(m.worker.pid) for m in cluster.machines}  # both machines worked
    for event_id in late:
        wait_until(lambda e=event_id: lb.events.get(e)["status"] != "pending", timeout=60)
        assert lb.events.get(event_id)["status"] == "processed"
    assert min(cluster.balancer.served.values()) > 10  # both APIs answered
