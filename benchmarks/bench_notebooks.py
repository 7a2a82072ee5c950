"""Notebook scheduler benchmark: the cost of a run through Popcorn, and how late scheduled
runs start.

1. Overhead per run. Baseline, in the same run: bare `papermill.execute_notebook` of the
   same small parameterised notebook in this process (a fresh kernel each time, as
   papermill does). Popcorn: the run recorded, enqueued, taken by a real forking
   `popcorn worker`, executed by papermill in its own kernel, the output stored in the
   object store and the outcome recorded with its events; timed from the request to the
   recorded end. The two alternate, so machine load hits both alike.
2. Lateness. N definitions on a minute cron, two workers and the scheduler as separate
   processes; for every run of two consecutive minute ticks, how long after its tick it
   started (p50, p95, max): `--definitions` plain Python callable jobs (the scheduler and
   queue at the issue's 1,000), and `--notebook-definitions` notebook jobs, where each run
   starts a kernel, so with two workers the tail is the queue of kernel starts.

Run: .venv/bin/python benchmarks/bench_notebooks.py [--runs 8] [--definitions 1000]
     [--notebook-definitions 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import git_revision, machine, write_result

PY = sys.executable
NOTEBOOK: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 4,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {"tags": ["parameters"]},
            "outputs": [],
            "source": "n = 1000",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": "total = sum(i * i for i in range(int(n)))\nprint(total)",
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {"tags": ["outputs"]},
            "outputs": [],
            "source": "{'total': total}",
        },
    ],
}


PLUGIN = "popcorn_bench_plugin"


def setup() -> dict[str, str]:
    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-notebooks-"))
    # a plain Python callable job, so the scheduler's lateness is measured apart from kernels
    (home / f"{PLUGIN}.py").write_text("def noop(**parameters):\n    return {'ok': True}\n")
    env = {
        **os.environ,
        "POPCORN_HOME": str(home),
        "POPCORN_LOG_LEVEL": "WARNING",
        "POPCORN_PLUGINS": PLUGIN,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(home), os.environ.get("PYTHONPATH")])),
    }
    sys.path.insert(0, str(home))
    env.pop("POPCORN_DATABASE_URL", None)
    env.pop("POPCORN_REDIS_URL", None)
    os.environ.update(env)
    from popcorn import jobs
    from popcorn.config import reset_settings
    from popcorn.db import upgrade

    reset_settings()
    upgrade()
    env["POPCORN_REDIS_URL"] = f"unix://{jobs.embedded_redis_server().socket_file}"
    return env


def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, "-m", "popcorn", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def define(name: str, kind: str = "notebook", **extra: Any) -> int:
    from popcorn.db import session_scope
    from popcorn.notebooks import schemas, service

    source: dict[str, Any] = (
        {"kind": "callable", "callable": f"{PLUGIN}:noop"}
        if kind == "callable"
        else {"notebook": NOTEBOOK}
    )
    with session_scope() as session:
        spec = schemas.DefinitionCreate(name=name, **source, **extra)
        return service.create_definition(session=session, spec=spec).id


def run_and_wait(definition: str, timeout: float = 300) -> tuple[float, float]:
    """Seconds from the request to the recorded end, and the run's own (papermill) seconds."""
    from popcorn.db import session_scope
    from popcorn.notebooks import service

    started = time.perf_counter()
    with session_scope() as session:
        run_id = service.run_now(session=session, ref=definition, parameters={"n": 1000}).id
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(readonly=True) as session:
            run = service.get_run(session=session, run_id=run_id)
            if run.status not in ("queued", "running"):
                if run.status != "succeeded":
                    raise RuntimeError(f"run {run_id} {run.status}: {run.error}")
                return time.perf_counter() - started, float(run.duration_s or 0)
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not end")
        time.sleep(0.02)


def bare_papermill(folder: Path) -> float:
    import papermill

    source = folder / "bench.ipynb"
    source.write_text(json.dumps(NOTEBOOK))
    started = time.perf_counter()
    papermill.execute_notebook(
        str(source), str(folder / "out.ipynb"), parameters={"n": 1000}, progress_bar=False
    )
    return time.perf_counter() - started


