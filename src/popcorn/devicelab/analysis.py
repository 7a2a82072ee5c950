"""Reading results: a run's outcome per (test, family), flaky tests (the same test on the
same build both passing and failing), failure attribution (new with this change, or
already failing on main), JUnit reports in and out, and test selection with the
failure model.

The model is ML's: the `test-failure` flow (in `flows/`) trains it on this lab's history,
the ml domain promotes and serves it, and selection scores rows through `popcorn.ml.api`.
With no promoted model, a run asking for selection runs every test and says why.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import domains
from popcorn.audit import record_change
from popcorn.db import utcnow
from popcorn.devicelab import junit, prediction, scheduling, service
from popcorn.devicelab.models import LabBuild, LabExecution, LabRun, LabTest
from popcorn.devicelab.schemas import TestCreate
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.outbox import emit

if TYPE_CHECKING:
    from popcorn.ml.api import PromotedModel

FAILED = ("failed", "error", "timeout", "lost")


def _final(executions: list[LabExecution]) -> dict[tuple[str, str], list[LabExecution]]:
    grouped: dict[tuple[str, str], list[LabExecution]] = defaultdict(list)
    for e in sorted(executions, key=lambda e: e.attempt):
        grouped[(e.test_name, e.family)].append(e)
    return grouped


def summarise_run(*, session: Session, run: LabRun) -> dict[str, Any]:
    """Final outcome per (test, family), flaky flags and attribution, stored on the rows."""
    executions = list(session.scalars(select(LabExecution).where(LabExecution.run_id == run.id)))
    build = session.get(LabBuild, run.build_id)
    assert build is not None
    main_failing = failing_on_main(session=session, before=build)
    passed = failed = flaky = 0
    new, known = [], []
    for (test, family), attempts in _final(executions).items():
        last = attempts[-1]
        outcomes = {e.status for e in attempts}
        is_flaky = "passed" in outcomes and bool(outcomes & set(FAILED) - {"lost"})
        if is_flaky:
            for e in attempts:
                e.flaky = True
            flaky += 1
        if last.status == "passed" or last.status == "cancelled":
            passed += last.status == "passed"
            continue
        failed += 1
        if (test, family) in main_failing:
            last.attribution = "known"
            known.append(f"{test}@{family}")
        else:
            touched = bool(set(_components(session, last.test_id)) & set(build.components))
            last.attribution = "change" if touched else "new"
            new.append(f"{test}@{family}")
    summary = {
        "executions": len(executions),
        "tests": passed + failed,
        "passed": passed,
        "failed": failed,
        "flaky": flaky,
        "new_failures": new[:200],
        "known_failures": known[:200],
        "culprit": build.change if new and build.branch != "main" else "",
        "duration_s": round(sum(e.duration_s for e in executions), 1),
    }
    if new:
        emit(
            session,
            "devicelab.run.culprit",
            "devicelab_run",
            run.id,
            {"change": build.change, "new_failures": len(new)},
        )
    return summary


def _components(session: Session, test_id: int) -> list[str]:
    test = session.get(LabTest, test_id)
    return list(test.components) if test else []


def failing_on_main(*, session: Session, before: LabBuild) -> set[tuple[str, str]]:
    """(test, family) pairs whose last result on a main build before this one failed."""
    latest: dict[tuple[str, str], tuple[int, bool]] = {}
    stmt = (
        select(
            LabExecution.test_name, LabExecution.family, LabExecution.build_id, LabExecution.status
        )
        .join(LabBuild, LabBuild.id == LabExecution.build_id)
        .where(
            LabBuild.branch == "main",
            LabBuild.id < before.id,
            LabExecution.status.in_(("passed", *FAILED)),
        )
    )
    for test, family, build_id, status in session.execute(stmt):
        key = (test, family)
        if key not in latest or build_id >= latest[key][0]:
            failed = status in FAILED
            if key in latest and build_id == latest[key][0]:
                failed = failed and latest[key][1]  # a pass on retry wins
            latest[key] = (build_id, failed)
    return {key for key, (_, failed) in latest.items() if failed}


def flaky_tests(*, session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """Tests that passed and failed on the same build, most often first."""
    outcomes: dict[tuple[str, int], set[str]] = defaultdict(set)
    for test, build, status in session.execute(
        select(LabExecution.test_name, LabExecution.build_id, LabExecution.status)
    ):
        outcomes[(test, build)].add(status)
    builds: dict[str, int] = defaultdict(int)
    flaky: dict[str, int] = defaultdict(int)
    for (test, _), seen in outcomes.items():
        builds[test] += 1
        if "passed" in seen and seen & {"failed", "error", "timeout"}:
            flaky[test] += 1
    rows: list[dict[str, Any]] = [
        {"test": t, "flaky_builds": n, "builds": builds[t], "rate": round(n / builds[t], 3)}
        for t, n in flaky.items()
    ]
    rows.sort(key=lambda r: (-int(r["flaky_builds"]), str(r["test"])))
    return rows[:limit]


# --- history and the model --------------------------------------------------------------------


def history_records(*, session: Session) -> list[dict[str, Any]]:
    """Every finished (test, family) of every build as a `prediction` history record."""
    builds = {b.id: b for b in session.scalars(select(LabBuild))}
    tests = {t.id: t for t in session.scalars(select(LabTest))}
    grouped: dict[tuple[int, int, str], list[str]] = defaultdict(list)
    for build_id, test_id, family, status, _attempt in session.execute(
        select(
            LabExecution.build_id,
            LabExecution.test_id,
            LabExecution.family,
            LabExecution.status,
            LabExecution.attempt,
        )
        .where(LabExecution.status.in_(("passed", *FAILED)))
        .order_by(LabExecution.attempt)
    ):
        grouped[(build_id, test_id, family)].append(status)
    records = []
    for (build_id, test_id, family), statuses in grouped.items():
        build, test = builds.get(build_id), tests.get(test_id)
        if build is None or test is None:
            continue
        records.append(
            {
                "build": build_id,
                "components": list(build.components),
                "test": test.name,
                "test_components": list(test.components),
                "family": family,
                "failed": statuses[-1] in FAILED,
                "flaky": "passed" in statuses and any(s in FAILED for s in statuses),
            }
        )
    return records


MODEL = "test-failure"
TRAIN_HINT = "train and promote one: `popcorn ml run test-failure`"


def lab_history(*, session: Session) -> prediction.History:
    """Running counts over every finished result, from which a new build's rows are read."""
    history = prediction.History()
    for rec in sorted(history_records(session=session), key=lambda r: r["build"]):
        history.add(rec)
    return history


