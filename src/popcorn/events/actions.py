"""What a matching rule does: webhook, runbook, job, emit and incident actions.

Every action run is a row (`ActionRun`) saying what was attempted with which
rendered parameters and how it went. Inline actions (runbook, job, emit,
incident) run in the processing transaction inside a savepoint, so a failing
one is recorded as failed without undoing the others. Webhooks leave the
transaction: each delivery is a job whose retries give exponential backoff;
a delivery that keeps failing (or gets a permanent 4xx) is marked failed,
which puts it on the dead-letter list until someone replays it.

Actions that create events (emit, incident) carry a hop count and refuse to
go beyond `MAX_HOPS`, so rules reacting to their own output cannot loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn import domains, jobs, outbound
from popcorn.audit import record_change
from popcorn.db import session_scope, utcnow
from popcorn.errors import PopcornError
from popcorn.events.formats import Event, EventFormatError
from popcorn.events.models import ActionRun, EventRecord, Incident, IncidentEvent
from popcorn.outbox import emit as outbox_emit

log = logging.getLogger("popcorn.events.actions")

MAX_HOPS = 5
WEBHOOK_TASK = "events.webhook"
DEFAULT_WEBHOOK_RETRIES = 6
DEFAULT_WEBHOOK_TIMEOUT = 10.0
SIGNATURE_HEADER = "X-Popcorn-Signature-256"
DEFAULT_SECRET = "default"
# Headers a rule may not set: what Popcorn sets itself, what steers the connection or a
# proxy (hop-by-hop), and what claims an identity the platform did not give the rule.
_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Content-Type", "Content-Length", "Host", "Transfer-Encoding", "Connection",
        "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
        "Proxy-Connection", "Authorization", "Cookie", "Forwarded", "X-Real-IP", "User-Agent",
    )
)  # fmt: skip
_RESERVED_HEADER_PREFIXES = ("x-popcorn-", "x-forwarded-")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
MAX_HEADERS = 20
MAX_STORED_REPLY = 1000
# Answers that will not change on retry; anything else (5xx, 408, 425, 429, network) is retried.
_RETRYABLE_4XX = frozenset({408, 425, 429})


class ActionError(ValueError):
    """An action that cannot be done as asked (bad parameters, missing target)."""


# --------------------------------------------------------------------------- params


def _mapping(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise ActionError("params: must be a mapping")
    return params


def _text(params: dict[str, Any], key: str, *, required: bool = False, default: str = "") -> str:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise ActionError(f"params.{key}: is required")
        return default
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ActionError(f"params.{key}: must be a string")
    return str(value)


def _object(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = params.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ActionError(f"params.{key}: must be a mapping")
    return value


def _check_hops(event: EventRecord) -> int:
    hops = event.hops + 1
    if hops > MAX_HOPS:
        raise ActionError(
            f"hop limit: event {event.id} is already {event.hops} hops from its origin "
            f"(at most {MAX_HOPS}); refusing to create another event"
        )
    return hops


# --------------------------------------------------------------------------- dispatch


def perform(session: Session, run: ActionRun, *, event: EventRecord) -> None:
    """Do (or, for webhooks, schedule) one action run and record the outcome on it."""
    run_id = run.id
    if run.type == "webhook":
        try:
            _schedule_webhook(session, run)
        except ActionError as exc:
            _fail(run, str(exc))
        return
    handler = _INLINE[run.type]
    try:
        with session.begin_nested():
            response = handler(session, run, event)
    except ActionError as exc:
        _fail(run, str(exc))
        return
    except PopcornError as exc:
        _fail(run, f"{type(exc).__name__}: {exc.message}")
        return
    except Exception as exc:
        log.exception("action run %s (%s) failed", run_id, run.type)
        _fail(run, f"{type(exc).__name__}: {exc}")
        return
    run.attempts += 1
    run.status = "succeeded"
    run.response = response
    run.error = ""
    run.updated_at = utcnow()


def _fail(run: ActionRun, error: str) -> None:
    run.attempts += 1
    run.status = "failed"
    run.error = error[:4000]
    run.updated_at = utcnow()


# --------------------------------------------------------------------------- job


def _job(session: Session, run: ActionRun, event: EventRecord) -> dict[str, Any]:
    params = _mapping(run.params)
    name = _text(params, "job", required=True)
    task = jobs.TASKS.get(name)
    if task is None:
        import popcorn.domains

        popcorn.domains.load_tasks()
        task = jobs.TASKS.get(name)
    if task is None:
        raise ActionError(f"params.job: no registered task named {name!r}")
    if not task.public:
        raise ActionError(f"params.job: task {name!r} is internal; rules may start public tasks")
    queue = _text(params, "queue") or None
    try:  # a rule is a person's submission, within the same limits as the API's
        arguments = jobs.check_submission(
            task, arguments=_object(params, "arguments"), queue=queue, timeout=None, retries=None
        )
    except PopcornError as exc:
        raise ActionError(f"params: {exc.message}") from None
    record = jobs.enqueue(session, name, arguments=arguments, queue=queue)
    return {"job_id": record.id, "task": name}


# --------------------------------------------------------------------------- runbook


def _runbook(session: Session, run: ActionRun, event: EventRecord) -> dict[str, Any]:
    params = _mapping(run.params)
    runbook = _text(params, "runbook", required=True)
    target = params.get("target")
    if target is not None and not isinstance(target, dict):
        raise ActionError("params.target: must be a mapping")
    dry_run = params.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ActionError("params.dry_run: must be true or false")
    domains.require("remediation", "a rule's runbook action starts runbooks")
    from popcorn.remediation import api as remediation_api

    trigger = {
        "kind": "event",
        "event": event.id,
        "event_id": event.event_id,
        "type": event.type,
        "source": event.source,
        "rule": run.rule_name,
        "action_run": run.id,
        "hops": event.hops + 1,
    }
    execution = remediation_api.start_runbook(
        session=session,
        runbook=runbook,
        inputs=_object(params, "inputs"),
        target=target,
        trigger=trigger,
        dry_run=dry_run,
    )
    return {"runbook": runbook, "execution_id": execution.id, "status": execution.status}


# --------------------------------------------------------------------------- emit


def _emit(session: Session, run: ActionRun, event: EventRecord) -> dict[str, Any]:
    from popcorn.events import service

    params = _mapping(run.params)
    hops = _check_hops(event)
    data = params.get("data", {})
    labels = {
        str(k): v if isinstance(v, str) else json.dumps(v)
        for k, v in _object(params, "labels").items()
    }
    default_id = hashlib.sha256(f"{event.id}:{run.rule_name}:{run.position}".encode()).hexdigest()
    try:
        new = Event(
            id=_text(params, "id", default=f"emit-{default_id[:32]}"),
            type=_text(params, "type", required=True),
            source=_text(params, "source", default=f"popcorn/rules/{run.rule_name}"),
            subject=_text(params, "subject") or None,
            time=utcnow(),
            data=data if isinstance(data, dict) else {"value": data},
            labels=labels,
            datacontenttype="application/json",
        )
    except EventFormatError as exc:
        raise ActionError(f"params.{exc.path}: {exc.reason}") from None
    result = service.ingest(session=session, events=[new], origin="emit", hops=hops)
    item = result.items[0]
    return {"event": item["id"], "event_id": new.id, "status": item["status"], "hops": hops}


# --------------------------------------------------------------------------- incident

INCIDENT_OPS = ("auto", "open", "update", "resolve")


def _incident(session: Session, run: ActionRun, event: EventRecord) -> dict[str, Any]:
    params = _mapping(run.params)
    hops = _check_hops(event)
    title = _text(params, "title", required=True)[:500]
    key = _text(params, "key", default=title)[:500]
    op = _text(params, "op", default="auto")
    if op not in INCIDENT_OPS:
        raise ActionError(f"params.op: must be one of {', '.join(INCIDENT_OPS)}")
    if op == "auto":
        resolved = event.type.endswith(".resolved") or event.data.get("status") == "resolved"
        op = "resolve" if resolved else "open"
    incident = session.scalar(select(Incident).where(Incident.open_key == key).with_for_update())
    if op == "resolve":
        if incident is None:
            return {"incident": None, "change": "none", "reason": f"no open incident {key!r}"}
        resolve(session, incident, hops=hops, event=event)
        return {"incident": incident.id, "change": "resolved"}
    created = False
    if incident is None:
        if op == "update":
            return {"incident": None, "change": "none", "reason": f"no open incident {key!r}"}
        incident, created = _open(session, key, title, params, run, hops)
    before = _incident_state(incident)
    severity = _text(params, "severity")
    if severity and not created:
        incident.severity = severity[:40]
    description = _text(params, "description")
    if description and not created:
        incident.description = description
    _attach(session, incident, event, "opened" if created else "updated")
    change = "opened" if created else "updated"
    record_change(
        session, "create" if created else "update", "event_incident", incident.id,
        before=None if created else before, after=_incident_state(incident),
    )  # fmt: skip
    outbox_emit(
        session, f"events.incident.{change}", "event_incident", incident.id,
        {**_incident_state(incident), "event": event.id, "hops": hops},
    )  # fmt: skip
    return {"incident": incident.id, "change": change}


def _open(
    session: Session, key: str, title: str, params: dict[str, Any], run: ActionRun, hops: int
) -> tuple[Incident, bool]:
    now = utcnow()
    labels = _object(params, "labels")
    try:
        with session.begin_nested():
            incident = Incident(
                key=key,
                open_key=key,
                title=title,
                status="open",
                severity=_text(params, "severity")[:40],
                description=_text(params, "description"),
                labels=labels,
                rule_name=run.rule_name,
                event_count=0,
                opened_at=now,
                updated_at=now,
            )
            session.add(incident)
            session.flush()
        return incident, True
    except IntegrityError:  # opened concurrently by another worker: update that one
        existing = session.scalar(
            select(Incident).where(Incident.open_key == key).with_for_update()
        )
        if existing is None:
            raise
        return existing, False


def _incident_state(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "key": incident.key,
        "title": incident.title,
        "status": incident.status,
        "severity": incident.severity,
        "event_count": incident.event_count,
    }


def _attach(session: Session, incident: Incident, event: EventRecord | None, change: str) -> None:
    now = utcnow()
    incident.updated_at = now
    if event is None or session.get(IncidentEvent, (incident.id, event.id)) is not None:
        return
    session.add(
        IncidentEvent(incident_id=incident.id, event_id=event.id, change=change, created_at=now)
    )
    incident.event_count += 1


def resolve(
    session: Session, incident: Incident, *, hops: int = 0, event: EventRecord | None = None
) -> None:
    """Close an open incident; a later open with the same key starts a new one."""
    before = _incident_state(incident)
    incident.status = "resolved"
    incident.open_key = None
    incident.resolved_at = utcnow()
    _attach(session, incident, event, "resolved")
    session.flush()
    record_change(
        session, "resolve", "event_incident", incident.id, before=before,
        after=_incident_state(incident),
    )  # fmt: skip
    outbox_emit(
        session, "events.incident.resolved", "event_incident", incident.id,
        {**_incident_state(incident), "event": event.id if event else None, "hops": hops},
    )  # fmt: skip


# --------------------------------------------------------------------------- webhook


def _webhook_params(params: Any) -> dict[str, Any]:
    """Validated webhook parameters with defaults; raises ActionError naming the field."""
    params = _mapping(params)
    url = _text(params, "url", required=True)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ActionError(f"params.url: must be an http(s) URL, got {url[:200]!r}")
    method = _text(params, "method", default="POST").upper()
    if method not in ("POST", "PUT", "PATCH"):
        raise ActionError("params.method: must be POST, PUT or PATCH")
    headers = _object(params, "headers")
    if len(headers) > MAX_HEADERS:
        raise ActionError(f"params.headers: at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ActionError(f"params.headers.{name[:100]}: not a valid header name")
        if not isinstance(value, str) or len(value) > 1000 or "\r" in value or "\n" in value:
            raise ActionError(f"params.headers.{name}: must be one line of text (at most 1000)")
        lower = name.lower()
        if lower in _RESERVED_HEADERS or lower.startswith(_RESERVED_HEADER_PREFIXES):
            raise ActionError(
                f"params.headers.{name}: a rule may not set this header (reserved for Popcorn, "
                "the connection, or an identity the platform gives)"
            )
    timeout = params.get("timeout", DEFAULT_WEBHOOK_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ActionError("params.timeout: must be a number of seconds, at most 60")
    retries = params.get("retries", DEFAULT_WEBHOOK_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 12:
        raise ActionError("params.retries: must be a whole number from 0 to 12")
    secret = params.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise ActionError("params.secret: must be the name of a stored secret")
    return {
        "url": url,
        "method": method,
        "headers": headers,
        "timeout": float(timeout),
        "retries": retries,
        "secret": secret,
        "payload": params.get("payload"),
        "has_payload": "payload" in params,
    }


def _schedule_webhook(session: Session, run: ActionRun) -> None:
    spec = _webhook_params(run.params)
    record = jobs.enqueue(
        session,
        WEBHOOK_TASK,
        arguments={"action_run_id": run.id},
        retries=spec["retries"],
        timeout=int(spec["timeout"]) + 30,
    )
    run.job_id = record.id
    run.status = "pending"
    run.updated_at = utcnow()


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """For receivers: does the signature header match this body?"""
    return hmac.compare_digest(sign(secret, body), header or "")


def _signing_secret(session: Session, name: str | None, url: str) -> str | None:
    """The secret to sign a delivery to `url` with, if the admin bound it there.

    A secret named by the rule that may not sign for this URL fails the action;
    the implicit `default` secret simply does not sign such a delivery.
    """
    from popcorn.events import webhook_secrets

    row = webhook_secrets.get_secret(session=session, name=name or DEFAULT_SECRET)
    if row is None:
        if name:
            raise ActionError(f"params.secret: no stored secret named {name!r}")
        return None
    if not webhook_secrets.allows(row.allowed_targets or [], url):
        if name:
            raise ActionError(
                f"params.secret: secret {name!r} may not sign for {urlsplit(url).netloc!r} "
                "(an admin sets the destinations of each secret: allowed_targets)"
            )
        return None
    return webhook_secrets.reveal(row)


class WebhookRetry(RuntimeError):
    """A delivery failed in a way that may pass later; the job retries with backoff."""


def deliver_webhook(action_run_id: int) -> dict[str, Any]:
    """One delivery attempt of a webhook action run (the body of the `events.webhook` job)."""
    from popcorn.events import service

    with session_scope(readonly=True) as session:
        run = session.get(ActionRun, action_run_id)
        if run is None:
            return {"skipped": "action run no longer exists"}
        if run.status not in ("pending", "retrying"):
            return {"skipped": f"action run is {run.status}"}
        event = session.get(EventRecord, run.event_id)
        job = session.get(jobs.JobRecord, run.job_id) if run.job_id else None
        final = job is None or job.attempts > job.max_retries
        attempt = run.attempts + 1
        rule_name = run.rule_name
        error: str | None = None
        secret: str | None = None
        try:
            spec = _webhook_params(run.params)
            secret = _signing_secret(session, spec["secret"], spec["url"])
        except ActionError as exc:
            error = str(exc)
        event_dict = service.to_event(event).to_dict() if event is not None else None
    if error is None:
        try:
            outbound.check_url(spec["url"], purpose="webhook")
        except PopcornError as exc:  # refused for good: fail now, no retries
            error = f"refused: {exc.message}"
    if error is not None:
        return _record_delivery(action_run_id, ok=False, final=True, error=error, response=None)
    payload = (
        spec["payload"]
        if spec["has_payload"]
        else {"event": event_dict, "rule": rule_name, "delivery": action_run_id}
    )
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        **spec["headers"],
        "Content-Type": "application/json",
        "User-Agent": "Popcorn-Webhook/1",
        "X-Popcorn-Delivery": str(action_run_id),
        "X-Popcorn-Attempt": str(attempt),
        "X-Popcorn-Event-Id": str(event_dict["id"]) if event_dict else "",
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    import httpx  # here, not at the top: the CLI imports this module

    started = time.perf_counter()
    permanent = False
    response: dict[str, Any] = {"attempt": attempt, "signed": secret is not None}
    try:
        with httpx.Client(timeout=spec["timeout"], follow_redirects=False) as client:
            answer = client.request(spec["method"], spec["url"], content=body, headers=headers)
        response.update(status_code=answer.status_code, body=answer.text[:MAX_STORED_REPLY])
        ok = 200 <= answer.status_code < 300
        if not ok:
            error = f"HTTP {answer.status_code} from {spec['url']}"
            permanent = 300 <= answer.status_code < 500 and answer.status_code not in _RETRYABLE_4XX
    except httpx.TimeoutException:
        ok = False
        error = f"timed out after {spec['timeout']:g}s calling {spec['url']}"
    except httpx.HTTPError as exc:
        ok = False
        error = f"{type(exc).__name__}: {exc} calling {spec['url']}"
    response["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    outcome = _record_delivery(
        action_run_id, ok=ok, final=final or permanent, error=error, response=response
    )
    if outcome.get("status") == "retrying":
        raise WebhookRetry(error or "delivery failed")
    return outcome


def _record_delivery(
    action_run_id: int, *, ok: bool, final: bool, error: str | None, response: Any
) -> dict[str, Any]:
    with session_scope() as session:
        run = session.get(ActionRun, action_run_id, with_for_update=True)
        if run is None or run.status not in ("pending", "retrying"):
            return {"skipped": "action run changed meanwhile"}
        run.attempts += 1
        run.response = response
        run.updated_at = utcnow()
        if ok:
            run.status, run.error = "succeeded", ""
        else:
            run.status = "failed" if final else "retrying"
            run.error = (error or "failed")[:4000]
        return {"action_run": run.id, "status": run.status, "attempts": run.attempts}


_INLINE = {"job": _job, "runbook": _runbook, "emit": _emit, "incident": _incident}
