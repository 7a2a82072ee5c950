"""Runbook executions completed per second on real `popcorn worker` processes.

A trivial 3-step runbook (diagnose, decide, remediate), every step checkpointed
in SQLite, events and audit records written, as in production. Measured with
1, 2 and 4 workers, forking (one work horse per job, rq's default) and
`--no-fork`, and with a backlog 5x larger to see whether throughput holds.
Baseline: bare Popcorn jobs (`core.echo`, one job and no steps) on the same
workers in the same run. StackStorm cannot run here; a figure quoted for it is
printed apart from the measured rows, with where it comes from.

Run: .venv/bin/python benchmarks/bench_runbooks.py   (figures go to results/runbooks.md)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import LoadWatch, machine, write_result

PY = sys.executable
EXECUTIONS = int(os.environ.get("BENCH_RUNBOOK_EXECUTIONS", "300"))
BACKLOG = 5 * EXECUTIONS
# A quoted figure, not a measurement: see the note printed beside the table.
STACKSTORM_QUOTED_PER_SECOND = 13.0
STACKSTORM_SOURCE = (
    "StackStorm's public performance write-ups (for example the st2 v3.5 verification "
    "linked from https://github.com/StackStorm/st2/discussions/5510)"
)
HOLDS = 0.9  # backlog throughput at least this share of the normal run: "holds"

PACK = """
from pydantic import BaseModel
from popcorn.remediation.engine import Pack, Runbook, StepContext, step

pack = Pack("bench", version="1.0")


class Inputs(BaseModel):
    n: int = 0


@pack.runbook
class Trivial(Runbook):
    name = "trivial"
    Inputs = Inputs

    @step(kind="diagnose")
    def look(self, ctx: StepContext) -> dict:
        return {"n": ctx.inputs.n}

    @step(kind="decide")
    def think(self, ctx: StepContext) -> dict:
        return {"go": ctx.outputs["look"]["n"] >= 0}

    @step(kind="remediate")
    def act(self, ctx: StepContext) -> dict:
        return {"done": True}
