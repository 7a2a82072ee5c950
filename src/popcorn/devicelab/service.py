"""Device lab: the device registry (capabilities, health, location, reservations), the
agents that serve devices, and the test catalog with its suites.

Agents talk to the platform over HTTP with an API token. Registration hands an agent a
fresh key (sealed at rest) and the platform's identity; from then on the agent signs what
it sends with that key and accepts work only when the platform's answer is signed with it,
so a device takes tests from the platform it registered with and from nothing else.
Scheduling, runs and hooks are in `scheduling.py`; history analysis in `analysis.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from popcorn import domains, jobs
from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.db import utcnow
from popcorn.devicelab import query as q
from popcorn.devicelab.models import LabDevice, LabExecution, LabSuite, LabTest
from popcorn.devicelab.protocol import verify
from popcorn.devicelab.schemas import (
    AgentRegister,
    DeviceCreate,
    DeviceUpdate,
    SuiteCreate,
    TestCreate,
)
from popcorn.errors import Conflict, Forbidden, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_ref
from popcorn.outbox import emit
from popcorn.sealing import KeyStore

HEARTBEAT_S = 2.0
DEVICE_FILTERS = {
    "name": LabDevice.name,
    "platform": LabDevice.platform,
    "family": LabDevice.family,
    "pool": LabDevice.pool,
    "site": LabDevice.site,
    "health": LabDevice.health,
    "agent_state": LabDevice.agent_state,
}
TEST_FILTERS = {"name": LabTest.name, "suite": LabTest.suite}
ACTIVE = ("assigned", "running")


def offline_after() -> float:
    """Seconds without a heartbeat before a device is offline (`devicelab_offline_s`)."""
    return get_settings().devicelab_offline_s


def _keystore() -> KeyStore:
    return KeyStore(get_settings().effective_secret_key, context="popcorn/devicelab/agent-key")


def platform_id() -> str:
    """This installation's identity as agents see it (derived, never the secret itself)."""
    secret = get_settings().effective_secret_key.encode()
    return hmac.new(secret, b"popcorn/devicelab/platform", hashlib.sha256).hexdigest()[:24]


# --- devices ----------------------------------------------------------------------------------


def device_snapshot(device: LabDevice) -> dict[str, Any]:
    return {
        "name": device.name,
        "platform": device.platform,
        "model": device.model,
        "family": device.family,
        "os_version": device.os_version,
        "firmware": device.firmware,
        "resolution": device.resolution,
        "hdr": list(device.hdr),
        "drm_level": device.drm_level,
        "sdk_version": device.sdk_version,
        "tags": list(device.tags),
        "pool": device.pool,
        "site": device.site,
        "rack": device.rack,
        "slots": device.slots,
        "health": device.health,
        "agent_state": device.agent_state,
        "reserved_by": device.reserved_by,
        "reserved_until": device.reserved_until.isoformat() if device.reserved_until else None,
    }


def device_record(device: LabDevice) -> dict[str, Any]:
    """A device as the device query language sees it."""
    return {
        "name": device.name,
        "platform": device.platform,
        "model": device.model,
        "family": device.family,
        "os": device.os_version,
        "firmware": device.firmware,
        "resolution": device.resolution,
        "hdr": list(device.hdr),
        "drm": device.drm_level,
        "sdk": device.sdk_version,
        "tag": list(device.tags),
        "pool": device.pool,
        "site": device.site,
        "rack": device.rack,
        "health": device.health,
        "state": device.agent_state,
    }


def capability_record(device: LabDevice) -> dict[str, Any]:
    """A device as test requirements see it (`placement.capable`)."""
    return {
        "platform": device.platform,
        "model": device.model,
        "family": device.family,
        "os_version": device.os_version,
        "firmware": device.firmware,
        "resolution": device.resolution,
        "hdr": list(device.hdr),
        "drm_level": device.drm_level,
        "sdk_version": device.sdk_version,
        "tags": list(device.tags),
        "pool": device.pool,
        "site": device.site,
    }


def _check_site(session: Session, site: str) -> None:
    """A device's site is an inventory site when inventory is installed and knows sites."""
    if not site or not domains.installed("inventory"):
        return
    from popcorn.inventory import api as inventory_api

    codes = {s.code for s in inventory_api.list_sites(session=session)}
    if codes and site not in codes:
        raise InvalidInput(
            f"site: {site!r} is not an inventory site", details={"site": site, "known": len(codes)}
        )


def get_device(*, session: Session, ref: int | str, lock: bool = False) -> LabDevice:
    return get_by_ref(session, LabDevice, ref, label="device", lock=lock)


