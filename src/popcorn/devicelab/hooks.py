"""Pipeline hooks: a Spinnaker-style webhook stage starts a run and gates on its status.

The stage POSTs its payload with `X-Popcorn-Signature: sha256=<HMAC of the body>` under
the hook's secret (sealed at rest, shown once to the admin who made it) and an API
token; it then polls `statusUrl` (`stage_status`: RUNNING, SUCCEEDED, TERMINAL), or
gives a `callback_url` that the platform POSTs the same status to, signed the same way,
once the run ends. A callback URL goes through the admin's outbound allow-list.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.db import session_scope
from popcorn.devicelab import protocol, scheduling, service
from popcorn.devicelab.models import LabHook, LabRun
from popcorn.devicelab.schemas import HookCreate, HookTrigger, RunCreate
from popcorn.errors import Conflict, Forbidden, InvalidInput
from popcorn.listing import ListParams, PageResult, paginate
from popcorn.lookup import get_by_ref
from popcorn.outbound import check_url
from popcorn.outbox import emit
from popcorn.sealing import KeyStore

HOOK_SIGNATURE = "X-Popcorn-Signature"


def _keystore() -> KeyStore:
    return KeyStore(get_settings().effective_secret_key, context="popcorn/devicelab/hook-secret")


def create_hook(*, session: Session, spec: HookCreate) -> dict[str, Any]:
    from popcorn.context import current_actor

    if session.scalar(select(LabHook.id).where(LabHook.name == spec.name)):
        raise Conflict(f"hook {spec.name!r} already exists")
    if spec.suite:
        service.select_tests(session=session, suite=spec.suite)  # a 404 for an unknown suite
    secret = spec.secret or secrets.token_urlsafe(32)
    hook = LabHook(
        name=spec.name,
        secret=_keystore().encrypt(secret),
        suite=spec.suite,
        devices=spec.devices,
        created_by=current_actor().name,
    )
    session.add(hook)
    session.flush()
    record_change(
        session,
        "create",
        "devicelab_hook",
        hook.id,
        after={
            "name": hook.name,
            "suite": hook.suite,
            "devices": hook.devices,
            "secret": "(sealed)",
        },
    )
    emit(session, "devicelab.hook.created", "devicelab_hook", hook.id, {"name": hook.name})
    return {**_read(hook), "secret": secret}


def _read(hook: LabHook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "name": hook.name,
        "suite": hook.suite,
        "devices": hook.devices,
        "created_by": hook.created_by,
        "created_at": hook.created_at,
    }


def list_hooks(*, session: Session, params: ListParams) -> PageResult:
    return paginate(session, select(LabHook), params, key=LabHook.id)


def delete_hook(*, session: Session, ref: int | str) -> LabHook:
    hook = get_by_ref(session, LabHook, ref, label="hook")
    record_change(session, "delete", "devicelab_hook", hook.id, before={"name": hook.name})
    emit(session, "devicelab.hook.deleted", "devicelab_hook", hook.id, {"name": hook.name})
    session.delete(hook)
    return hook


def hook_signature(secret: str, body: bytes) -> str:
    return protocol.sign(secret, body)


def trigger(*, session: Session, name: str, body: bytes, signature: str | None) -> LabRun:
    """Start a run from a signed pipeline payload (403 on a missing or bad signature)."""
    hook = get_by_ref(session, LabHook, name, label="hook")
    secret = _keystore().decrypt_text(hook.secret)
    if not signature or not hmac.compare_digest(hook_signature(secret, body), signature.strip()):
        raise Forbidden(
            f"hook {hook.name!r}: the {HOOK_SIGNATURE} header does not sign this body",
            code="bad_signature",
        )
    try:
        payload = HookTrigger.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidInput(
            "hook payload: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]),
        ) from None
    callback = ""
    if payload.callback_url:
        check_url(payload.callback_url, purpose="devicelab run callback")
        callback = payload.callback_url
    spec = RunCreate(
        build={
            "app_version": payload.app_version,
            "change": payload.change,
            "branch": payload.branch,
            "components": payload.components,
        },
        suite=payload.suite or hook.suite,
        devices=payload.devices if payload.devices is not None else hook.devices,
        select=payload.select,
    )
    run = scheduling.start_run(session=session, spec=spec, hook_id=hook.id, callback_url=callback)
    emit(
        session,
        "devicelab.hook.triggered",
        "devicelab_hook",
        hook.id,
        {"name": hook.name, "run": run.id},
    )
    return run


def send_callback(run_id: int, *, base_url: str = "") -> dict[str, Any]:
    """POST a finished run's status to its callback URL, signed with its hook's secret."""
    with session_scope(readonly=True) as session:
        run = scheduling.get_run(session=session, ref=run_id)
        url = run.callback_url
        status = scheduling.run_status(
            session=session, ref=run_id, base_url=base_url or get_settings().public_url or ""
        )
        hook = session.get(LabHook, run.hook_id) if run.hook_id else None
        secret = _keystore().decrypt_text(hook.secret) if hook else ""
    if not url:
        return {"sent": False, "reason": "no callback url"}
    check_url(url, purpose="devicelab run callback")
    body = protocol.canonical(status)
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[HOOK_SIGNATURE] = hook_signature(secret, body)
    import httpx  # only here: listing devices or runs does not pay for an HTTP client

    response = httpx.post(url, content=body, headers=headers, timeout=10.0, follow_redirects=False)
    response.raise_for_status()
    return {"sent": True, "status": response.status_code, "stage_status": status["stage_status"]}
