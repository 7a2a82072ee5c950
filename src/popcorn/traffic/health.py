"""Health checks an execution runs after each traffic step, and the registry of Python ones.

A check is a signals selector under a threshold, a Python function, or an HTTP URL. An
operator names a Python check in an execution (or an admin in the settings), so the name
must not reach any function in the process: only functions registered here with
`@health_check("site:name")` can be named. Popcorn's own plugins mechanism
(`POPCORN_PLUGINS`, set by an admin) is how an installation adds its checks. An HTTP check
calls only targets an admin allowed (`popcorn.outbound`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from popcorn import domains
from popcorn.db import session_scope, utcnow
from popcorn.errors import InvalidInput, NotFound, PopcornError


@dataclass(frozen=True)
class HealthResult:
    """The verdict of a health check after a step, and where it came from."""

    healthy: bool
    source: str
    detail: str = ""
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "source": self.source,
            "detail": self.detail,
            "value": self.value,
        }


HealthCheck = Callable[[dict[str, Any]], HealthResult]
# A registered check gets the step's context and answers a bool, (bool, detail) or a result.
Verdict = bool | tuple[bool, str] | HealthResult
F = TypeVar("F", bound=Callable[[dict[str, Any]], Verdict])

REGISTRY: dict[str, Callable[[dict[str, Any]], Verdict]] = {}


def health_check(name: str) -> Callable[[F], F]:
    """Register `func` as the Python health check an execution may name as `name`."""

    def register(func: F) -> F:
        REGISTRY[name] = func
        return func

    return register


def registered(name: str) -> Callable[[dict[str, Any]], Verdict] | None:
    """The check registered as `name` (plugins are imported first if it is not known yet)."""
    if name not in REGISTRY:
        domains.load_plugins()
    return REGISTRY.get(name)


def check_spec(spec: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, a check that names an unregistered function (422) or
    an HTTP target an admin did not allow (403)."""
    name = spec.get("callable")
    if name and registered(str(name)) is None:
        raise InvalidInput(
            f"health.callable: {name!r} is not a registered health check",
            details={"registered": sorted(REGISTRY)},
        )
    if spec.get("url"):
        from popcorn.outbound import check_url

        check_url(str(spec["url"]), purpose="health.url")


def health_check_from(spec: Mapping[str, Any]) -> HealthCheck:
    """The configured check: a signals selector under a threshold when signals have data for
    it, else a registered Python check, else an HTTP URL (healthy below 400), else none
    (always healthy, and the step says so)."""

    def check(context: dict[str, Any]) -> HealthResult:
        if spec.get("selector"):
            verdict = signals_health(
                str(spec["selector"]),
                float(spec["threshold"]),
                float(spec.get("window_seconds") or 300.0),
            )
            if verdict is not None:
                return verdict
        if spec.get("callable"):
            return callable_health(str(spec["callable"]), context)
        if spec.get("url"):
            return http_health(str(spec["url"]), context, float(spec.get("timeout_seconds") or 5.0))
        return HealthResult(True, "none", "no health check configured")

    return check


def signals_health(selector: str, threshold: float, window_seconds: float) -> HealthResult | None:
    """Healthy while the latest value of every matching series is under `threshold`;
    None when signals are not installed or hold no recent data for the selector."""
    if not domains.installed("signals"):
        return None
    from popcorn.signals import api as signals_api

    now = utcnow()
    try:
        with session_scope(readonly=True) as session:
            result = signals_api.query(
                session=session,
                selector=selector,
                start=now - timedelta(seconds=window_seconds),
                end=now + timedelta(seconds=1),
            )
    except NotFound:
        return None
    latest = [float(values[-1]) for values in result.values if len(values)]
    if not latest:
        return None
    worst = max(latest)
    healthy = worst < threshold
    relation = "<" if healthy else ">="
    return HealthResult(
        healthy, "signals", f"{selector}: {worst:.6g} {relation} {threshold:g}", worst
    )


def callable_health(name: str, context: dict[str, Any]) -> HealthResult:
    """Run the check registered as `name`; an unknown name or an exception is unhealthy."""
    target = registered(name)
    if target is None:
        return HealthResult(False, "callable", f"{name} is not a registered health check")
    try:
        verdict = target(context)
    except Exception as exc:
        return HealthResult(False, "callable", f"{name} raised {type(exc).__name__}: {exc}")
    if isinstance(verdict, HealthResult):
        return verdict
    if isinstance(verdict, tuple):
        return HealthResult(bool(verdict[0]), "callable", str(verdict[1]))
    return HealthResult(bool(verdict), "callable", name)


def http_health(url: str, context: dict[str, Any], timeout_seconds: float) -> HealthResult:
    """GET `url` (with the execution and step as query parameters); healthy below 400.
    A target an admin did not allow is unhealthy without being called."""
    import httpx

    from popcorn.outbound import check_url

    try:
        check_url(url, purpose="health.url")
    except PopcornError as exc:
        return HealthResult(False, "http", exc.message)
    params = {"execution": context.get("execution_id"), "step": context.get("step")}
    try:
        response = httpx.get(url, params=params, timeout=timeout_seconds)
    except httpx.HTTPError as exc:
        return HealthResult(False, "http", f"{url}: {type(exc).__name__}: {exc}")
    return HealthResult(response.status_code < 400, "http", f"{url}: HTTP {response.status_code}")
