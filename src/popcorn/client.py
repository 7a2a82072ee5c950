"""A small typed client for a Popcorn over the network.

Domains extend it with their own calls (`client.inventory.devices(...)`) by
subclassing `Section`; every call raises `PopcornAPIError` carrying the error
envelope, and `paginate()` walks cursor-paged lists.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx


class PopcornAPIError(Exception):
    """Any non-2xx answer (or a transport failure, with status 0), with its envelope."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class Section:
    """A group of calls for one domain; subclasses add typed methods."""

    prefix = ""

    def __init__(self, client: Client):
        self.client = client

    def path(self, suffix: str = "") -> str:
        return f"/api/v1/{self.prefix}{suffix}"


SECTIONS: dict[str, type[Section]] = {}


def section(name: str) -> Any:
    """Class decorator: `@section("inventory")` makes `client.inventory` an instance of it."""

    def decorate(cls: type[Section]) -> type[Section]:
        SECTIONS[name] = cls
        return cls

    return decorate


class Client:
    def __getattr__(self, name: str) -> Section:
        if name not in SECTIONS:
            import importlib

            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(f"popcorn.{name}.client")
        if name in SECTIONS:
            sec = SECTIONS[name](self)
            setattr(self, name, sec)
            return sec
        raise AttributeError(name)

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "popcorn-client"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PopcornAPIError(0, "transport_error", str(exc), {}) from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise PopcornAPIError(
                    response.status_code,
                    error.get("code", "error"),
                    error.get("message", ""),
                    error.get("details") or {},
                )
            except (ValueError, KeyError, TypeError):
                raise PopcornAPIError(
                    response.status_code, "http_error", response.text[:200], {}
                ) from None
        if response.status_code == 204 or not response.content:
            return None
        ctype = response.headers.get("content-type", "")
        return response.json() if "json" in ctype else response.content

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def patch(self, path: str, json: Any = None) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def paginate(self, path: str, *, limit: int = 1000, **filters: Any) -> Iterator[Any]:
        """Every item of a list endpoint, following `next` cursors."""
        cursor: str | None = None
        while True:
            page = self.get(path, limit=limit, cursor=cursor, **filters)
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return

    # --- core calls ---------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/v1/whoami")
        return result

    def submit_job(self, task: str, **arguments: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.post("/api/v1/jobs", {"task": task, "arguments": arguments})
        return result

    def job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/api/v1/jobs/{job_id}")
        return result

    def wait_for_job(self, job_id: int, *, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in {"finished", "failed", "canceled"}:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(0.2)

    def jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.paginate("/api/v1/jobs", **filters)

    def audit(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.paginate("/api/v1/audit", **filters)