def overhead(env: dict[str, str], runs: int) -> dict[str, Any]:
    define("bench")
    worker = start(env, "worker", "--queue", "default")
    try:
        run_and_wait("bench")  # warm: the worker's imports, the first kernel
        folder = Path(tempfile.mkdtemp(prefix="popcorn-bench-pm-"))
        bare_papermill(folder)
        popcorn, inner, bare = [], [], []
        for _ in range(runs):
            bare.append(bare_papermill(folder))
            total, own = run_and_wait("bench")
            popcorn.append(total)
            inner.append(own)
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        stop([worker])
    return {
        "bare": statistics.median(bare),
        "popcorn": statistics.median(popcorn),
        "inner": statistics.median(inner),
        "runs": runs,
    }


def lateness(env: dict[str, str], definitions: int, kind: str, max_wait: float) -> dict[str, Any]:
    from sqlalchemy import select, update

    from popcorn.db import session_scope, utcnow
    from popcorn.notebooks.models import NotebookDefinition, NotebookRun

    started_defining = time.perf_counter()
    ids = [define(f"{kind}-{i:04d}", kind, cron="* * * * *") for i in range(definitions)]
    print(
        f"  {definitions} {kind} definitions made in {time.perf_counter() - started_defining:.0f} s"
    )
    # the tick job runs on "high", the runs on "default"
    procs = [start(env, "worker", "--queue", "high", "--queue", "default") for _ in range(2)]
    procs.append(start(env, "scheduler"))
    try:
        now = utcnow()
        first = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if (first - now).total_seconds() < 20:  # time for the processes to come up
            first += timedelta(minutes=1)
        ticks = [first, first + timedelta(minutes=1)]
        with session_scope() as session:
            session.execute(
                update(NotebookDefinition)
                .where(NotebookDefinition.id.in_(ids))
                .values(next_run_at=first)
            )
        print(f"  waiting for the ticks at {ticks[0]:%H:%M} and {ticks[1]:%H:%M} UTC")
        # how long after the second tick to wait for every run to start (then report as is)
        deadline = time.monotonic() + (ticks[1] - utcnow()).total_seconds() + max_wait
        while True:
            with session_scope(readonly=True) as session:
                rows = list(
                    session.execute(
                        select(NotebookRun.tick, NotebookRun.started_at, NotebookRun.status).where(
                            NotebookRun.tick.in_(ticks)
                        )
                    )
                )
            started = [r for r in rows if r.started_at is not None]
            if len(started) >= 2 * definitions:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        late = sorted((r.started_at - r.tick).total_seconds() for r in started)
        failed = sum(1 for r in rows if r.status == "failed")
        with session_scope(readonly=True) as session:
            per_tick = {
                t: session.scalar(select(NotebookRun.id).where(NotebookRun.tick == t).limit(1))
                is not None
                for t in ticks
            }
    finally:
        stop(procs)
        with session_scope() as session:  # the next measurement starts from no schedule
            session.execute(
                update(NotebookDefinition)
                .where(NotebookDefinition.id.in_(ids))
                .values(enabled=False, next_run_at=None)
            )
            session.execute(  # a later tick's runs still queued: their jobs will do nothing
                update(NotebookRun)
                .where(NotebookRun.definition_id.in_(ids), NotebookRun.status == "queued")
                .values(status="canceled")
            )
    return {
        "kind": kind,
        "failed": failed,
        "definitions": definitions,
        "runs": len(late),
        "not_started": 2 * definitions - len(late),
        "max_wait": max_wait,
        "p50": statistics.median(late) if late else float("nan"),
        "p95": late[min(len(late) - 1, int(0.95 * len(late)))] if late else float("nan"),
        "max": late[-1] if late else float("nan"),
        "ticks": per_tick,
    }


from popcorn.notebooks.service import TICK_SECONDS  # noqa: E402