def list_devices(*, session: Session, params: ListParams, where: str = "") -> PageResult:
    stmt = select(LabDevice).where(*filter_clauses(params.filters, DEVICE_FILTERS))
    if not where.strip():
        return paginate(session, stmt, params, key=LabDevice.id)
    node = q.parse(where, q.DEVICE_FIELDS)
    rows = [
        d for d in session.scalars(stmt.order_by(LabDevice.id)) if q.matches(node, device_record(d))
    ]
    start = params.offset or 0
    more = start + params.limit < len(rows)
    return PageResult(
        items=rows[start : start + params.limit],
        count=len(rows),
        next=str(start + params.limit) if more else None,
    )


def _apply_capabilities(device: LabDevice, spec: DeviceCreate) -> None:
    for key in (
        "platform",
        "model",
        "family",
        "os_version",
        "firmware",
        "resolution",
        "hdr",
        "drm_level",
        "sdk_version",
        "tags",
        "pool",
        "site",
        "rack",
        "slots",
    ):
        setattr(device, key, getattr(spec, key))
    if not device.family:
        device.family = f"{spec.platform}-{spec.model or 'generic'}"


def create_device(*, session: Session, spec: DeviceCreate) -> LabDevice:
    if session.scalar(select(LabDevice.id).where(LabDevice.name == spec.name)):
        raise Conflict(f"device {spec.name!r} already exists", details={"name": spec.name})
    _check_site(session, spec.site)
    device = LabDevice(name=spec.name)
    _apply_capabilities(device, spec)
    session.add(device)
    session.flush()
    record_change(session, "create", "devicelab_device", device.id, after=device_snapshot(device))
    emit(session, "devicelab.device.created", "devicelab_device", device.id, {"name": device.name})
    return device


def update_device(*, session: Session, ref: int | str, spec: DeviceUpdate) -> LabDevice:
    device = get_device(session=session, ref=ref, lock=True)
    before = device_snapshot(device)
    if spec.site is not None:
        _check_site(session, spec.site)
    for key, value in spec.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(device, key, value)
    record_change(
        session,
        "update",
        "devicelab_device",
        device.id,
        before=before,
        after=device_snapshot(device),
    )
    emit(session, "devicelab.device.updated", "devicelab_device", device.id, {"name": device.name})
    return device


def delete_device(*, session: Session, ref: int | str) -> None:
    device = get_device(session=session, ref=ref, lock=True)
    busy = session.scalar(
        select(func.count())
        .select_from(LabExecution)
        .where(LabExecution.device_id == device.id, LabExecution.status.in_(ACTIVE))
    )
    if busy:
        raise Conflict(
            f"device {device.name!r} is running {busy} test(s)", details={"running": busy}
        )
    record_change(session, "delete", "devicelab_device", device.id, before=device_snapshot(device))
    emit(session, "devicelab.device.deleted", "devicelab_device", device.id, {"name": device.name})
    session.delete(device)


def reserve_device(
    *, session: Session, ref: int | str, who: str, minutes: float, note: str = ""
) -> LabDevice:
    """Hold a device for a person (the scheduler leaves it alone) until the reservation ends."""
    device = get_device(session=session, ref=ref, lock=True)
    now = utcnow()
    held = device.reserved_by and device.reserved_until and device.reserved_until > now
    if held and device.reserved_by != who:
        raise Conflict(
            f"device {device.name!r} is reserved by {device.reserved_by} until "
            f"{device.reserved_until:%Y-%m-%d %H:%M} UTC",
            details={"reserved_by": device.reserved_by},
        )
    before = device_snapshot(device)
    device.reserved_by = who
    device.reserved_until = now + timedelta(minutes=minutes)
    device.reservation_note = note
    record_change(
        session,
        "reserve",
        "devicelab_device",
        device.id,
        before=before,
        after=device_snapshot(device),
    )
    emit(
        session,
        "devicelab.device.reserved",
        "devicelab_device",
        device.id,
        {"name": device.name, "by": who, "until": device.reserved_until.isoformat()},
    )
    return device


def release_device(*, session: Session, ref: int | str, reason: str = "released") -> LabDevice:
    device = get_device(session=session, ref=ref, lock=True)
    if not device.reserved_by:
        raise Conflict(f"device {device.name!r} is not reserved")
    before = device_snapshot(device)
    device.reserved_by, device.reserved_until, device.reservation_note = None, None, ""
    record_change(
        session,
        "release",
        "devicelab_device",
        device.id,
        before=before,
        after=device_snapshot(device),
    )
    emit(
        session,
        "devicelab.device.released",
        "devicelab_device",
        device.id,
        {"name": device.name, "reason": reason},
    )
    return device


