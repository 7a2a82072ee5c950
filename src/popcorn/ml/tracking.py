"""Reading what a run computed through Metaflow's client API (`Run`, `namespace(None)`).

Steps, tasks, artifacts, cards and failures are Metaflow's; Popcorn never copies them
into its own tables, it reads them here for the API, the console and the registry.
"""

from __future__ import annotations

from typing import Any

from popcorn.errors import NotFound
from popcorn.ml.runner import use_metaflow

PREVIEW_CHARS = 200
TRACEBACK_CHARS = 8000


def _run(pathspec: str) -> Any:
    use_metaflow()
    from metaflow import Run, namespace
    from metaflow.exception import MetaflowNotFound

    namespace(None)
    try:
        return Run(pathspec)
    except MetaflowNotFound:
        raise NotFound(f"no Metaflow run {pathspec}", details={"pathspec": pathspec}) from None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def describe_run(pathspec: str, *, artifacts: bool = True) -> dict[str, Any]:
    """A run's steps (tasks, timings, outcome), its end artifacts and which steps have cards."""
    run = _run(pathspec)
    steps = []
    failed: dict[str, Any] | None = None
    for step in sorted(run, key=lambda s: s.created_at or 0):
        tasks = []
        for task in step:
            entry = {
                "pathspec": task.pathspec,
                "finished": bool(task.finished),
                "successful": bool(task.successful),
                "started_at": _iso(task.created_at),
                "finished_at": _iso(task.finished_at),
            }
            tasks.append(entry)
            if not task.successful and failed is None and (task.finished or not run.finished):
                failed = {"step": step.id, "task": task.pathspec, "traceback": _traceback(task)}
        steps.append(
            {
                "name": step.id,
                "tasks": tasks,
                "successful": all(t["successful"] for t in tasks),
                "started_at": _iso(step.created_at),
                "finished_at": _iso(step.finished_at),
                "cards": _card_count(step),
            }
        )
    found: dict[str, Any] = {
        "pathspec": run.pathspec,
        "finished": bool(run.finished),
        "successful": bool(run.successful),
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
        "steps": steps,
        "failure": failed,
        "artifacts": [],
    }
    if artifacts and run.successful:
        end = run["end"].task
        found["artifacts"] = [
            {"name": a.id, "type": type(a.data).__name__, "preview": _preview(a.data)}
            for a in end
            if not a.id.startswith("_") and a.id != "name"
        ]
    return found


def _traceback(task: Any) -> str:
    try:
        text = str(task.stderr or "")
    except Exception:
        text = ""
    if "Traceback" in text:
        text = text[text.rindex("Traceback") :]
    return text[-TRACEBACK_CHARS:]


def _card_count(step: Any) -> int:
    from metaflow.cards import get_cards

    total = 0
    for task in step:
        try:
            total += len(get_cards(task))
        except Exception:
            continue
    return total


def failure(pathspec: str) -> dict[str, Any] | None:
    """The failing step and its traceback, when a run has one."""
    try:
        return describe_run(pathspec, artifacts=False)["failure"]
    except NotFound:
        return None


def card_html(pathspec: str, step: str) -> str:
    """The first card of a step's first task, rendered as static HTML (see `cards`)."""
    from metaflow.cards import get_cards

    run = _run(pathspec)
    try:
        task = run[step].task
    except KeyError:
        raise NotFound(f"no step {step!r} in {pathspec}", details={"step": step}) from None
    try:
        cards: Any = get_cards(task)
    except Exception:
        cards = None
    if not cards:
        raise NotFound(f"step {step!r} of {pathspec} has no card", details={"step": step})
    from popcorn.ml.cards import render_static

    return render_static(str(cards[0].get()), title=f"{pathspec} {step}")


def servable(pathspec: str) -> dict[str, Any] | None:
    """The `model`, `input_schema` and `evaluation` a run left, or None without a model."""
    run = _run(pathspec)
    if not run.successful:
        return None
    data = run["end"].task.data
    if "model" not in data:
        return None
    return {
        "model": data.model,
        "input_schema": dict(data.input_schema) if "input_schema" in data else {},
        "evaluation": dict(data.evaluation) if "evaluation" in data else {},
    }
