"""Device lab deep queue: agent beats against 50,000 queued tests, the window read beside
the full read it replaced (for bench_devicelab.py).

A fresh installation (SQLite, or PostgreSQL at a given URL) holds 200 devices of one
family (a fifth Dolby Vision) and five running builds whose queued executions total the
queue depth, a tenth of them needing Dolby Vision. Each beat goes through
`dispatch.poll` in its own transaction: it hands in the test the device took on its
previous beat and takes the next one. The baseline is the previous `take_work`: every
queued execution of the family read (id order, up to 50,000) and placed in Python.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from common import drop_schema, fresh_schema, scratch_dir

FAMILY = "tv-deep"
DEVICES = 200
BUILDS = 5
TESTS = 2000


def full_read_take(*, session: Session, device: Any, slots: int) -> list[Any]:
    """The previous assignment: the family's whole queue read and placed on every beat."""
    from popcorn.db import utcnow
    from popcorn.devicelab import placement, service
    from popcorn.devicelab.models import LabExecution, LabRun, LabTest

    queued = session.execute(
        select(
            LabExecution.id,
            LabExecution.build_id,
            LabExecution.candidates,
            LabTest.expected_duration_s,
            LabExecution.timeout_s,
        )
        .join(LabRun, LabRun.id == LabExecution.run_id)
        .join(LabTest, LabTest.id == LabExecution.test_id)
        .where(
            LabExecution.status == "queued",
            LabExecution.family == device.family,
            LabRun.status == "running",
        )
        .order_by(LabExecution.id)
        .limit(50_000)
    ).all()
    mine = [row for row in queued if device.id in row[2]]
    if not mine:
        return []
    placer = placement.Placer()
    for build in sorted({row[1] for row in mine}):
        placer.build_order[build] = build
    placer.running.update(
        session.execute(
            select(LabExecution.build_id, func.count())
            .where(LabExecution.status.in_(service.ACTIVE))
            .group_by(LabExecution.build_id)
        ).all()
    )
    placer.add_all(placement.Job(i, b, frozenset(c), d) for i, b, c, d, _ in mine)
    picked = [job.id for job in (placer.take(device.id) for _ in range(slots)) if job]
    now = utcnow()
    session.execute(
        update(LabExecution)
        .where(LabExecution.id.in_(picked), LabExecution.status == "queued")
        .values(
            status="assigned",
            device_id=device.id,
            device_name=device.name,
            assigned_at=now,
            deadline=now + timedelta(seconds=600),
        )
        .execution_options(synchronize_session=False)
    )
    return list(
        session.scalars(
            select(LabExecution)
            .where(LabExecution.id.in_(picked), LabExecution.device_id == device.id)
            .execution_options(populate_existing=True)
        )
    )


def install(depth: int, database_url: str | None) -> None:
    """A fresh installation with the fleet and `depth` queued executions in one family."""
    os.environ["POPCORN_HOME"] = str(scratch_dir("devicelab-deep-"))
    os.environ["POPCORN_DEVICELAB_OFFLINE_S"] = "86400"  # no device goes silent mid-run
    if database_url:  # a new schema of its own, dropped by `deep_queue` at the end
        os.environ["POPCORN_DATABASE_URL"] = database_url
    else:
        os.environ.pop("POPCORN_DATABASE_URL", None)
    from popcorn.config import reset_settings
    from popcorn.db import dispose_engines

    reset_settings()
    dispose_engines()
    from popcorn.db import session_scope, upgrade, utcnow
    from popcorn.devicelab import schemas as s
    from popcorn.devicelab import service
    from popcorn.devicelab.models import LabBuild, LabDevice, LabExecution, LabRun, LabTest

    upgrade()
    rng = random.Random(3)
    with session_scope() as session:
        for d in range(DEVICES):
            hdr = ["dolby_vision"] if d % 5 == 0 else []
            spec = s.DeviceCreate(name=f"deep-{d:03d}", platform="tv", family=FAMILY, hdr=hdr)
            service.create_device(session=session, spec=spec)
        session.flush()
        devices = list(session.scalars(select(LabDevice).order_by(LabDevice.id)))
        everyone = [d.id for d in devices]
        dolby = [d.id for d in devices if d.hdr]
        tests = [
            LabTest(name=f"deep.t{t:05d}", suite="deep", expected_duration_s=rng.uniform(60, 1800))
            for t in range(TESTS)
        ]
        session.add_all(tests)
        session.flush()
        now = utcnow()
        for b in range(BUILDS):
            build = LabBuild(app_version=f"deep-{b}")
            session.add(build)
            session.flush()
            run = LabRun(build_id=build.id, suite="deep", status="running")
            session.add(run)
            session.flush()
            rows = []
            for n in range(depth // BUILDS):
                test = tests[n % TESTS]
                candidates = dolby if n % 10 == 0 else everyone
                rows.append(
                    {
                        "run_id": run.id,
                        "build_id": build.id,
                        "test_id": test.id,
                        "test_name": test.name,
                        "family": FAMILY,
                        "candidates": candidates,
                        "candidate_count": len(candidates),
                        "expected_duration_s": test.expected_duration_s,
                        "timeout_s": 3600.0,
                        "reason": "first",
                        "queued_at": now,
                    }
                )
            session.execute(insert(LabExecution), rows)


def beats(count: int, take: Callable[..., list[Any]] | None) -> dict[str, float]:
    """`count` beats round the fleet through `dispatch.poll`, each handing in the test its
    device took last time; `take` stands in for the service's `take_work` when given."""
    from popcorn.db import session_scope
    from popcorn.devicelab import dispatch
    from popcorn.devicelab.models import LabDevice, LabExecution
    from popcorn.devicelab.schemas import AgentResult

    with session_scope() as session:  # every device starts free
        session.execute(
            update(LabExecution).where(LabExecution.status == "assigned").values(status="passed")
        )
    original = dispatch.take_work
    if take is not None:
        dispatch.take_work = take
    with session_scope(readonly=True) as session:
        names = list(session.scalars(select(LabDevice.name).order_by(LabDevice.id)))
    held: dict[str, list[int]] = {name: [] for name in names}
    assigned = 0
    started, cpu = time.perf_counter(), time.process_time()
    try:
        for beat in range(count):
            name = names[beat % len(names)]
            with session_scope() as session:
                device = session.scalar(select(LabDevice).where(LabDevice.name == name))
                if device is None:
                    raise LookupError(f"device {name} is gone")
                results = [
                    AgentResult(execution=e, status="passed", duration_s=1.0) for e in held[name]
                ]
                answer = dispatch.poll(session=session, device=device, running=[], results=results)
            held[name] = [a["execution"] for a in answer["assignments"]]
            assigned += len(held[name])
    finally:
        dispatch.take_work = original
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "beats": float(count),
        "assigned": float(assigned),
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "per_s": assigned / elapsed,
        "per_cpu_s": assigned / cpu if cpu else 0.0,
    }


def deep_queue(depth: int, database_url: str | None, *, window: int, full: int) -> dict[str, Any]:
    """Both ways on one installation: `window` beats of the service, `full` of the baseline."""
    url = fresh_schema(database_url) if database_url else None
    try:
        install(depth, url)
        ours = beats(window, None)
        base = beats(full, full_read_take)
    finally:
        if url:
            from popcorn.db import dispose_engines

            dispose_engines()
            drop_schema(url)
    return {"ours": ours, "base": base, "depth": depth, "load": os.getloadavg()[0]}
