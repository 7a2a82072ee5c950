"""Fixtures for the console tests: signed-in clients per role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from console_kit import Console, install_pack


@pytest.fixture
def console(app: Any, tokens: dict[str, str]) -> Callable[[str], Console]:
    """`console("viewer")`: a fresh client signed in with that role's token."""

    def make(role: str = "operator") -> Console:
        return Console(app.test_client(), tokens[role])

    return make


@pytest.fixture(scope="session")
def console_pack(installation: dict[str, str]) -> None:
    """The console's test runbooks, installed in POPCORN_HOME/packs for this session."""
    install_pack(installation["POPCORN_HOME"])
