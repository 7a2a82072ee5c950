"""`client.events`: send events and alerts, search them, load and test rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from popcorn.client import Section, section


@section("events")
class Events(Section):
    prefix = "events"

    def send(self, events: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
        """CloudEvents (one object or a batch); answers with ids and duplicates."""
        result: dict[str, Any] = self.client.post(self.path(), events)
        return result

    def alertmanager(self, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/alertmanager"), payload)
        return result

    def search(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every stored event matching the filters (`label="key:value"`, `q=`, `type=`…)."""
        return self.client.paginate(self.path(), **filters)

    def get(self, ref: str | int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/{ref}"))
        return result

    def load_rules(self, text: str, *, file: str = "<client>", prune: bool = False) -> Any:
        return self.client.post(self.path("/rules"), {"text": text, "file": file, "prune": prune})

    def rules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.get(self.path("/rules"))["items"]
        return result

    def test_rules(self, event: Any, rules: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"event": event, "rules": rules}
        result: list[dict[str, Any]] = self.client.post(self.path("/rules/test"), body)["results"]
        return result

    def incidents(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/incidents"), **filters)

    def dead_letters(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/dead-letters"), **filters)

    def replay(self, action_run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path(f"/dead-letters/{action_run_id}/replay")
        )
        return result
