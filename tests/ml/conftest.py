"""ML fixtures: the test flows' directory, and one small recommendations run shared by
the whole session (Metaflow's datastore outlives the per-test table cleaning; each test
re-records the run it needs from it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FLOWS = Path(__file__).parent / "flows"
SMALL = {
    "members": "1000",
    "titles": "200",
    "plays": "15000",
    "factors": "16",
    "iterations": "4",
}


@pytest.fixture(scope="session", autouse=True)
def ml_flows_dir(installation: dict[str, str]) -> Iterator[Path]:
    from popcorn.config import reset_settings

    os.environ["POPCORN_ML_FLOWS_DIR"] = str(FLOWS)
    reset_settings()
    yield FLOWS
    os.environ.pop("POPCORN_ML_FLOWS_DIR", None)
    reset_settings()


@pytest.fixture(scope="session")
def trained(ml_flows_dir: Path) -> dict[str, Any]:
    """One small recommendations run, run once for the session; what it left."""
    from ml_kit import start
    from sqlalchemy import delete

    from popcorn.audit import AuditRecord
    from popcorn.db import session_scope
    from popcorn.ml import service
    from popcorn.ml.models import MlModel, MlModelVersion, MlRun
    from popcorn.outbox import OutboxEvent

    run_id = start("recommendations", **SMALL)
    service.execute_run(run_id)
    with session_scope() as session:
        run = service.get_run(session=session, ref=run_id)
        found = {
            "metaflow_run_id": run.metaflow_run_id,
            "status": run.status,
            "promoted_version": run.promoted_version,
            "progress": dict(run.progress),
            "error": run.error,
        }
        # Leave the tables as the test that first asked for this found them.
        for model in (MlModelVersion, MlModel, MlRun):
            session.execute(delete(model))
        for model in (AuditRecord, OutboxEvent):
            session.execute(delete(model).where(model.object_type.like("ml_%")))
    return found


@pytest.fixture
def recorded(trained: dict[str, Any]) -> int:
    """The shared Metaflow run recorded as a succeeded Popcorn run (tables are per test)."""
    from popcorn.db import session_scope, utcnow
    from popcorn.ml.models import MlRun

    with session_scope() as session:
        run = MlRun(
            flow="recommendations",
            status="succeeded",
            metaflow_flow="RecommendationsFlow",
            metaflow_run_id=trained["metaflow_run_id"],
            created_at=utcnow(),
            finished_at=utcnow(),
        )
        session.add(run)
        session.flush()
        return run.id