def promoted_model(*, session: Session) -> PromotedModel | None:
    """ML's promoted failure model (the `test-failure` flow's), or None."""
    if not domains.installed("ml"):
        return None
    from popcorn.ml import api as ml_api

    return ml_api.promoted(session=session, name=MODEL)


def choose(
    *,
    session: Session,
    build: LabBuild,
    planned: list[tuple[LabTest, str, list[int]]],
    recall: float,
) -> tuple[set[tuple[int, str]], dict[tuple[int, str], float], dict[str, Any]] | None:
    """The (test, family) pairs to run for a build: those ML's promoted failure model scores
    at or above the threshold that kept `recall` of failures on held-out builds. None when
    no model is promoted (the caller runs everything and says so)."""
    model = promoted_model(session=session)
    if model is None:
        return None
    try:
        target, threshold = prediction.threshold_at(
            dict(model.evaluation.get("thresholds") or {}), recall
        )
    except ValueError:
        raise Conflict(
            f"the promoted {MODEL} model v{model.version} carries no calibrated thresholds; "
            + TRAIN_HINT
        ) from None
    from popcorn.ml import api as ml_api

    history = lab_history(session=session)
    rows = [history.features(t.name, t.components, fam, build.components) for t, fam, _ in planned]
    scores = ml_api.predict(session=session, name=MODEL, rows=rows).predictions if rows else []
    probabilities = {(t.id, fam): float(s) for (t, fam, _), s in zip(planned, scores, strict=True)}
    chosen = {key for key, s in probabilities.items() if s >= threshold}
    info = {
        "recall_target": recall,
        "calibrated_target": target,
        "threshold": threshold,
        "selected": len(chosen),
        "fraction": round(len(chosen) / max(1, len(planned)), 4),
        "model": f"{MODEL} v{model.version}",
        "model_run": model.run_id,
        "held_out": {
            k: model.evaluation[k]
            for k in ("metric", "model", "baseline", "recall")
            if k in model.evaluation
        },
    }
    return chosen, probabilities, info


