"""`client.certificates`: the certificates API from Python."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from popcorn.client import Section, section


@section("certificates")
class CertificatesSection(Section):
    prefix = "certificates"

    def authorities(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client.get(self.path("/authorities"))["items"]
        return items

    def create_authority(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path("/authorities"), {"name": name, **fields}
        )
        return result

    def ca_bundle(self, authority_id: int) -> str:
        data: bytes = self.client.get(self.path(f"/authorities/{authority_id}/bundle"))
        return data.decode()

    def issue(self, authority: int | str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path(), {"authority": authority, **fields})
        return result

    def get(self, certificate_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/{certificate_id}"))
        return result

    def search(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching certificate (filters as in the API: status, owner, domain, q…)."""
        return self.client.paginate(self.path(), **filters)

    def revoke(self, certificate_id: int, reason: str = "unspecified") -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            self.path(f"/{certificate_id}/revoke"), {"reason": reason}
        )
        return result

    def rotate(self, certificate_id: int, validity_days: int | None = None) -> dict[str, Any]:
        body = {"validity_days": validity_days} if validity_days else {}
        result: dict[str, Any] = self.client.post(self.path(f"/{certificate_id}/rotate"), body)
        return result

    def export(
        self, certificate_id: int, format: str = "pem", password: str | None = None
    ) -> dict[str, Any]:
        """Needs an admin token; every export is in the change log."""
        body: dict[str, Any] = {"format": format}
        if password is not None:
            body["password"] = password
        result: dict[str, Any] = self.client.post(self.path(f"/{certificate_id}/export"), body)
        return result

    def discover(self, endpoints: list[str], timeout: float = 5.0) -> dict[str, Any]:
        """Queues a sweep; wait with `client.wait_for_job(result["job_id"])`."""
        result: dict[str, Any] = self.client.post(
            self.path("/discover"), {"endpoints": endpoints, "timeout": timeout}
        )
        return result

    def scan(self, intervals: list[int] | None = None) -> dict[str, Any]:
        body = {"intervals": intervals} if intervals else {}
        result: dict[str, Any] = self.client.post(self.path("/scan"), body)
        return result
