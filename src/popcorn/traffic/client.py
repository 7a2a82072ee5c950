"""`client.traffic`: regions, groups, costs, plans and executions from Python over the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from popcorn.client import Section, section

DONE = {"succeeded", "aborted", "canceled", "rollback_failed"}


@section("traffic")
class Traffic(Section):
    prefix = "traffic"

    def regions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/regions"), **filters)

    def create_region(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/regions"), {"name": name, **fields})
        return result

    def update_region(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.patch(self.path(f"/regions/{name}"), fields)
        return result

    def groups(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/groups"), **filters)

    def create_group(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/groups"), {"name": name, **fields})
        return result

    def set_costs(self, costs: Any, *, replace: bool = True) -> dict[str, Any]:
        """Costs as `{group: {region: cost}}`, a matrix object or a list of records."""
        result: dict[str, Any] = self.client.request(
            "PUT", self.path("/costs"), params={"replace": str(replace).lower()}, json=costs
        )
        return result

    def plan(self, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/plans"), spec)
        return result

    def evacuate(self, regions: list[str], **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path("/evacuations"), {"evacuate": regions, **spec}
        )
        return result

    def plan_return(self, plan_id: int, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path(f"/plans/{plan_id}/return"), spec)
        return result

    def shift(self, site: str, reason: str = "", device: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path("/shifts"), {"site": site, "reason": reason, "device": device}
        )
        return result

    def plan_detail(self, plan_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/plans/{plan_id}"))
        return result

    def plan_png(self, plan_id: int) -> bytes:
        data: bytes = self.client.get(self.path(f"/plans/{plan_id}/plot.png"))
        return data

    def execute(self, plan_id: int, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path(f"/plans/{plan_id}/execute"), options)
        return result

    def execution(self, execution_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/executions/{execution_id}"))
        return result

    def wait(self, execution_id: int, *, timeout: float = 900.0) -> dict[str, Any]:
        """Poll until the execution ends (succeeded, aborted, canceled or rollback_failed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.execution(execution_id)
            if found["status"] in DONE:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} still {found['status']}")
            time.sleep(0.5)

    def cancel(self, execution_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path(f"/executions/{execution_id}/cancel"))
        return result

    def forecast(self, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/forecasts"), spec)
        return result

    def placement(self, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/placements"), spec)
        return result
