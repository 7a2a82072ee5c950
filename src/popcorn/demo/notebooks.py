"""The demo's notebook jobs: a scheduled report (its first tick due at once, fired by the
platform's scheduler), a check that fails in its third cell, and a Spark word count over a
generated text, all run by the demo's workers; the summary links to each run's page."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from popcorn.context import acting_as
from popcorn.db import session_scope, utcnow
from popcorn.demo.story import poll

ACTOR = "demo"
# The word count is a job of seconds: the JVM's top JIT tier and parallel collector would
# cost more CPU than they save (about half of spark-submit's CPU on a small machine).
SHORT_JOB_JVM = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}
WORDS = ["cache", "edge", "stream", "popcorn", "title", "region", "byte", "peer", "fill", "hit"]


def _text(path: Path, seed: int, lines: int = 2000) -> Path:
    rng = random.Random(seed)
    weights = [len(WORDS) - i for i in range(len(WORDS))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "\n".join(" ".join(rng.choices(WORDS, weights, k=12)) for _ in range(lines)) + "\n"
    )
    return path


def start(folder: Path, seed: int) -> dict[str, int]:
    """Define the three jobs and queue their runs (before the workers are up: they start on
    them as they come up); returns the run ids."""
    from popcorn.notebooks import examples, service
    from popcorn.notebooks import schemas as s

    text = _text(folder / "words.txt", seed)
    with acting_as(ACTOR), session_scope() as session:
        report = service.create_definition(
            session=session,
            spec=s.DefinitionCreate(
                name="daily-traffic-report",
                notebook=examples.daily_report(),
                parameters={"region": "eu-west", "peak_gbps": 140.0},
                cron="0 6 * * *",
                timezone="Europe/Amsterdam",
                tags=["demo", "traffic"],
                exclusive=True,
                output_formats=["html", "markdown"],  # stored beside the notebook
            ),
        )
        report.next_run_at = utcnow()  # its first tick is due now: the scheduler fires it
        service.create_definition(
            session=session,
            spec=s.DefinitionCreate(
                name="cache-hit-check", notebook=examples.failing_check(), tags=["demo"]
            ),
        )
        service.create_definition(
            session=session,
            spec=s.DefinitionCreate(
                name="wordcount",
                kind="spark",
                script=examples.WORDCOUNT,
                tags=["demo", "spark"],
                spark_conf=SHORT_JOB_JVM,
            ),
        )
        check = service.run_now(session=session, ref="cache-hit-check")
        count = service.run_now(
            session=session, ref="wordcount", parameters={"path": str(text), "top": 3}
        )
        ids = {"check": check.id, "wordcount": count.id, "report_definition": report.id}
    return ids


def wait(ids: dict[str, int], timeout: float) -> dict[str, Any]:
    """Wait for the three runs to end; their outcomes for the summary."""
    from popcorn.notebooks import service

    def ended() -> dict[str, Any] | None:
        with session_scope(readonly=True) as session:
            report = service.recent_runs(
                session=session, limit=1, definition_id=ids["report_definition"]
            )
            if not report:
                return None
            runs = {
                "report": report[0],
                "check": service.get_run(session=session, run_id=ids["check"]),
                "wordcount": service.get_run(session=session, run_id=ids["wordcount"]),
            }
            if any(r.status in ("queued", "running") for r in runs.values()):
                return None
            return {
                name: {
                    "run_id": r.id,
                    "status": r.status,
                    "trigger": r.trigger,
                    "duration_s": r.duration_s,
                    "failed_cell": r.failed_cell,
                    "error": r.error[:200],
                    "outputs": r.outputs,
                }
                for name, r in runs.items()
            }

    return poll("the notebook runs", ended, timeout, every=0.25)


def cancel(ids: dict[str, int]) -> None:
    """Cancel the demo's runs still queued or running (the demo stopped before its summary);
    a running one's kernel or Spark driver is stopped by its worker."""
    from popcorn.notebooks import service

    if not ids:
        return
    with acting_as(ACTOR), session_scope() as session:
        runs = [
            *service.recent_runs(session=session, limit=5, definition_id=ids["report_definition"]),
            service.get_run(session=session, run_id=ids["check"]),
            service.get_run(session=session, run_id=ids["wordcount"]),
        ]
        for run in runs:
            if run.status in ("queued", "running"):
                service.cancel_run(session=session, run_id=run.id)


def describe(found: dict[str, Any]) -> str:
    report, check, count = found["report"], found["check"], found["wordcount"]
    top = ", ".join(f"{w} {c}" for w, c in count["outputs"].get("top", []))
    return (
        f"report {report['status']} ({report['trigger']}, peak {report['outputs'].get('peak')} "
        f"Gbit/s); check {check['status']} in cell {check['failed_cell']} of its output "
        f"({check['error'][:60]}); "
        f"Spark word count {count['status']}: {count['outputs'].get('words')} words, top {top}"
    )