def predictions(
    *, session: Session, build_id: int, query: str, suite: str, devices: str, recall: float
) -> dict[str, Any]:
    """What selection would run for a build, each pair with its failure probability."""
    build = scheduling.get_build(session=session, ref=build_id)
    tests = service.select_tests(session=session, query=query, suite=suite)
    planned = scheduling.plan(
        session=session,
        tests=tests,
        devices=scheduling.run_devices(session=session, devices=devices),
        strict=False,
    )
    found = choose(session=session, build=build, planned=planned, recall=recall)
    if found is None:
        raise NotFound(f"no promoted {MODEL} model to predict with; {TRAIN_HINT}")
    chosen, probabilities, info = found
    items: list[dict[str, Any]] = [
        {
            "test": t.name,
            "family": fam,
            "probability": round(probabilities[(t.id, fam)], 5),
            "selected": (t.id, fam) in chosen,
        }
        for t, fam, _ in planned
    ]
    items.sort(key=lambda r: -float(r["probability"]))
    return {"items": items, **info}


# --- JUnit ------------------------------------------------------------------------------------


def junit_report(*, session: Session, run: int | str, base_url: str = "") -> str:
    found = scheduling.get_run(session=session, ref=run)
    executions = list(session.scalars(select(LabExecution).where(LabExecution.run_id == found.id)))
    cases = []
    for (test, family), attempts in sorted(_final(executions).items()):
        last = attempts[-1]
        cases.append(
            {
                "name": test,
                "classname": f"{family}.{last.device_name or 'unplaced'}",
                "time_s": sum(e.duration_s for e in attempts),
                "status": last.status,
                "message": last.message or (attempts[0].message if last.flaky else ""),
                "flaky": last.flaky,
            }
        )
    build = session.get(LabBuild, found.build_id)
    assert build is not None
    props = {
        "build": str(build.id),
        "app_version": build.app_version,
        "change": build.change,
        "run": str(found.id),
        "report": f"{base_url.rstrip('/')}/ui/devicelab/runs/{found.id}",
    }
    return junit.render(f"devicelab-run-{found.id}", cases, properties=props)


def import_junit(
    *, session: Session, build_id: int, data: bytes, family: str, device: str = ""
) -> LabRun:
    """Record a report from any runner as a finished run of a build (unknown tests are
    added to the catalog), so its results count in history, flakiness and the model. A
    case marked flaky (Surefire's flakyFailure) is a failed attempt, then a passed one."""
    cases = junit.parse(data)
    if not cases:
        raise InvalidInput("junit: the report has no test cases")
    build = scheduling.get_build(session=session, ref=build_id)

    def name_of(case: junit.Case) -> str:
        return (
            case.name if "." in case.name or not case.classname else f"{case.classname}.{case.name}"
        )

    names = sorted({name_of(c) for c in cases})
    known = {t.name for t in session.scalars(select(LabTest).where(LabTest.name.in_(names)))}
    missing = [TestCreate(name=n[:300], suite="imported") for n in names if n not in known]
    if missing:
        service.upsert_tests(session=session, specs=missing)
    tests = {t.name: t for t in session.scalars(select(LabTest).where(LabTest.name.in_(names)))}
    run = LabRun(
        build_id=build.id,
        suite="imported",
        status="running",
        retries=0,
        selection={"mode": "imported"},
    )
    session.add(run)
    session.flush()
    now = utcnow()
    attempts: dict[str, int] = defaultdict(int)
    for case in cases:
        name = name_of(case)
        status = case.status if case.status != "skipped" else "cancelled"
        outcomes = [(status, case.message)]
        if case.flaky:
            outcomes.insert(0, ("failed", "failed before passing on retry"))
        for state, message in outcomes:
            attempts[name] += 1
            session.add(
                LabExecution(
                    run_id=run.id,
                    build_id=build.id,
                    test_id=tests[name].id,
                    test_name=name,
                    family=case.properties.get("family", family),
                    device_name=case.properties.get("device", device),
                    status=state,
                    attempt=attempts[name],
                    reason="imported",
                    message=message,
                    failure_kind=case.kind,
                    duration_s=case.time_s,
                    queued_at=now,
                    finished_at=now,
                )
            )
    session.flush()
    record_change(
        session, "import", "devicelab_run", run.id, after={"build": build.id, "cases": len(cases)}
    )
    emit(
        session,
        "devicelab.run.imported",
        "devicelab_run",
        run.id,
        {"build": build.id, "cases": len(cases)},
    )
    scheduling.finish_if_done(session=session, run=run)
    return run
