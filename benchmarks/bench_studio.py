"""Studio at show scale: `find` with three filters and a linked field, and a 10,000-create batch.

In one run:

1. builds a show with bulk inserts: 200 sequences, 20,000 shots, 200,000 tasks
   (10 per shot over 5 steps) and 1,000,000 versions (50 per shot) at `--scale 1`;
2. serves it with `popcorn serve` (Gunicorn, 2 workers) and times
   `POST /api/v1/studio/find` for Versions with three filters and a linked field
   (`project is P`, `sg_status_list is rev`, `entity.Shot.code starts_with SEQxxxx_`,
   fields `code, sg_status_list, entity.Shot.code`), p50/p99 over `--queries` calls;
3. times the same query as a plain ORM loop in the same run (the shots of the
   sequence, then each shot's versions, as a script without a filter compiler would);
4. times one `batch` of `--batch` Version creates through the API, against single
   `create` calls (a sample, extrapolated).

    .venv/bin/python benchmarks/bench_studio.py [--scale 0.1] [--queries 200] [--batch 10000]
        [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import drop_schema, fresh_schema, git_revision, machine, scratch_dir, write_result

PYTHON = sys.executable
STEPS = ["Layout", "Animation", "FX", "Lighting", "Comp"]
VERSION_STATUSES = ["rev", "vwd", "apr", "rej", "na"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build(scale: float) -> dict[str, Any]:
    """The show, with multi-row inserts in chunks (no ORM objects, no per-row audit)."""
    from sqlalchemy import insert

    from popcorn.db import session_scope, utcnow
    from popcorn.studio import models as m

    n_seq = max(2, int(200 * scale))
    shots_per_seq = 100
    tasks_per_shot = 10
    versions_per_shot = 50
    rng = random.Random(7)
    now = utcnow()
    counts: dict[str, int] = {"sequences": 0, "shots": 0, "tasks": 0, "versions": 0}
    started = time.perf_counter()
    with session_scope() as session:
        project = m.StudioProject(name="Bench Show", created_by="bench")
        session.add(project)
        session.flush()
        pid = project.id
        steps = []
        for i, code in enumerate(STEPS):
            step = m.StudioStep(code=code, short_name=code[:4].lower(), list_order=i)
            session.add(step)
            steps.append(step)
        session.flush()
        step_ids = [s.id for s in steps]
    for s in range(n_seq):
        code = f"SEQ{(s + 1) * 10:04d}"
        with session_scope() as session:
            seq = m.StudioSequence(project_id=pid, code=code, created_by="bench")
            session.add(seq)
            session.flush()
            shots = [
                {
                    "project_id": pid,
                    "sequence_id": seq.id,
                    "code": f"{code}_{(k + 1) * 10:04d}",
                    "status": rng.choice(["wtg", "ip", "fin"]),
                    "cut_in": 1001,
                    "cut_out": 1000 + 24 + k % 100,
                    "cut_duration": 24 + k % 100,
                    "created_at": now,
                    "updated_at": now,
                    "created_by": "bench",
                    "description": "",
                }
                for k in range(shots_per_seq)
            ]
            session.execute(insert(m.StudioShot), shots)
            from sqlalchemy import select

            shot_ids = list(
                session.scalars(select(m.StudioShot.id).where(m.StudioShot.sequence_id == seq.id))
            )
            tasks = [
                {
                    "project_id": pid,
                    "content": f"{STEPS[t % 5]} {t // 5 + 1}",
                    "step_id": step_ids[t % 5],
                    "entity_type": "Shot",
                    "entity_id": sid,
                    "status": rng.choice(["wtg", "rdy", "ip", "rev", "fin"]),
                    "assignees": [],
                    "created_at": now,
                    "updated_at": now,
                    "created_by": "bench",
                    "time_logs_sum": 0,
                }
                for sid in shot_ids
                for t in range(tasks_per_shot)
            ]
            session.execute(insert(m.StudioTask), tasks)
            versions = [
                {
                    "project_id": pid,
                    "code": f"{code}_v{v:03d}_{sid}",
                    "entity_type": "Shot",
                    "entity_id": sid,
                    "first_frame": 1001,
                    "last_frame": 1100,
                    "frame_range": "1001-1100",
                    "status": rng.choice(VERSION_STATUSES),
                    "user": "artist",
                    "created_at": now,
                    "updated_at": now,
                    "created_by": "bench",
                    "description": "",
                }
                for sid in shot_ids
                for v in range(versions_per_shot)
            ]
            session.execute(insert(m.StudioVersion), versions)
        counts["sequences"] += 1
        counts["shots"] += len(shots)
        counts["tasks"] += len(tasks)
        counts["versions"] += len(versions)
        if s % 20 == 19:
            print(f"  {counts} in {time.perf_counter() - started:.0f}s", flush=True)
    return {
        **counts,
        "seconds": round(time.perf_counter() - started, 1),
        "project_id": pid,
        "sequence_codes": [f"SEQ{(s + 1) * 10:04d}" for s in range(n_seq)],
    }


def orm_loop(project_id: int, sequence: str) -> list[dict[str, Any]]:
    """The baseline: what a script does without a filter compiler, one query per shot."""
    from sqlalchemy import select

    from popcorn.db import session_scope
    from popcorn.studio import models as m

    out = []
    with session_scope(readonly=True) as session:
        shots = session.scalars(
            select(m.StudioShot).where(
                m.StudioShot.project_id == project_id, m.StudioShot.retired_at.is_(None)
            )
        )
        for shot in shots:
            if not shot.code.startswith(sequence + "_"):
                continue
            versions = session.scalars(
                select(m.StudioVersion).where(
                    m.StudioVersion.entity_type == "Shot",
                    m.StudioVersion.entity_id == shot.id,
                    m.StudioVersion.retired_at.is_(None),
                )
            )
            for version in versions:
                if version.status == "rev" and version.project_id == project_id:
                    out.append(
                        {
                            "type": "Version",
                            "id": version.id,
                            "code": version.code,
                            "sg_status_list": version.status,
                            "entity.Shot.code": shot.code,
                        }
                    )
    return out


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "popcorn", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("popcorn serve did not come up")
        time.sleep(0.2)


def token(role: str) -> str:
    from popcorn.auth import create_token
    from popcorn.db import session_scope

    with session_scope() as session:
        _, raw = create_token(session=session, name=f"bench-{role}-{os.getpid()}", role=role)
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 20,000 shots, 1M versions")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--singles", type=int, default=300, help="single creates to extrapolate")
    parser.add_argument("--pages", type=int, default=20, help="ordered pages of 500 to fetch")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp home")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-analyze", action="store_true", help="skip ANALYZE after the load")
    args = parser.parse_args()

    work = scratch_dir("bench-studio-", args.workdir)
    env = {**os.environ, "POPCORN_HOME": str(work / "home"), "POPCORN_LOG_LEVEL": "WARNING"}
    env.pop("POPCORN_DATABASE_URL", None)
    url = fresh_schema(args.database_url) if args.database_url else None
    if url:  # a new schema of its own, dropped at the end
        env["POPCORN_DATABASE_URL"] = url
    os.environ.update(env)
    from popcorn.config import reset_settings

    reset_settings()
    from popcorn.db import dispose_engines, get_engine, upgrade

    upgrade()
    backend = get_engine().dialect.name
    print(f"working in {work} on {backend}, scale {args.scale}", flush=True)
    show = build(args.scale)
    print(f"built {show['shots']} shots, {show['versions']} versions in {show['seconds']}s")
    if not args.no_analyze:  # as after any bulk load: fresh planner statistics
        from sqlalchemy import text

        # PostgreSQL: VACUUM too, so autovacuum does not run during the measurements.
        statement = "VACUUM ANALYZE" if backend == "postgresql" else "ANALYZE"
        with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(statement))
    import httpx

    reader, writer = token("viewer"), token("operator")
    # Capacity is measured here: the per-token rate limit (50/s by default) is off.
    # A 10,000-create batch is one request: give it longer than Gunicorn's default 120 s
    # on a loaded machine.
    server, base = serve(
        {**env, "POPCORN_STUDIO_RATE_PER_S": "0", "GUNICORN_CMD_ARGS": "--timeout 900"}
    )
    rng = random.Random(11)
    pid = show["project_id"]
    sequences = show["sequence_codes"]
    api_ms: list[float] = []
    orm_ms: list[float] = []
    page_ms: list[float] = []
    rows_seen = 0
    try:
        with httpx.Client(base_url=base, timeout=900) as client:
            read = {"Authorization": f"Bearer {reader}"}

            def body(seq: str) -> dict[str, Any]:
                return {
                    "entity_type": "Version",
                    "filters": [
                        ["project", "is", {"type": "Project", "id": pid}],
                        ["sg_status_list", "is", "rev"],
                        ["entity.Shot.code", "starts_with", seq + "_"],
                    ],
                    "fields": ["code", "sg_status_list", "entity.Shot.code"],
                    "limit": 5000,
                }

            for seq in sequences[:4]:  # warm both workers
                client.post("/api/v1/studio/find", json=body(seq), headers=read)
            for _ in range(args.queries):
                seq = rng.choice(sequences)
                started = time.perf_counter()
                response = client.post("/api/v1/studio/find", json=body(seq), headers=read)
                api_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"find: {response.status_code} {response.text[:300]}")
                items = response.json()["items"]
                rows_seen += len(items)
                started = time.perf_counter()
                baseline = orm_loop(pid, seq)
                orm_ms.append((time.perf_counter() - started) * 1000)
                if sorted(i["id"] for i in items) != sorted(i["id"] for i in baseline):
                    raise SystemExit(f"{seq}: the API and the ORM loop disagree")

            # Paging with the keyset cursor, ordered by a linked field across the project.
            ordered = {
                "entity_type": "Version",
                "filters": [["project", "is", {"type": "Project", "id": pid}],
                            ["sg_status_list", "is", "rev"]],
                "fields": ["code", "entity.Shot.code"],
                "order": [{"field_name": "entity.Shot.code", "direction": "desc"},
                          {"field_name": "code", "direction": "asc"}],
                "limit": 500,
            }  # fmt: skip
            cursor: str | None = None
            seen_ids: set[int] = set()
            for _ in range(args.pages):
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/studio/find", json={**ordered, "cursor": cursor}, headers=read
                )
                page_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"ordered find: {response.status_code} {response.text[:300]}")
                answer = response.json()
                ids = [i["id"] for i in answer["items"]]
                if seen_ids & set(ids) or len(set(ids)) != len(ids):
                    raise SystemExit("a version came back on two ordered pages")
                seen_ids.update(ids)
                cursor = answer["next"]
                if cursor is None:
                    break

            write = {"Authorization": f"Bearer {writer}"}
            shot = client.post(
                "/api/v1/studio/find",
                json={"entity_type": "Shot", "filters": [], "fields": ["code"], "limit": 1},
                headers=read,
            ).json()["items"][0]

            def create(i: int) -> dict[str, Any]:
                return {
                    "entity_type": "Version",
                    "data": {
                        "project": {"type": "Project", "id": pid},
                        "code": f"batch_v{i:05d}",
                        "entity": {"type": "Shot", "id": shot["id"]},
                        "sg_first_frame": 1001,
                        "sg_last_frame": 1100,
                    },
                }

            requests = [{"request_type": "create", **create(i)} for i in range(args.batch)]
            started = time.perf_counter()
            response = client.post(
                "/api/v1/studio/batch", json={"requests": requests}, headers=write
            )
            batch_s = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"batch: {response.status_code} {response.text[:300]}")
            started = time.perf_counter()
            for i in range(args.singles):
                one = client.post("/api/v1/studio/create", json=create(100000 + i), headers=write)
                if one.status_code != 201:
                    raise SystemExit(f"create: {one.status_code} {one.text[:300]}")
            single_s = (time.perf_counter() - started) / args.singles
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        if url:
            dispose_engines()
            drop_schema(url)

    result = {
        "backend": backend,
        "scale": args.scale,
        "show": {k: show[k] for k in ("sequences", "shots", "tasks", "versions", "seconds")},
        "find_api_ms": (round(pct(api_ms, 50), 1), round(pct(api_ms, 99), 1)),
        "find_orm_loop_ms": (round(pct(orm_ms, 50), 1), round(pct(orm_ms, 99), 1)),
        "rows_per_find": round(rows_seen / max(1, len(api_ms))),
        "ordered_page_ms": (round(pct(page_ms, 50), 1), round(pct(page_ms, 99), 1)),
        "ordered_pages": len(page_ms),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "batch": {
            "creates": args.batch,
            "seconds": round(batch_s, 2),
            "per_second": round(args.batch / batch_s),
        },
        "single_create_ms": round(single_s * 1000, 1),
    }
    print(result, flush=True)
    s = result["show"]
    orm = result["find_orm_loop_ms"]

    def row(label: str, values: tuple[float, float]) -> str:
        return f"| {label} | {values[0]} ms | {values[1]} ms |"

    markdown = f"""## Studio: find and batch at show scale