def _late_line(late: dict[str, Any]) -> str:
    line = (
        f"p50 {late['p50']:.1f} s, p95 {late['p95']:.1f} s, max {late['max']:.1f} s "
        f"after their tick ({late['runs']:,} runs, {late['failed']} failed)"
    )
    if late["not_started"]:
        line += (
            f"; {late['not_started']:,} of {2 * late['definitions']:,} runs had not started "
            f"{late['max_wait']:.0f} s after the second tick (the figures are over those started)"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument(
        "--definitions",
        type=int,
        default=1000,
        help="Minute definitions for the scheduler's lateness (plain Python callable jobs).",
    )
    parser.add_argument(
        "--notebook-definitions",
        type=int,
        default=20,
        help="Minute definitions of notebook jobs (each run starts a kernel).",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=600,
        help="Seconds after the second tick to wait for every run to start; runs not started "
        "by then are reported as such.",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    env = setup()
    try:
        cost = overhead(env, args.runs)
        print(
            f"overhead: bare papermill {cost['bare']:.2f} s, "
            f"through Popcorn {cost['popcorn']:.2f} s (papermill inside {cost['inner']:.2f} s)"
        )
        kernels = lateness(env, args.notebook_definitions, "notebook", args.max_wait)
        print(f"lateness, {kernels['definitions']} notebook definitions: {_late_line(kernels)}")
        late = lateness(env, args.definitions, "callable", args.max_wait)
        print(f"lateness, {late['definitions']} callable definitions: {_late_line(late)}")
    finally:
        from popcorn.jobs import stop_embedded_redis

        stop_embedded_redis()
        shutil.rmtree(env["POPCORN_HOME"], ignore_errors=True)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    ratio = cost["popcorn"] / cost["bare"]
    per_minute = 120 / max(cost["inner"], 0.1)
    write_result(
        "notebooks",
        f"""## Notebooks: scheduler overhead and lateness

Machine: {machine()}; revision {git_revision()}; SQLite and the embedded Redis; {load}.

A three-cell parameterised notebook (a `parameters` cell, a small loop, an `outputs` cell),
median of {cost["runs"]} runs, alternating:

| path | per run |
|---|---|
| bare `papermill.execute_notebook` in one process (baseline) | {cost["bare"]:.2f} s |
| Popcorn: queued, a forking worker, papermill, output stored, events \
| {cost["popcorn"]:.2f} s |
| of which papermill inside the worker | {cost["inner"]:.2f} s |

Overhead per run: {cost["popcorn"] - cost["bare"]:.2f} s ({ratio:.2f}x the bare run). Each run
gets a fresh kernel process (the issue's isolation: no state carried from one run to the
next), started without IPython's history database and stopped at once when its last cell
ends; starting that kernel is most of a run either way.

Lateness of scheduled runs, 2 workers and the scheduler as separate processes, every run of
two consecutive minute ticks:

| definitions on `* * * * *` | how late runs start |
|---|---|
| {late["definitions"]:,} plain Python callable jobs (the scheduler, queue and workers) \
| {_late_line(late)} |
| {kernels["definitions"]:,} notebook jobs (a kernel per run) | {_late_line(kernels)} |

The {late["definitions"]:,}-definition figure is the scheduler's own: each tick records
{late["definitions"]:,} runs (each once, in transactions of 100) and two forking workers start
them; the scheduler looks for due ticks every {TICK_SECONDS} s, so even an idle system starts a
run up to that long after its tick. With notebooks, two workers
start about {per_minute:.0f} kernels a minute here (papermill {cost["inner"]:.1f} s a run), so 1,000
minute notebook definitions would fall behind by the minute: they need about
{1000 / max(per_minute / 2, 1):.0f} workers (or fewer, longer schedules). 1,000 notebook
definitions were not run here: two ticks would queue 2,000 kernel starts, over
{2000 * cost["inner"] / 2 / 60:.0f} minutes of work for two workers.
""",
    )


if __name__ == "__main__":
    main()
