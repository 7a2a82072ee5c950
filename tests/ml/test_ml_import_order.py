"""A process that imported Metaflow before Popcorn pointed it at the installation's
datastore (a worker whose other code imported it first) still promotes its runs' models:
Popcorn tells Metaflow's client where the runs are instead of relying on import order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json

import metaflow  # noqa: F401  first, with no METAFLOW_* setting in the environment

from popcorn.db import session_scope
from popcorn.ml import schemas, service, tracking

with session_scope() as session:
    spec = schemas.RunCreate(flow="tiny-model", parameters={})
    run_id = service.start_run(session=session, spec=spec, queue_job=False).id
outcome = service.execute_run(run_id)
detail = tracking.describe_run(outcome["pathspec"])
print(json.dumps({"run": run_id, "artifacts": [a["name"] for a in detail["artifacts"]]}))
"""


def test_metaflow_imported_first_still_promotes(tmp_path: Path) -> None:
    from popcorn.db import session_scope
    from popcorn.ml import registry, service

    env = {k: v for k, v in os.environ.items() if not k.startswith("METAFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,  # Metaflow's own default: a .metaflow folder found from here
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"model", "evaluation", "input_schema"} <= set(found["artifacts"])
    with session_scope(readonly=True) as session:
        run = service.get_run(session=session, ref=found["run"])
        assert run.status == "succeeded" and not run.error, run.error
        assert run.promoted_version == 1
        version = registry.promoted_version(session=session, name="tiny-model")
        assert version.run_id == run.id
        assert registry.load_promoted(session=session, name="tiny-model") == {"mean": 3.0}
    assert not (tmp_path / ".metaflow").exists()
