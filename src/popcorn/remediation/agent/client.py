"""The client runbooks and the CLI use to call a Bolt agent over mutual TLS.

Every failure, whether the agent is unreachable, refuses the certificate,
answers with something that is not JSON, or returns an error envelope, surfaces
as one `AgentError`, so callers handle one exception type.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from popcorn.remediation.agent.errors import AgentError

# Time on top of an action's timeout for the agent to kill it and answer.
ANSWER_GRACE = 30.0


class RunResult(BaseModel):
    """The outcome of one action run; `status` is ok, failed, timeout, cancelled or error."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    action: str
    status: str
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class BoundedAnswer(BaseModel):
    """An action's raw answer read up to a byte limit (`oversized`: the limit was passed)."""

    model_config = ConfigDict(frozen=True)

    status_code: int
    body: bytes
    oversized: bool = False


class AgentClient:
    def __init__(
        self,
        base_url: str,
        cert: str | Path,
        key: str | Path,
        ca: str | Path,
        *,
        timeout: float = 30.0,
    ) -> None:
        try:
            context = ssl.create_default_context(cafile=str(ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise AgentError(
                f"cannot load the client certificate, key or CA: {exc}", code="client_config"
            ) from exc
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, verify=context, timeout=timeout)

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, Any]:
        return self._json(self._request("GET", "/v1/health"))

    def actions(self) -> list[dict[str, Any]]:
        body = self._json(self._request("GET", "/v1/actions"))
        actions = body.get("actions")
        if not isinstance(actions, list):
            raise AgentError("the agent's action list has no 'actions' array", code="bad_response")
        return actions

    def action(self, name: str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/v1/actions/{quote(name, safe='')}"))

    def run(
        self, name: str, args: dict[str, Any] | None = None, timeout: float | None = None
    ) -> RunResult:
        """Run an action and wait for its result; `timeout` may only shorten the action's own."""
        response = self._request(
            "POST",
            f"/v1/actions/{quote(name, safe='')}",
            json=args or {},
            params=self._params(timeout),
            timeout=self._run_timeout(timeout),
        )
        body = self._json(response)
        try:
            return RunResult.model_validate(body)
        except ValueError as exc:
            raise AgentError(
                f"the agent's run result is malformed: {exc}", code="bad_response"
            ) from exc

    def stream(
        self, name: str, args: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the run's events as they happen: started, stdout/stderr chunks, finished."""
        finished = False
        try:
            with self._http.stream(
                "POST",
                f"/v1/actions/{quote(name, safe='')}",
                json=args or {},
                params={**self._params(timeout), "stream": "1"},
                timeout=self._run_timeout(timeout),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    self._json(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise AgentError(
                            f"the agent streamed a line that is not JSON: {line[:200]!r}",
                            code="bad_response",
                            status=response.status_code,
                        ) from None
                    if not isinstance(event, dict) or "event" not in event:
                        raise AgentError(
                            f"the agent streamed something that is not an event: {line[:200]!r}",
                            code="bad_response",
                        )
                    finished = event["event"] == "finished"
                    yield event
        except httpx.HTTPError as exc:
            raise self._transport(exc) from exc
        if not finished:
            raise AgentError(
                "the agent's stream ended before the run finished", code="bad_response"
            )

    def run_bounded(
        self, name: str, args: dict[str, Any] | None = None, *, timeout: float, max_bytes: int
    ) -> BoundedAnswer:
        """Run an action and read at most `max_bytes` of its answer, unparsed, so a caller
        can tell a huge or garbled answer from a failed run (triage does, per host).

        Transport failures raise AgentError with code `unreachable` (nothing answered),
        `refused` (the TLS handshake failed: the host is up and refused us), `timeout`
        (no answer in time) or `transport_error` (the answer broke off).
        """
        body = bytearray()
        try:
            with self._http.stream(
                "POST",
                f"/v1/actions/{quote(name, safe='')}",
                json=args or {},
                params=self._params(timeout),
                timeout=httpx.Timeout(min(timeout, self._timeout), read=timeout + 5.0),
            ) as response:
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        return BoundedAnswer(
                            status_code=response.status_code, body=bytes(body), oversized=True
                        )
                return BoundedAnswer(status_code=response.status_code, body=bytes(body))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            refused = _tls_failure(exc)
            raise AgentError(
                f"cannot talk to the agent at {self.base_url}: {exc}",
                code="refused" if refused else "unreachable",
            ) from exc
        except httpx.TimeoutException as exc:
            raise AgentError(
                f"the agent at {self.base_url} did not answer in time: {exc}", code="timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise AgentError(f"the agent at {self.base_url} broke off: {exc}") from exc

    # --- plumbing --------------------------------------------------------------------------

    def _params(self, timeout: float | None) -> dict[str, str]:
        return {"timeout": f"{timeout:g}"} if timeout is not None else {}

    def _run_timeout(self, timeout: float | None) -> httpx.Timeout:
        read = timeout + ANSWER_GRACE if timeout is not None else None
        return httpx.Timeout(self._timeout, read=read)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport(exc) from exc

    def _transport(self, exc: httpx.HTTPError) -> AgentError:
        return AgentError(f"cannot talk to the agent at {self.base_url}: {exc}")

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise AgentError(
                f"the agent answered HTTP {response.status_code} with something that is not JSON",
                code="bad_response",
                status=response.status_code,
            ) from None
        if not isinstance(body, dict):
            raise AgentError(
                "the agent answered with JSON that is not an object",
                code="bad_response",
                status=response.status_code,
            )
        if response.status_code >= 400:
            error = body.get("error")
            if not isinstance(error, dict):
                raise AgentError(
                    f"the agent answered HTTP {response.status_code} without an error envelope",
                    code="bad_response",
                    status=response.status_code,
                )
            raise AgentError(
                str(error.get("message", "")),
                code=str(error.get("code", "error")),
                status=response.status_code,
                details=error.get("details") if isinstance(error.get("details"), dict) else {},
            )
        return body


def _tls_failure(exc: BaseException) -> bool:
    """Whether a connection failed in the TLS handshake (the host is up, it refused us)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
