"""Fixtures for the remediation tests: the test pack installed in POPCORN_HOME/packs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def test_packs(installation: dict[str, str]) -> Path:
    """Installs tests/remediation/packs_src as a user would (a file in the packs directory)."""
    from popcorn.remediation import packs

    directory = Path(installation["POPCORN_HOME"]) / "packs"
    directory.mkdir(parents=True, exist_ok=True)
    for source in (HERE / "packs_src").glob("*.py"):
        shutil.copy(source, directory / source.name)
    packs.reload()
    return directory
