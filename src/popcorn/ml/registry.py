"""The model registry: promote a run's model, roll back, and serve the promoted one.

Promotion copies the run's pickled `model` artifact into the object store
(`ml/models/<name>/v<version>-<digest>.pkl`, immutable) and records its SHA-256. Serving loads a
version only from that store and only when its bytes have the digest Popcorn recorded
when it stored them: Popcorn unpickles nothing it did not store itself. A loaded model is
kept once per worker process, keyed by (name, version), so a promotion or rollback is
picked up by the next request and costs one load.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.ml.models import MlModel, MlModelVersion, MlRun
from popcorn.outbox import emit

TYPES: dict[str, tuple[type, ...]] = {
    "float": (float, int),
    "int": (int,),
    "str": (str,),
    "bool": (bool,),
}
_loaded: dict[tuple[str, int, str], Any] = {}
_lock = threading.Lock()


def list_models(*, session: Session) -> list[MlModel]:
    return list(session.scalars(select(MlModel).order_by(MlModel.name)))


def get_model(*, session: Session, name: str) -> MlModel:
    found = session.scalar(select(MlModel).where(MlModel.name == name))
    if found is None:
        raise NotFound(f"no model named {name!r}", details={"model": name})
    return found


def model_read(found: MlModel) -> dict[str, Any]:
    return {
        "name": found.name,
        "flow": found.flow,
        "promoted_version": found.promoted_version,
        "history": list(found.history),
        "updated_at": found.updated_at,
        "versions": [
            {
                **{
                    k: getattr(v, k)
                    for k in (
                        "version",
                        "run_id",
                        "pathspec",
                        "object_key",
                        "sha256",
                        "size",
                        "model_class",
                        "input_schema",
                        "evaluation",
                        "created_by",
                        "created_at",
                    )
                },
                "promoted": v.version == found.promoted_version,
            }
            for v in found.versions
        ],
    }


def _version(found: MlModel, number: int) -> MlModelVersion:
    for item in found.versions:
        if item.version == number:
            return item
    raise NotFound(f"model {found.name} has no version {number}", details={"version": number})


def beats(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether an evaluation is better than another's model score (same metric), or than
    its own baseline when there is nothing to compare with."""
    try:
        higher = bool(new.get("higher_is_better", True))
        score = float(new["model"])
        other = float(old["model"]) if old and old.get("metric") == new.get("metric") else None
        if other is None:
            other = float(new["baseline"])
    except (KeyError, TypeError, ValueError):
        return False
    return score > other if higher else score < other


def _check_evaluation(evaluation: dict[str, Any]) -> None:
    for key in ("metric", "model", "baseline"):
        if key not in evaluation:
            raise InvalidInput(
                f"the run's evaluation has no {key!r}", details={"field": f"evaluation.{key}"}
            )


def promote_run(*, session: Session, run: MlRun, reason: str = "manual") -> MlModelVersion:
    """Store a succeeded run's model as a new version and promote it; audited, an event."""
    from popcorn.ml import tracking
    from popcorn.ml.service import pathspec
    from popcorn.storage import get_store

    if run.status != "succeeded" or not pathspec(run):
        raise Conflict(f"run {run.id} is {run.status}; only a succeeded run has a model")
    found = tracking.servable(pathspec(run))
    if found is None:
        raise Conflict(
            f"run {run.id} ({run.flow}) left no `model` artifact", details={"run": run.id}
        )
    _check_evaluation(found["evaluation"])
    model = session.scalar(select(MlModel).where(MlModel.name == run.flow))
    if model is None:
        model = MlModel(name=run.flow, flow=run.flow, history=[], created_at=utcnow())
        session.add(model)
        session.flush()
    existing = session.scalar(
        select(MlModelVersion).where(
            MlModelVersion.model_id == model.id, MlModelVersion.run_id == run.id
        )
    )
    if existing is not None:
        version = existing
    else:
        number = (
            session.scalar(
                select(func.max(MlModelVersion.version)).where(MlModelVersion.model_id == model.id)
            )
            or 0
        ) + 1
        data = pickle.dumps(found["model"], protocol=pickle.HIGHEST_PROTOCOL)
        key = f"ml/models/{model.name}/v{number}-{hashlib.sha256(data).hexdigest()[:16]}.pkl"
        stored = get_store().put(key, data, immutable=True)
        version = MlModelVersion(
            model_id=model.id,
            version=number,
            run_id=run.id,
            pathspec=pathspec(run),
            object_key=key,
            sha256=stored.sha256 or hashlib.sha256(data).hexdigest(),
            size=stored.size,
            model_class=f"{type(found['model']).__module__}.{type(found['model']).__qualname__}",
            input_schema={str(k): str(v) for k, v in found["input_schema"].items()},
            evaluation=found["evaluation"],
            created_by=current_actor().name,
            created_at=utcnow(),
        )
        session.add(version)
        session.flush()
    before = {"promoted_version": model.promoted_version}
    model.promoted_version = version.version
    model.history = [*model.history, version.version]
    model.updated_at = utcnow()
    run.promoted_version = version.version
    after = {"promoted_version": version.version, "run": run.id, "reason": reason}
    record_change(session, "promote", "ml_model", model.id, before=before, after=after)
    emit(
        session,
        "ml.model.promoted",
        "ml_model",
        model.id,
        {
            "model": model.name,
            "version": version.version,
            "run": run.id,
            "reason": reason,
            "evaluation": version.evaluation,
        },
    )
    session.flush()
    session.expire(model, ["versions"])
    return version


