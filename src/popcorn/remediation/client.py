"""`client.remediation`: runbooks, executions and approvals from Python over the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from popcorn.client import Section, section

DONE = {"succeeded", "failed", "canceled", "rejected", "dropped"}


@section("remediation")
class Remediation(Section):
    prefix = "remediation"

    def packs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client.get(self.path("/packs"))["items"]
        return items

    def runbook(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/runbooks/{name}"))
        return result

    def start(
        self,
        runbook: str,
        inputs: dict[str, Any] | None = None,
        *,
        target: dict[str, Any] | None = None,
        trigger: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        body = {"runbook": runbook, "inputs": inputs or {}, "dry_run": dry_run}
        if target is not None:
            body["target"] = target
        if trigger is not None:
            body["trigger"] = trigger
        result: dict[str, Any] = self.client.post(self.path("/executions"), body)
        return result

    def execution(self, execution_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/executions/{execution_id}"))
        return result

    def executions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/executions"), **filters)

    def wait(
        self, execution_id: int, *, timeout: float = 300.0, until_approval: bool = True
    ) -> dict[str, Any]:
        """Poll until the execution ends (or waits for an approval, unless told otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.execution(execution_id)
            if found["status"] in DONE or (
                until_approval and found["status"] == "waiting_approval"
            ):
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} still {found['status']}")
            time.sleep(0.2)

    def cancel(self, execution_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path(f"/executions/{execution_id}/cancel"))
        return result

    def rerun(self, execution_id: int, from_step: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path(f"/executions/{execution_id}/rerun"), {"from_step": from_step}
        )
        return result

    def approvals(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/approvals"), **filters)

    def approve(
        self, approval_id: int, payload: dict[str, Any] | None = None, comment: str = ""
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path(f"/approvals/{approval_id}/approve"),
            {"payload": payload, "comment": comment},
        )
        return result

    def reject(self, approval_id: int, comment: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path(f"/approvals/{approval_id}/reject"), {"comment": comment}
        )
        return result

    def circuit(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path("/circuit"))
        return result

    def reset_circuit(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/circuit/reset"))
        return result

    def agents(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/agents"), **filters)