Machine: {machine()}; revision {git_revision()}; {backend}; scale {args.scale};
{"no ANALYZE after the load" if args.no_analyze else "ANALYZE after the load"}.

Show built with bulk inserts in {s["seconds"]} s: {s["sequences"]} sequences, {s["shots"]:,}
shots, {s["tasks"]:,} tasks, {s["versions"]:,} versions.

| measure | p50 | p99 |
|---|---|---|
{row("`find` Versions, 3 filters + linked field, through the API", result["find_api_ms"])}
{row("the same query as a plain ORM loop (each shot's versions), in process", orm)}
{row("a page of 500, order `entity.Shot.code` desc, `code` (keyset)", result["ordered_page_ms"])}

{args.queries} queries on random sequences, about {result["rows_per_find"]} versions each
(both answers checked equal). Ordered paging: the first {result["ordered_pages"]} pages of
the project's versions in review through the cursor, no version on two pages.
The per-token rate limit is off for this run (capacity is what is measured). Load
average at the end of the run (1, 5, 15 min): {result["load_average"]}
(above the core count, other work competed).

A `batch` of {args.batch:,} Version creates through the API: {result["batch"]["seconds"]} s
({result["batch"]["per_second"]:,}/s, one transaction, each audited and announced);
single `create` calls: {result["single_create_ms"]} ms each, so
{round(result["single_create_ms"] * args.batch / 1000, 1)} s for the same {args.batch:,}.
"""
    suffix = "" if backend == "sqlite" else f"-{backend}"
    path = write_result(f"studio{suffix}", markdown)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
