"""Discovery: sweep TLS endpoints (listed, or an inventory scope) and record what they serve."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.certificates import ca
from popcorn.certificates.discover import DiscoveryResult, discover
from popcorn.certificates.models import (
    Certificate,
    Endpoint,
    Source,
)
from popcorn.certificates.schemas import (
    Discover,
    SourceCreate,
)
from popcorn.certificates.service.common import engine_errors
from popcorn.certificates.service.issuance import IssueMeta, authority_index, record_foreign
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput
from popcorn.jobs import JobRecord
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_ref
from popcorn.outbox import emit

# --------------------------------------------------------------------------- discovery


def get_source(*, session: Session, ref: int | str) -> Source:
    return get_by_ref(session, Source, ref, label="discovery source")


def list_sources(*, session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.id)))


def inventory_endpoints(
    *, session: Session, scope: dict[str, Any], ports: Sequence[int]
) -> list[str]:
    """host:port of the primary address of every inventory device in `scope`, on each port.

    Unknown sites, regions or devices raise NotFound (from the inventory), so a
    typo is not mistaken for an empty sweep.
    """
    from popcorn import domains

    domains.require("inventory", "inventory discovery sources sweep its devices")
    # the inventory facade ships with the inventory domain (its owner writes it)
    from popcorn.inventory import api as inventory_api

    endpoints: list[str] = []
    for device in inventory_api.devices_for_scope(session=session, **scope):
        address = device.primary_ip4 or device.primary_ip6
        if not address:
            continue
        host = address.split("/", 1)[0]
        shown = f"[{host}]" if ":" in host else host
        endpoints += [f"{shown}:{port}" for port in ports]
    return endpoints


def create_source(*, session: Session, spec: SourceCreate) -> Source:
    """Endpoints (or an inventory scope) to sweep, on a cron schedule if given."""
    from popcorn.certificates.discover import parse_endpoint
    from popcorn.jobs import create_schedule

    if session.scalar(select(Source.id).where(Source.name == spec.name)) is not None:
        raise Conflict(
            f"a discovery source named {spec.name!r} exists", details={"name": spec.name}
        )
    options: dict[str, Any] = {"timeout": spec.timeout}
    if spec.kind == "inventory":
        assert spec.scope is not None
        options["scope"] = spec.scope.model_dump(exclude_none=True)
        options["ports"] = spec.ports
        inventory_endpoints(session=session, scope=options["scope"], ports=spec.ports)
    with engine_errors():
        for text in spec.endpoints:
            parse_endpoint(text)
    row = Source(
        name=spec.name,
        kind=spec.kind,
        endpoints=spec.endpoints,
        options=options,
        owner=spec.owner,
        team=spec.team,
        created_at=utcnow(),
        last_summary={},
    )
    session.add(row)
    session.flush()
    if spec.cron:
        create_schedule(
            session=session,
            name=f"certificates.discover:{row.name}",
            task="certificates.discover",
            arguments={"source": row.id},
            cron=spec.cron,
        )
        row.options = {**row.options, "schedule": f"certificates.discover:{row.name}"}
    record_change(
        session,
        "create",
        "certificate_source",
        row.id,
        after={"name": row.name, "kind": row.kind, "options": row.options, "cron": spec.cron},
    )
    return row


def record_discovery(
    *,
    session: Session,
    results: Sequence[DiscoveryResult],
    source: Source | None = None,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Record what each endpoint served; certificates not yet known are imported as discovered."""
    now = now or utcnow()
    authorities = authority_index(session)
    meta = IssueMeta(owner=source.owner if source else "", team=source.team if source else "")
    summary = {"endpoints": len(results), "ok": 0, "failed": 0, "new_certificates": 0, "changed": 0}
    for result in results:
        if result.endpoint is None:
            summary["failed"] += 1
            continue
        target = result.endpoint
        server_name = target.server_name or ""
        endpoint = session.scalar(
            select(Endpoint).where(
                Endpoint.host == target.host,
                Endpoint.port == target.port,
                Endpoint.server_name == server_name,
            )
        )
        if endpoint is None:
            endpoint = Endpoint(host=target.host, port=target.port, server_name=server_name)
            session.add(endpoint)
        endpoint.last_checked_at = now
        if source is not None:
            endpoint.source_id = source.id
        if not result.ok or result.leaf is None:
            endpoint.last_error = result.error or "no certificate"
            summary["failed"] += 1
            continue
        summary["ok"] += 1
        fingerprint = ca.certificate_info(result.leaf).sha256_fingerprint
        certificate_id = session.scalar(
            select(Certificate.id).where(Certificate.sha256_fingerprint == fingerprint)
        )
        if certificate_id is None:
            found = record_foreign(
                session,
                result.leaf,
                result.chain[1:],
                None,
                source="discovered",
                meta=meta,
                authorities=authorities,
            )
            certificate_id = found.id
            summary["new_certificates"] += 1
        if endpoint.certificate_id is not None and endpoint.certificate_id != certificate_id:
            summary["changed"] += 1
            session.flush()
            emit(
                session,
                "certificates.endpoint.changed",
                "certificate_endpoint",
                endpoint.id,
                {
                    "endpoint": str(target),
                    "previous_certificate_id": endpoint.certificate_id,
                    "certificate_id": certificate_id,
                },
            )
        endpoint.certificate_id = certificate_id
        endpoint.last_seen_at = now
        endpoint.tls_version = result.tls_version
        endpoint.cipher = result.cipher
        endpoint.last_error = ""
    session.flush()
    return summary


