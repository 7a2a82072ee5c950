"""`client.inventory` against the app (over httpx's WSGI transport)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from popcorn.client import Client, PopcornAPIError


def test_client_lists_changes_traces_and_imports(
    world: Any, app: Any, tokens: dict[str, str], tmp_path: Path
) -> None:
    transport = httpx.WSGITransport(app=app)
    with Client("http://popcorn", tokens["operator"], transport=transport) as client:
        names = [d["name"] for d in client.inventory.devices(region="benelux", role="router")]
        assert names == ["rtr-ams1-01"]
        assert len(list(client.inventory.devices(limit=2))) == 5  # follows cursors
        moved = client.inventory.set_status("oca-bru-01", "maintenance", reason="fan")
        assert moved["status"] == "maintenance"
        with pytest.raises(PopcornAPIError) as caught:
            client.inventory.set_status("oca-bru-01", "planned")
        assert caught.value.status == 422 and "status" in caught.value.details["fields"]
        path = client.inventory.trace("oca-ams1-01", "eth0")
        assert path["destination"]["device"] == "rtr-ams1-01"
        csv = tmp_path / "sites.csv"
        csv.write_text("code,name\nlis1,Lisbon 1\n")
        dry = client.inventory.import_file(csv, dry_run=True)
        assert dry["counts"] == {"sites": {"create": 1, "update": 0, "unchanged": 0}}
        assert client.inventory.import_file(csv)["dry_run"] is False
        assert client.inventory.device("oca-bru-01")["status"] == "maintenance"
