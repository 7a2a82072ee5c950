"""`client.inventory`: the inventory API from Python, for scripts and other installations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from popcorn.client import Section, section


@section("inventory")
class Inventory(Section):
    prefix = "inventory"

    def devices(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every device matching the filters (site=, region=, status__n=, q=…), page by page."""
        return self.client.paginate(self.path("/devices"), **filters)

    def device(self, ref: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/devices/{ref}"))
        return result

    def set_status(self, ref: int | str, status: str, reason: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path(f"/devices/{ref}/status"), {"status": status, "reason": reason}
        )
        return result

    def fail_component(self, component_id: int, reason: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path(f"/components/{component_id}/fail"), {"reason": reason}
        )
        return result

    def trace(self, device: int | str, interface: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(
            self.path(f"/devices/{device}/trace"), interface=interface
        )
        return result

    def import_file(
        self, path: Path, *, type: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Upload one CSV, JSON or YAML file; all or nothing, like `popcorn inventory import`."""
        params = {"dry_run": "1" if dry_run else "0", "filename": path.name}
        if type:
            params["type"] = type
        result: dict[str, Any] = self.client.request(
            "POST", self.path("/import"), params=params, content=path.read_bytes()
        )
        return result