def auto_promote(*, session: Session, run: MlRun) -> MlModelVersion | None:
    """Promote a run's model when its evaluation beats the promoted one (or its baseline)."""
    from popcorn.ml import tracking
    from popcorn.ml.service import pathspec

    found = tracking.servable(pathspec(run))
    if found is None or not found["evaluation"]:
        return None
    model = session.scalar(select(MlModel).where(MlModel.name == run.flow))
    current = None
    if model is not None and model.promoted_version is not None:
        current = _version(model, model.promoted_version).evaluation
    if not beats(found["evaluation"], current):
        return None
    return promote_run(session=session, run=run, reason="automatic: evaluation beat the promoted")


def rollback(*, session: Session, name: str, to: int | None = None) -> MlModel:
    """Serve the version promoted before the current one (or a given version); audited."""
    model = get_model(session=session, name=name)
    if to is None:
        if len(model.history) < 2:
            raise Conflict(f"model {name} has no earlier promoted version to roll back to")
        target = model.history[-2]
        history = model.history[:-1]
    else:
        _version(model, to)
        target = to
        history = [*model.history, to]
    before = {"promoted_version": model.promoted_version}
    model.promoted_version = target
    model.history = history
    model.updated_at = utcnow()
    record_change(
        session, "rollback", "ml_model", model.id, before=before, after={"promoted_version": target}
    )
    emit(
        session,
        "ml.model.rolled_back",
        "ml_model",
        model.id,
        {"model": name, "from": before["promoted_version"], "to": target},
    )
    return model


def check_rows(schema: dict[str, str], rows: list[dict[str, Any]]) -> None:
    """422 naming the first field that is missing, unknown or of the wrong type."""
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(
                f"rows[{index}] is not an object", details={"field": f"rows[{index}]"}
            )
        for field, kind in schema.items():
            where = f"rows[{index}].{field}"
            if field not in row:
                raise InvalidInput(
                    f"{where} is missing", details={"field": where, "expected": kind}
                )
            value = row[field]
            allowed = TYPES.get(kind, (object,))
            if (isinstance(value, bool) and kind != "bool") or not isinstance(value, allowed):
                raise InvalidInput(
                    f"{where} must be {kind}", details={"field": where, "expected": kind}
                )
        for field in row:
            if field not in schema:
                where = f"rows[{index}].{field}"
                raise InvalidInput(
                    f"{where} is not an input of this model",
                    details={"field": where, "inputs": sorted(schema)},
                )


def _load(name: str, version: MlModelVersion) -> Any:
    from popcorn.storage import get_store

    key = (name, version.version, version.sha256)
    with _lock:
        if key in _loaded:
            return _loaded[key]
    data = get_store().get(version.object_key)
    if hashlib.sha256(data).hexdigest() != version.sha256:
        raise Conflict(
            f"stored model {name} v{version.version} does not match the digest recorded "
            "when Popcorn stored it; refusing to load it",
            details={"object_key": version.object_key},
        )
    loaded = pickle.loads(data)
    with _lock:
        for old in [k for k in _loaded if k[0] == name]:
            del _loaded[old]
        _loaded[key] = loaded
    return loaded


def promoted_version(*, session: Session, name: str) -> MlModelVersion:
    model = session.scalar(select(MlModel).where(MlModel.name == name))
    if model is None or model.promoted_version is None:
        raise NotFound(f"no promoted model named {name!r}", details={"model": name})
    return _version(model, model.promoted_version)


def load_promoted(*, session: Session, name: str) -> Any:
    """The promoted model object itself (for facades that read more than `predict`)."""
    return _load(name, promoted_version(session=session, name=name))


def predict(*, session: Session, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Predictions of the promoted version, with that version's number."""
    version = promoted_version(session=session, name=name)
    check_rows(version.input_schema, rows)
    model = _load(name, version)
    return {"model": name, "version": version.version, "predictions": list(model.predict(rows))}


def loaded_versions() -> list[tuple[str, int]]:
    """(model, version) pairs this process has loaded (one per model at a time)."""
    with _lock:
        return sorted((name, version) for name, version, _ in _loaded)