def expire_reservations(*, session: Session) -> int:
    """Free every device whose reservation has ended."""
    now = utcnow()
    expired = list(
        session.scalars(
            select(LabDevice).where(
                LabDevice.reserved_by.is_not(None), LabDevice.reserved_until <= now
            )
        )
    )
    for device in expired:
        release_device(session=session, ref=device.id, reason="expired")
    return len(expired)


# --- agents -----------------------------------------------------------------------------------


def register_agent(*, session: Session, spec: AgentRegister) -> dict[str, Any]:
    """Create or refresh the device an agent serves; hand the agent a fresh key.

    A re-registering agent (restarted) cannot still be running what it had: those tests
    are rescheduled, never left assigned to a process that is gone.
    """
    from popcorn.devicelab import scheduling

    device = session.scalar(
        select(LabDevice).where(LabDevice.name == spec.device.name).with_for_update()
    )
    created = device is None
    if device is None:
        device = create_device(session=session, spec=spec.device)
    else:
        before = device_snapshot(device)
        _check_site(session, spec.device.site)
        _apply_capabilities(device, spec.device)
        record_change(
            session,
            "update",
            "devicelab_device",
            device.id,
            before=before,
            after=device_snapshot(device),
        )
        scheduling.reschedule_device(session=session, device=device, why="its agent restarted")
    key = secrets.token_urlsafe(32)
    device.agent_key = _keystore().encrypt(key)
    device.agent_state = "online"
    device.agent_version = spec.version
    device.last_heartbeat = utcnow()
    session.flush()
    scheduling.adopt(session=session, device=device)
    # Silent devices are found by a sweep; agents' beats run it too, but when every agent
    # has died none beats, so a schedule runs it as well (made with the first agent).
    jobs.ensure_schedule(
        session=session,
        name=scheduling.SWEEP_TASK,
        task=scheduling.SWEEP_TASK,
        queue="high",
        interval_seconds=max(5, int(offline_after() / 2)),
    )
    emit(
        session,
        "devicelab.agent.registered",
        "devicelab_device",
        device.id,
        {"name": device.name, "created": created},
    )
    return {
        "device": device.name,
        "device_id": device.id,
        "platform_id": platform_id(),
        "agent_key": key,
        "heartbeat_s": HEARTBEAT_S,
        "offline_after_s": offline_after(),
    }


def agent_key(device: LabDevice) -> str:
    if not device.agent_key:
        raise NotFound(
            f"device {device.name!r} has no registered agent", details={"register": True}
        )
    return _keystore().decrypt_text(device.agent_key)


def verify_agent(*, session: Session, name: str, body: bytes, signature: str | None) -> LabDevice:
    """The device whose agent signed this request with its key (403 otherwise)."""
    device = session.scalar(select(LabDevice).where(LabDevice.name == name).with_for_update())
    if device is None:
        raise NotFound(f"no device {name!r}: register first", details={"register": True})
    key = agent_key(device)
    if not verify(key, body, signature):
        raise Forbidden(
            f"agent request for {name!r} is not signed with its registration key",
            details={"register": True},
        )
    return device


def mark_online(*, session: Session, device: LabDevice) -> None:
    device.last_heartbeat = utcnow()
    if device.agent_state != "online":
        device.agent_state = "online"
        record_change(
            session, "online", "devicelab_device", device.id, after={"agent_state": "online"}
        )
        emit(
            session, "devicelab.device.online", "devicelab_device", device.id, {"name": device.name}
        )


# --- catalog ----------------------------------------------------------------------------------


def test_record(test: LabTest) -> dict[str, Any]:
    """A test as the test query language sees it."""
    platforms = test.requires.get("platform", [])
    return {
        "name": test.name,
        "suite": test.suite,
        "component": list(test.components),
        "tag": list(test.tags),
        "owner": list(test.owners),
        "platform": platforms if isinstance(platforms, list) else [platforms],
        "duration": test.expected_duration_s,
        "requires": [f"{k}={v}" for k, v in test.requires.items()],
    }


def _test_snapshot(test: LabTest) -> dict[str, Any]:
    return {
        "name": test.name,
        "suite": test.suite,
        "components": test.components,
        "tags": test.tags,
        "requires": test.requires,
        "expected_duration_s": test.expected_duration_s,
        "timeout_s": test.timeout_s,
        "owners": test.owners,
    }