def run_discovery(
    *,
    endpoints: Sequence[str] = (),
    source: int | str | None = None,
    timeout: float | None = None,
    max_workers: int = 64,
) -> dict[str, Any]:
    """Sweep a source (or a list of host:port) and record the results.

    Opens its own transactions: the network sweep runs between them, so a
    slow host never holds a database transaction open.
    """
    source_id: int | None = None
    targets = list(endpoints)
    if source is not None:
        with session_scope(readonly=True) as session:
            found = get_source(session=session, ref=source)
            source_id = found.id
            targets = list(found.endpoints)
            if found.kind == "inventory":
                targets = inventory_endpoints(
                    session=session,
                    scope=dict(found.options.get("scope") or {}),
                    ports=found.options.get("ports") or [443],
                )
            timeout = timeout or float(found.options.get("timeout", 5.0))
    if not targets and source_id is None:
        raise InvalidInput("endpoints: nothing to discover", details={"field": "endpoints"})
    with engine_errors():
        results = discover(targets, timeout=timeout or 5.0, max_workers=max_workers)
    with session_scope() as session:
        row = session.get(Source, source_id) if source_id is not None else None
        summary = record_discovery(session=session, results=results, source=row)
        if row is not None:
            row.last_run_at = utcnow()
            row.last_summary = summary
        record_change(
            session,
            "discover",
            "certificate_source",
            source_id if source_id is not None else "adhoc",
            after=summary,
        )
    failures = [{"endpoint": r.target, "error": r.error} for r in results if not r.ok]
    return {**summary, "errors": failures[:100]}


def list_endpoints(*, session: Session, params: ListParams) -> PageResult:
    """TLS endpoints found by discovery (filters: host, port, certificate_id…)."""
    allowed = {
        "host": Endpoint.host,
        "port": Endpoint.port,
        "server_name": Endpoint.server_name,
        "source_id": Endpoint.source_id,
        "certificate_id": Endpoint.certificate_id,
        "last_error": Endpoint.last_error,
        "last_seen_at": Endpoint.last_seen_at,
    }
    stmt = select(Endpoint).where(*filter_clauses(params.filters, allowed))
    return paginate(session, stmt, params, key=Endpoint.id)


def queue_discovery(*, session: Session, spec: Discover) -> JobRecord:
    """Sweep a source or a list of endpoints in a job (a sweep can take minutes)."""
    from popcorn.jobs import enqueue

    arguments: dict[str, Any] = (
        {"source": get_source(session=session, ref=spec.source).id}
        if spec.source is not None
        else {"endpoints": spec.endpoints}
    )
    arguments["timeout"] = spec.timeout
    return enqueue(session, "certificates.discover", arguments=arguments)
