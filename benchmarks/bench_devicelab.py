"""Device lab benchmark: one simulated lab day, and test selection at 99 % recall.

1. A simulated day (discrete events, simulated time; the scheduler code is the real one,
   `popcorn.devicelab.placement`): 40,000 long-running tests (2 to 30 min, NTS-like)
   from 40 builds arriving over 16 hours, on 600 device agents in 24 families and 3
   pools, a fifth of the TVs Dolby Vision and 60 % of devices DRM L1. Popcorn's placement
   (fair share between builds, scarce devices kept for the tests that need them, longest
   first) beside a first-free-device scheduler (the oldest queued test the free device
   can run), same builds, same durations, same run. Reported: the day's makespan, device
   utilisation, build turnaround (all, and the small builds a big one could starve), and
   decisions per second of the scheduler itself.
2. The platform path: queued executions handed to agents and their results recorded
   through the app's signed agent endpoints on a real database (SQLite here), results
   handed in with the next beat beside one request per result, same run.
3. A deep queue (`devicelab_queue`): agent beats against 50,000 queued tests, the
   service's window read (a few rows per build from the queue index) beside the full read
   of the family's queue it replaced, same installation, same run; on SQLite, and on
   PostgreSQL too with `--database-url`.
4. Test selection: the gradient-boosting failure model on generated history with planted
   causes, the fraction of (test, family) pairs it runs at the 99 % recall threshold
   (calibrated on earlier builds, measured on later ones), beside random order and beside
   "tests of touched components" at the same recall.

Run: .venv/bin/python benchmarks/bench_devicelab.py [--quick] [--deep-only]
     [--database-url postgresql://...] (a database the benchmark may empty)
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from popcorn.devicelab import placement, prediction

sys.path.insert(0, str(Path(__file__).parent))
from common import LoadWatch, git_revision, machine, write_result
from devicelab_queue import deep_queue


def lab(devices: int, families: int, seed: int) -> tuple[dict[int, dict[str, Any]], list[str]]:
    rng = random.Random(seed)
    fams = [f"{['tv', 'console', 'stb'][i % 3]}-fam{i:02d}" for i in range(families)]
    fleet = {}
    for d in range(devices):
        family = fams[d % families]
        fleet[d] = {
            "family": family,
            "pool": f"pool-{d % 3}",
            "hdr": ["dolby_vision"] if family.startswith("tv") and rng.random() < 0.2 else [],
            "drm_level": "L1" if rng.random() < 0.6 else "L3",
        }
    return fleet, fams


def builds(
    total: int, n_builds: int, fleet: dict[int, dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """Builds arriving over 16 h: a few big suites (nightlies) and many small ones. Each
    test's family is drawn in proportion to the devices able to run it (a lab sized for
    its work: no family is a bottleneck by construction)."""
    rng = random.Random(seed)
    dv = [d for d, c in fleet.items() if "dolby_vision" in c["hdr"]]
    l1 = [d for d, c in fleet.items() if c["drm_level"] == "L1"]
    weights = [8.0 if i % 10 == 0 else 1.0 for i in range(n_builds)]
    scale = total / sum(weights)
    out: list[dict[str, Any]] = []
    for i, w in enumerate(weights):
        size = max(1, round(w * scale))
        arrive = 0.0 if i == 0 else rng.uniform(0, 16 * 3600)
        jobs = []
        for _ in range(size):
            kind = rng.random()
            if kind < 0.05:
                requires, pool = {"hdr": "dolby_vision"}, dv
            elif kind < 0.25:
                requires, pool = {"drm_level": "L1"}, l1
            else:
                requires, pool = {}, list(fleet)
            family = fleet[rng.choice(pool)]["family"]
            jobs.append((family, requires, rng.uniform(2, 30) * 60))
        out.append({"id": i + 1, "arrive": arrive, "jobs": jobs})
    out.sort(key=lambda b: b["arrive"])
    return out


def simulate(
    policy: type, fleet: dict[int, dict[str, Any]], plan: list[dict[str, Any]]
) -> dict[str, float]:
    by_family: dict[str, list[int]] = defaultdict(list)
    for d, caps in fleet.items():
        by_family[caps["family"]].append(d)
    placer = policy()
    events: list[tuple[float, int, int, int]] = []  # time, kind (0 done, 1 arrive), payload, build
    for b in plan:
        heapq.heappush(events, (b["arrive"], 1, b["id"], b["id"]))
    builds_by_id = {b["id"]: b for b in plan}
    remaining = {b["id"]: len(b["jobs"]) for b in plan}
    finished_at: dict[int, float] = {}
    duration: dict[int, float] = {}
    idle = set(fleet)
    busy = 0.0
    decisions = 0
    decide_time = 0.0
    seq = 0

    def start(device: int, now: float) -> bool:
        nonlocal decisions, decide_time, busy
        t0 = time.perf_counter()
        job = placer.take(device)
        decide_time += time.perf_counter() - t0
        decisions += 1
        if job is None:
            return False
        idle.discard(device)
        busy += duration[job.id]
        heapq.heappush(events, (now + duration[job.id], 0, device, job.build))
        return True

    now = 0.0
    while events:
        now, kind, payload, build = heapq.heappop(events)
        if kind == 1:
            jobs = []
            for family, requires, dur in builds_by_id[payload]["jobs"]:
                seq += 1
                candidates = frozenset(
                    d for d in by_family[family] if placement.capable(requires, fleet[d])
                ) or frozenset(by_family[family])  # the service refuses these; keep the count
                duration[seq] = dur
                jobs.append(placement.Job(seq, payload, candidates, dur))
            t0 = time.perf_counter()
            placer.add_all(jobs)
            decide_time += time.perf_counter() - t0
            for device in sorted(idle):
                start(device, now)
        else:
            placer.finished(build)
            remaining[build] -= 1
            if remaining[build] == 0:
                finished_at[build] = now
            idle.add(payload)
            start(payload, now)
    makespan = now
    turnaround = [finished_at[b["id"]] - b["arrive"] for b in plan]
    small = [finished_at[b["id"]] - b["arrive"] for b in plan if len(b["jobs"]) < 2000]
    return {
        "makespan_h": makespan / 3600,
        "utilisation": busy / (len(fleet) * makespan),
        "turnaround_mean_h": statistics.mean(turnaround) / 3600,
        "turnaround_p95_h": sorted(turnaround)[int(0.95 * (len(turnaround) - 1))] / 3600,
        "small_mean_h": statistics.mean(small) / 3600 if small else 0.0,
        "decisions_per_s": decisions / decide_time if decide_time else 0.0,
        "decisions": float(decisions),
    }


def platform_path(executions: int, agents: int, *, batched: bool) -> dict[str, float]:
    """Executions assigned to and reported by agents through the Flask app's signed agent
    endpoints (in process, no network) on a fresh SQLite installation. `batched`: each
    beat hands in the results finished since the last one (the agent's protocol); else
    each result is its own signed request before the beat (one transaction each)."""
    import json

    home = tempfile.mkdtemp(prefix="devicelab-bench-")
    os.environ["POPCORN_HOME"] = home
    os.environ.pop("POPCORN_DATABASE_URL", None)
    from popcorn.config import reset_settings

    reset_settings()
    from popcorn.app import create_app
    from popcorn.auth import create_token
    from popcorn.db import session_scope, upgrade
    from popcorn.devicelab import scheduling, service
    from popcorn.devicelab import schemas as s
    from popcorn.devicelab.protocol import API, SIGNATURE_HEADER, canonical, sign

    upgrade()
    tests = [
        s.TestCreate(name=f"bench.t{i:05d}", suite="bench", expected_duration_s=60 + i % 600)
        for i in range(executions // 4)
    ]
    keys: dict[str, str] = {}
    with session_scope() as session:
        _, token = create_token(session=session, name="bench-agents", role="operator")
        service.upsert_tests(session=session, specs=tests)
        for a in range(agents):
            name = f"bench-{a:03d}"
            spec = s.DeviceCreate(name=name, platform="tv", family=f"fam-{a % 4}")
            registered = service.register_agent(session=session, spec=s.AgentRegister(device=spec))
            keys[name] = registered["agent_key"]
        scheduling.start_run(
            session=session, spec=s.RunCreate(build=s.BuildCreate(app_version="1"), suite="bench")
        )
    client = create_app().test_client()

    def call(name: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = canonical(body)
        response = client.post(
            f"{API}/{name}/{path}",
            data=data,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(keys[name], data),
            },
        )
        assert response.status_code == 200, response.data[:300]
        return dict(json.loads(response.data))

    held: dict[str, list[int]] = {name: [] for name in keys}
    assigned = requests = 0
    started, cpu = time.perf_counter(), time.process_time()
    while True:
        progressed = False
        for name in keys:
            done = [
                {"execution": e, "status": "passed", "duration_s": 1.0, "message": ""}
                for e in held[name]
            ]
            if not batched:
                for result in done:
                    call(name, "results", result)
                    requests += 1
                done = []
            answer = call(name, "poll", {"running": [], "results": done})
            requests += 1
            held[name] = [item["execution"] for item in answer["assignments"]]
            assigned += len(held[name])
            progressed = progressed or bool(held[name] or done)
        if not progressed:
            break
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "executions": float(assigned),
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "per_s": assigned / elapsed,
        "per_cpu_s": assigned / cpu,
        "requests": float(requests),
    }


def selection(tests: int, families: int, n_builds: int) -> dict[str, Any]:
    world = prediction.make_world(tests=tests, families=families, seed=11)
    history = prediction.generate_history(world, builds=n_builds, seed=11)
    started = time.perf_counter()
    _, measured = prediction.fit_and_evaluate(history, recall=0.99, seed=11)
    measured["train_s"] = time.perf_counter() - started
    measured["records"] = len(history)
    return measured


def deep_section(measured: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The deep-queue rows: the window read beside the full read, per database."""
    depth = measured[0][1]["depth"]
    lines = [
        f"### A deep queue: {depth:,} queued tests, 200 devices of one family",
        "",
        "Beats through `dispatch.poll` (each hands in the test its device took last time and "
        "takes the next), five running builds, a tenth of the tests needing one of the 40 "
        "Dolby Vision devices. The full read is the previous assignment: the family's whole "
        "queue read and placed on every beat. CPU time is this process's (SQLite runs in it; "
        "PostgreSQL's own work is not counted there, so wall time is shown too).",
        "",
        "| database | assignment | beats | CPU per beat | assignments per CPU second "
        "| wall per beat | assignments/s (wall) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for database, found in measured:
        for name, r in (
            ("window read in placement order (Popcorn)", found["ours"]),
            ("full read of the family's queue (before)", found["base"]),
        ):
            lines.append(
                f"| {database} | {name} | {int(r['beats'])} | "
                f"{1000 * r['cpu_seconds'] / r['beats']:.1f} ms | {r['per_cpu_s']:,.1f} | "
                f"{1000 * r['seconds'] / r['beats']:.0f} ms | {r['per_s']:,.1f} |"
            )
    lines.append("")
    for database, found in measured:
        ours, base = found["ours"], found["base"]
        wall = ours["per_s"] / max(base["per_s"], 1e-9)
        cpu = ours["per_cpu_s"] / max(base["per_cpu_s"], 1e-9)
        lines.append(
            f"{database} (load average {found['load']:.1f} when it ended): the window read "
            f"makes {wall:,.0f}x the assignments per second of wall time ({cpu:,.0f}x per CPU "
            "second)."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a tenth of the day, small history")
    parser.add_argument("--deep-only", action="store_true", help="only the deep queue, printed")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("POPCORN_BENCH_DATABASE_URL", ""),
        help="PostgreSQL for the deep queue too (in a new schema of its own, dropped after)",
    )
    options = parser.parse_args()
    watch = LoadWatch()
    depth, counts = (5000, (100, 5)) if options.quick else (50_000, (600, 12))
    deep = [("SQLite", deep_queue(depth, None, window=counts[0], full=counts[1]))]
    if options.database_url:
        url = options.database_url
        deep.append(("PostgreSQL", deep_queue(depth, url, window=counts[0], full=counts[1])))
    deep_lines = deep_section(deep)
    if options.deep_only:
        print("\n".join(deep_lines))
        return
    total, agents, n_builds = (4000, 60, 40) if options.quick else (40_000, 600, 40)
    fleet, _ = lab(agents, 6 if options.quick else 24, seed=5)
    plan = builds(total, n_builds, fleet, seed=5)
    ours = simulate(placement.Placer, fleet, plan)
    base = simulate(placement.FirstFree, fleet, plan)
    size = (400, 10) if options.quick else (1200, 40)
    single = platform_path(*size, batched=False)
    path = platform_path(*size, batched=True)
    sel = selection(*((40, 4, 40) if options.quick else (120, 8, 90)))
    watch.stop()

    def row(name: str, r: dict[str, float]) -> str:
        return (
            f"| {name} | {r['makespan_h']:.1f} h | {100 * r['utilisation']:.1f} % | "
            f"{r['turnaround_mean_h']:.1f} h | {r['turnaround_p95_h']:.1f} h | "
            f"{r['small_mean_h']:.1f} h | "
            f"{r['decisions_per_s']:,.0f} |"
        )

    lines = [
        "## Device lab: a simulated day, and test selection",
        "",
        f"Machine: {machine()}; revision {git_revision()}; {watch.note()}.",
        "",
        f"### One lab day: {total:,} tests, {agents} device agents, {n_builds} builds",
        "",
        "Simulated time (tests last 2 to 30 min; builds arrive over 16 h, every tenth a "
        "nightly 8x the size of the others); the placement code is the service's own.",
        "",
        "| scheduler | day's makespan | device utilisation | build turnaround (mean) | p95 "
        "| small builds (mean) | decisions/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("Popcorn: fair share, scarcity, longest first", ours),
        row("first free device (oldest test it can run)", base),
        "",
        f"Ratios: makespan {base['makespan_h'] / ours['makespan_h']:.2f}x shorter, small "
        f"builds' turnaround {base['small_mean_h'] / max(ours['small_mean_h'], 1e-9):.2f}x "
        f"shorter; utilisation {100 * ours['utilisation']:.1f} % vs "
        f"{100 * base['utilisation']:.1f} %.",
        "",
        f"### The platform path: {size[0]:,} executions, {size[1]} agents",
        "",
        "Assigned and reported through the app's signed agent endpoints (Flask test client: "
        "in process, no network; SQLite); every test passes at once, so this is the "
        "service's own cost per test. CPU time (this process's) is the figure to compare; "
        "wall time moves with any other load on the machine.",
        "",
        "| agent protocol | executions | requests | CPU time | assignments per CPU second "
        "| wall time | assignments/s (wall) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| results handed in with the next beat (one transaction per beat) | "
        f"{int(path['executions']):,} | {int(path['requests']):,} | "
        f"{path['cpu_seconds']:.1f} s | {path['per_cpu_s']:.0f} | {path['seconds']:.1f} s | "
        f"{path['per_s']:.0f} |",
        f"| one signed request per result, then the beat | {int(single['executions']):,} | "
        f"{int(single['requests']):,} | {single['cpu_seconds']:.1f} s | "
        f"{single['per_cpu_s']:.0f} | {single['seconds']:.1f} s | {single['per_s']:.0f} |",
        "",
        f"Results in the beat: {path['per_cpu_s'] / max(single['per_cpu_s'], 1e-9):.2f}x the "
        "assignments per CPU second.",
        "",
        *deep_lines,
        "",
        "### Test selection at 99 % failure recall",
        "",
        f"Generated history: {sel['records']:,} (test, family, build) results with planted "
        f"causes; threshold calibrated on builds 60-80 %, measured on the last 20 % "
        f"({int(sel['rows']):,} pairs, {int(sel['failures'])} real failures; flaky failures "
        f"that passed on retry do not count). Training and evaluation took {sel['train_s']:.0f} s.",
        "",
        "| selection | tests run | failing-test recall |",
        "|---|---:|---:|",
        f"| gradient boosting (HistGradientBoostingClassifier) | "
        f"{100 * sel['fraction_run']:.1f} % | {100 * sel['recall']:.1f} % |",
        f"| random order, run until 99 % recall | {100 * sel['random_fraction']:.1f} % | 99.0 % |",
        f"| tests of touched components (+ failing last time) | "
        f"{100 * sel['touched_fraction']:.1f} % | {100 * sel['touched_recall']:.1f} % |",
        "",
        f"The model runs {sel['random_fraction'] / max(sel['fraction_run'], 1e-9):.1f}x fewer "
        "tests than random order at the same recall.",
    ]
    text = "\n".join(lines)
    print(text)
    if not options.quick:
        write_result("devicelab", text)


if __name__ == "__main__":
    main()