REQUIRE_KEYS = {
    "platform", "model", "family", "os_version", "firmware", "resolution", "hdr",
    "drm_level", "sdk_version", "tags", "pool", "site", "min_sdk", "min_os",
}  # fmt: skip


def upsert_tests(*, session: Session, specs: list[TestCreate]) -> dict[str, int]:
    """Add or update tests by name (a catalog import is idempotent)."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidInput("tests: a name appears twice")
    for spec in specs:
        unknown = set(spec.requires) - REQUIRE_KEYS
        if unknown:
            raise InvalidInput(
                f"test {spec.name!r}: unknown required capability {sorted(unknown)[0]!r}",
                details={"known": sorted(REQUIRE_KEYS)},
            )
    existing = {t.name: t for t in session.scalars(select(LabTest).where(LabTest.name.in_(names)))}
    created = updated = 0
    for spec in specs:
        data = spec.model_dump()
        data["timeout_s"] = spec.timeout_s or max(60.0, spec.expected_duration_s * 3)
        test = existing.get(spec.name)
        if test is None:
            test = LabTest(**data)
            session.add(test)
            session.flush()
            record_change(session, "create", "devicelab_test", test.id, after=_test_snapshot(test))
            created += 1
        else:
            before = _test_snapshot(test)
            for key, value in data.items():
                setattr(test, key, value)
            if before["expected_duration_s"] != test.expected_duration_s:
                # Queued attempts are placed by the duration the catalog says now.
                session.execute(
                    update(LabExecution)
                    .where(LabExecution.test_id == test.id, LabExecution.status == "queued")
                    .values(expected_duration_s=test.expected_duration_s)
                    .execution_options(synchronize_session=False)
                )
            if before != _test_snapshot(test):
                record_change(
                    session,
                    "update",
                    "devicelab_test",
                    test.id,
                    before=before,
                    after=_test_snapshot(test),
                )
                updated += 1
    emit(
        session,
        "devicelab.catalog.imported",
        "devicelab_catalog",
        0,
        {"created": created, "updated": updated},
    )
    return {"created": created, "updated": updated, "tests": len(specs)}


def get_test(*, session: Session, ref: int | str) -> LabTest:
    return get_by_ref(session, LabTest, ref, label="test")


def select_tests(*, session: Session, query: str = "", suite: str = "") -> list[LabTest]:
    """The catalog tests a suite and/or a query select, by name. A suite is a stored query,
    or else the tests whose `suite` field names it."""
    node = q.parse(query, q.TEST_FIELDS)
    suite_node: q.Node = q.Everything()
    if suite:
        found = session.scalar(select(LabSuite).where(LabSuite.name == suite))
        if found is None and not session.scalar(select(LabTest.id).where(LabTest.suite == suite)):
            raise NotFound(f"no suite {suite!r}", details={"suite": suite})
        suite_node = (
            q.parse(found.query, q.TEST_FIELDS)
            if found is not None and found.query
            else q.Term("suite", ":", suite, 0)
        )
    tests = session.scalars(select(LabTest).order_by(LabTest.name))
    return [
        t
        for t in tests
        if q.matches(suite_node, test_record(t)) and q.matches(node, test_record(t))
    ]


def list_tests(*, session: Session, params: ListParams, where: str = "") -> PageResult:
    if not where.strip():
        stmt = select(LabTest).where(*filter_clauses(params.filters, TEST_FILTERS))
        return paginate(session, stmt, params, key=LabTest.id)
    rows = select_tests(session=session, query=where)
    start = params.offset or 0
    more = start + params.limit < len(rows)
    return PageResult(
        rows[start : start + params.limit], len(rows), str(start + params.limit) if more else None
    )


def create_suite(*, session: Session, spec: SuiteCreate) -> LabSuite:
    q.parse(spec.query, q.TEST_FIELDS)
    if session.scalar(select(LabSuite.id).where(LabSuite.name == spec.name)):
        raise Conflict(f"suite {spec.name!r} already exists")
    suite = LabSuite(name=spec.name, query=spec.query, description=spec.description)
    session.add(suite)
    session.flush()
    record_change(session, "create", "devicelab_suite", suite.id, after=spec.model_dump())
    emit(session, "devicelab.suite.created", "devicelab_suite", suite.id, {"name": suite.name})
    return suite


def get_suite(*, session: Session, ref: int | str) -> LabSuite:
    return get_by_ref(session, LabSuite, ref, label="suite")


def list_suites(*, session: Session, params: ListParams) -> PageResult:
    return paginate(session, select(LabSuite), params, key=LabSuite.id)