"""


def setup() -> dict[str, str]:
    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-runbooks-"))
    (home / "packs").mkdir()
    (home / "packs" / "bench.py").write_text(PACK)
    env = {**os.environ, "POPCORN_HOME": str(home), "POPCORN_LOG_LEVEL": "WARNING"}
    env.pop("POPCORN_DATABASE_URL", None)
    env.pop("POPCORN_REDIS_URL", None)
    os.environ.update(env)
    from popcorn import jobs
    from popcorn.config import reset_settings
    from popcorn.db import session_scope, upgrade
    from popcorn.remediation import service

    reset_settings()
    upgrade()
    with session_scope() as session:
        # Out of the way: a budget no run reaches (the check itself still runs per remediation).
        service.configure_circuit(session=session, budget=1_000_000, window_seconds=1)
    env["POPCORN_REDIS_URL"] = f"unix://{jobs.embedded_redis_server().socket_file}"
    return env


def start_workers(env: dict[str, str], count: int, fork: bool) -> list[subprocess.Popen[bytes]]:
    args = [PY, "-m", "popcorn", "worker"] + ([] if fork else ["--no-fork"])
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    # Ready when each has run a job (imports done, connected).
    from popcorn import jobs
    from popcorn.db import session_scope

    with session_scope() as session:
        ids = [
            jobs.enqueue(session, "core.echo", arguments={"warm": i}).id for i in range(count * 2)
        ]
    for job_id in ids:
        jobs.wait_for(job_id, timeout=120)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def _wait_done(count_done: Any, total: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while count_done() < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {count_done()} of {total} done")
        time.sleep(0.05)


def run_executions(total: int) -> float:
    """Start `total` executions in one transaction; executions completed per second."""
    from sqlalchemy import func, select

    from popcorn.db import session_scope
    from popcorn.remediation import service
    from popcorn.remediation.models import RunbookExecution

    with session_scope(readonly=True) as session:
        before = int(session.scalar(select(func.max(RunbookExecution.id))) or 0)
    started = time.perf_counter()
    with session_scope() as session:
        for i in range(total):
            service.start_runbook(session=session, runbook="bench.trivial", inputs={"n": i})

    def done() -> int:
        with session_scope(readonly=True) as session:
            return int(
                session.scalar(
                    select(func.count(RunbookExecution.id)).where(
                        RunbookExecution.id > before, RunbookExecution.status == "succeeded"
                    )
                )
                or 0
            )

    _wait_done(done, total)
    elapsed = time.perf_counter() - started
    with session_scope(readonly=True) as session:
        failed = session.scalar(
            select(func.count(RunbookExecution.id)).where(
                RunbookExecution.id > before, RunbookExecution.status != "succeeded"
            )
        )
    assert not failed, f"{failed} executions did not succeed"
    return total / elapsed


def run_echo_jobs(total: int) -> float:
    from sqlalchemy import func, select

    from popcorn import jobs
    from popcorn.db import session_scope

    started = time.perf_counter()
    with session_scope() as session:
        ids = [jobs.enqueue(session, "core.echo", arguments={"i": i}).id for i in range(total)]

    def done() -> int:
        with session_scope(readonly=True) as session:
            return int(
                session.scalar(
                    select(func.count(jobs.JobRecord.id)).where(
                        jobs.JobRecord.id.in_(ids), jobs.JobRecord.status == "finished"
                    )
                )
                or 0
            )

    _wait_done(done, total)
    return total / (time.perf_counter() - started)


def main() -> None:
    watch = LoadWatch()
    env = setup()
    rows: list[tuple[str, int, float, float]] = []
    backlog: tuple[float, float] | None = None
    try:
        for fork in (True, False):
            for workers in (1, 2, 4):
                procs = start_workers(env, workers, fork)
                try:
                    runbooks = run_executions(EXECUTIONS)
                    echo = run_echo_jobs(EXECUTIONS)
                    if not fork and workers == 2:
                        backlog = (runbooks, run_executions(BACKLOG))
                finally:
                    stop_workers(procs)
                label = "forking" if fork else "--no-fork"
                rows.append((label, workers, runbooks, echo))
                print(
                    f"{label:9} {workers} worker(s): {runbooks:6.1f} executions/s, "
                    f"bare jobs {echo:6.1f}/s",
                    flush=True,
                )
    finally:
        shutil.rmtree(env["POPCORN_HOME"], ignore_errors=True)

    watch.stop()
    table = "\n".join(
        f"| {label} | {workers} | {rb:,.1f} | {echo:,.1f} | {rb / echo:.2f}x |"
        for label, workers, rb, echo in rows
    )
    held = ""
    if backlog is not None:
        ratio = backlog[1] / backlog[0]
        verdict = (
            "throughput holds under backlog"
            if ratio >= HOLDS
            else f"throughput drops by {1 - ratio:.0%} under backlog"
        )
        held = (
            f"\nWith a backlog of {BACKLOG:,} executions queued at once (2 `--no-fork` workers): "
            f"{backlog[1]:,.1f} executions/s, against {backlog[0]:,.1f}/s for {EXECUTIONS} "
            f"({ratio:.2f}x): {verdict}.\n"
        )
    md = f"""## Runbooks

Machine: {machine()}; {watch.note()}. SQLite (WAL) and the embedded Redis; workers are real
`popcorn worker` processes on the same 2 cores as the benchmark. {EXECUTIONS} executions of a
trivial 3-step runbook (diagnose, decide, remediate) are started in one transaction; the time
runs until the last one has succeeded. Every step is checkpointed (its start and its outcome),
with domain events and audit records, as in production. Baseline, in the same run on the same
workers: bare Popcorn jobs (`core.echo`: one job, no steps, no checkpoints).

| workers | count | runbook executions/s | bare jobs/s | runbook / bare job |
|---|---|---|---|---|
{table}
{held}
Not measured here: StackStorm is quoted at about {STACKSTORM_QUOTED_PER_SECOND:.0f} workflow
executions/s, a figure from {STACKSTORM_SOURCE}, on other hardware and with other workflows. It
is no baseline for the rows above and no ratio is drawn from it.

A forking worker pays one fork per job (rq's default isolation), which bounds it near the
bare-job rate; `--no-fork` runs jobs in the worker process. One execution is one job that runs
all its steps, with a durable checkpoint per step; SQLite serializes the writers, so more
workers than cores add contention rather than throughput. PostgreSQL lets writers proceed
in parallel.
"""
    print(md)
    write_result("runbooks", md)


if __name__ == "__main__":
    main()
