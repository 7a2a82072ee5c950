"""Machines register themselves; a shared database with a local-directory store is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.errors import Conflict
from popcorn.machines import Machine, check_shared_storage, register
from popcorn.storage import LocalStore, S3Store

EXTERNAL = "postgresql://popcorn@db.example/popcorn"


def test_processes_register_their_host_once_with_every_role() -> None:
    register("worker", "edge-1")
    register("scheduler", "edge-1")
    register("serve", "edge-2")
    with session_scope(readonly=True) as session:
        rows = {m.hostname: m.roles for m in session.scalars(select(Machine))}
    assert rows == {"edge-1": ["scheduler", "worker"], "edge-2": ["serve"]}


def test_a_local_store_is_refused_once_a_second_machine_shares_the_database(
    tmp_path: Path,
) -> None:
    local = LocalStore(tmp_path)
    register("worker", "edge-1")
    check_shared_storage(EXTERNAL, local)  # one machine: its own directory is fine
    register("worker", "edge-2")
    with pytest.raises(Conflict) as refused:
        check_shared_storage(EXTERNAL, local)
    assert "2 machines share this database" in refused.value.message
    assert "set storage_url to s3://" in refused.value.message
    assert "\n" not in refused.value.message
    check_shared_storage("sqlite:////tmp/x.db", local)  # embedded: one machine by design
    s3 = S3Store("s3://bucket/popcorn", endpoint_url="http://127.0.0.1:1", profile=None)
    check_shared_storage(EXTERNAL, s3)  # shared storage: fine


def test_the_worker_command_refuses_to_start(installation: dict[str, str]) -> None:
    """On an external database the refusal is one line and exit status 1; on the embedded
    database the same worker starts (and, with --burst, ends)."""
    register("worker", "some-other-machine")
    env = {**os.environ, **installation}
    done = subprocess.run(
        [sys.executable, "-m", "popcorn", "worker", "--burst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if env.get("POPCORN_DATABASE_URL", "").startswith("postgresql"):
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "2 machines share this database" in lines[0], done.stderr
    else:
        assert done.returncode == 0, done.stderr
