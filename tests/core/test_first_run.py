"""A command run on a POPCORN_HOME that was never migrated: no "no such table" traceback.

The embedded SQLite database migrates itself on first use; an external database
is the operator's, so the command says in one line to run `popcorn db upgrade`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _popcorn(
    home: Path, *args: str, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPCORN_")}
    env.update({"POPCORN_HOME": str(home), "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    if database_url:
        env["POPCORN_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "popcorn", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_embedded_database_migrates_itself_on_first_command(tmp_path: Path) -> None:
    first = _popcorn(tmp_path, "inventory", "devices", "--json")
    assert first.returncode == 0, first.stderr
    assert "first run" in first.stderr
    assert "Traceback" not in first.stderr
    assert '"items": []' in first.stdout
    again = _popcorn(tmp_path, "inventory", "devices", "--json")
    assert again.returncode == 0
    assert "first run" not in again.stderr


def test_external_database_without_tables_asks_for_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'external.db'}"
    proc = _popcorn(tmp_path, "inventory", "devices", database_url=url)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "popcorn db upgrade" in lines[0]
    upgraded = _popcorn(tmp_path, "db", "upgrade", database_url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert _popcorn(tmp_path, "inventory", "devices", database_url=url).returncode == 0


def test_a_database_older_than_the_code_asks_for_db_upgrade(tmp_path: Path) -> None:
    """A new release run before `popcorn db upgrade`: one line, never a traceback."""
    import sqlite3

    assert _popcorn(tmp_path, "jobs", "list").returncode == 0  # migrates itself
    with sqlite3.connect(tmp_path / "popcorn.db") as conn:  # a column a later migration added
        conn.execute("ALTER TABLE inventory_devices DROP COLUMN primary_ip4")
    proc = _popcorn(tmp_path, "inventory", "devices", "--json")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "primary_ip4" in lines[0] and "popcorn db upgrade" in lines[0]
