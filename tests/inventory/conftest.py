"""Fixtures for the inventory tests."""

from __future__ import annotations

from typing import Any

import pytest
from inventory_world import WORLD  # type: ignore[import-not-found]


@pytest.fixture
def world(api: Any) -> dict[str, Any]:
    """A small Open Connect world (see inventory_world.py), imported through the API."""
    response = api.post(
        "/api/v1/inventory/import?format=yaml&filename=world.yaml",
        data=WORLD,
        content_type="application/yaml",
        role="operator",
    )
    assert response.status_code == 200, response.json
    result: dict[str, Any] = response.json
    return result
