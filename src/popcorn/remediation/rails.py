"""Safety rails: concurrency limits, the global remediation budget and its circuit breaker.

Concurrency is enforced in the database, not in a worker's memory: each key
(`runbook:<name>`, `target:<device>`) has a gate row that admission locks
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's writer lock serializes the
same way), then counts granted holds. Two starts racing for the last slot
are therefore ordered, and exactly one wins. Executions over the limit are
queued FIFO (a hold not yet granted) or dropped, per the runbook's policy;
releasing holds at the end of an execution admits the waiters that now fit.

The budget counts remediate steps started in a sliding window; the one that
would exceed it trips the circuit instead of running: automation stops
(remediate steps and new non-dry-run executions are refused) until an admin
resets it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import dialect_insert, utcnow
from popcorn.errors import InvalidInput
from popcorn.outbox import emit
from popcorn.remediation.engine import Concurrency
from popcorn.remediation.models import Circuit, Gate, Hold, RunbookExecution, StepRun

GLOBAL = "global"
DEFAULT_BUDGET = 30
DEFAULT_WINDOW_SECONDS = 3600

Admission = Literal["admitted", "queued", "dropped"]


# --- concurrency ---------------------------------------------------------------------------


def wanted_keys(
    runbook: str, concurrency: Concurrency, targets: list[dict[str, Any]]
) -> list[tuple[str, int]]:
    keys: list[tuple[str, int]] = []
    if concurrency.max_runs is not None:
        keys.append((f"runbook:{runbook}", concurrency.max_runs))
    if concurrency.per_target is not None:
        names = sorted({str(t["name"]) for t in targets if t.get("name")})
        keys.extend((f"target:{name}", concurrency.per_target) for name in names)
    return sorted(keys)


def _lock_gates(session: Session, keys: list[str]) -> None:
    """Create missing gate rows, then lock all of them in key order (no deadlocks)."""
    if not keys:
        return
    now = utcnow()
    session.execute(
        dialect_insert(session, Gate)
        .values([{"key": key, "created_at": now} for key in keys])
        .on_conflict_do_nothing(index_elements=["key"])
    )
    session.execute(select(Gate.key).where(Gate.key.in_(keys)).order_by(Gate.key).with_for_update())


def _fits(session: Session, execution_id: int, keys: list[tuple[str, int]]) -> bool:
    for key, limit in keys:
        granted = session.scalar(
            select(func.count(Hold.id)).where(
                Hold.key == key, Hold.granted.is_(True), Hold.execution_id != execution_id
            )
        )
        if int(granted or 0) >= limit:
            return False
    return True


def admit(
    session: Session,
    execution: RunbookExecution,
    concurrency: Concurrency,
    keys: list[tuple[str, int]],
) -> Admission:
    """Grant the execution its slots now, or queue it behind earlier waiters, or drop it."""
    if not keys:
        return "admitted"
    _lock_gates(session, [k for k, _ in keys])
    waiting = session.scalar(
        select(func.count(Hold.id)).where(
            Hold.key.in_([k for k, _ in keys]),
            Hold.granted.is_(False),
            Hold.execution_id != execution.id,
        )
    )
    fits = not waiting and _fits(session, execution.id, keys)
    if not fits and concurrency.on_limit == "drop":
        return "dropped"
    for key, limit in keys:
        session.add(Hold(execution_id=execution.id, key=key, limit=limit, granted=fits))
    session.flush()
    return "admitted" if fits else "queued"


def release(session: Session, execution_id: int) -> list[int]:
    """Free an ending execution's slots; returns the queued executions now admitted."""
    keys = list(session.scalars(select(Hold.key).where(Hold.execution_id == execution_id)))
    if not keys:
        return []
    _lock_gates(session, sorted(set(keys)))
    session.execute(delete(Hold).where(Hold.execution_id == execution_id))
    waiters = list(
        session.scalars(
            select(Hold.execution_id)
            .where(Hold.key.in_(keys), Hold.granted.is_(False))
            .distinct()
            .order_by(Hold.execution_id)
            .limit(200)
        )
    )
    return admit_waiters(session, waiters)


def admit_waiters(session: Session, execution_ids: list[int]) -> list[int]:
    admitted: list[int] = []
    for waiter in execution_ids:
        holds = list(session.scalars(select(Hold).where(Hold.execution_id == waiter)))
        wanted = sorted((h.key, h.limit) for h in holds)
        _lock_gates(session, [k for k, _ in wanted])
        if _fits(session, waiter, wanted):
            session.execute(update(Hold).where(Hold.execution_id == waiter).values(granted=True))
            admitted.append(waiter)
    return admitted


def queued_with_free_slots(session: Session, limit: int = 200) -> list[int]:
    """Queued executions, oldest first (the housekeeping task re-checks them)."""
    return list(
        session.scalars(
            select(RunbookExecution.id)
            .where(RunbookExecution.status == "queued")
            .order_by(RunbookExecution.id)
            .limit(limit)
        )
    )


# --- budget and circuit breaker ---------------------------------------------------------------


def get_circuit(session: Session, *, lock: bool = False) -> Circuit:
    circuit = session.get(Circuit, GLOBAL, with_for_update=lock)
    if circuit is None:
        session.execute(
            dialect_insert(session, Circuit)
            .values(
                name=GLOBAL,
                state="closed",
                budget=DEFAULT_BUDGET,
                window_seconds=DEFAULT_WINDOW_SECONDS,
                reason="",
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )
        circuit = session.get(Circuit, GLOBAL, with_for_update=lock, populate_existing=True)
        assert circuit is not None
    return circuit


def spent(session: Session, circuit: Circuit, *, cap: int | None = None) -> int:
    """Remediate steps started in the window; counting stops at `cap` (the budget), so the
    check costs the same however busy the window was."""
    cutoff = utcnow() - timedelta(seconds=circuit.window_seconds)
    rows = select(StepRun.id).where(
        StepRun.kind == "remediate",
        StepRun.started_at >= cutoff,
        StepRun.status.not_in(("pending", "skipped")),
        StepRun.reused.is_(False),
    )
    if cap is not None:
        rows = rows.limit(cap)
    return int(session.scalar(select(func.count()).select_from(rows.subquery())) or 0)


def circuit_view(session: Session) -> dict[str, Any]:
    circuit = get_circuit(session)
    return {
        "state": circuit.state,
        "budget": circuit.budget,
        "window_seconds": circuit.window_seconds,
        "used": spent(session, circuit),
        "tripped_at": circuit.tripped_at,
        "reason": circuit.reason,
        "reset_by": circuit.reset_by,
        "reset_at": circuit.reset_at,
    }


def open_reason(session: Session) -> str | None:
    circuit = get_circuit(session)
    if circuit.state == "open":
        return f"the remediation circuit is open since {circuit.tripped_at}: {circuit.reason}"
    return None


def spend(session: Session, execution: RunbookExecution, step: str) -> str | None:
    """Take one remediation from the budget; the reason it is refused, or None."""
    circuit = get_circuit(session, lock=True)
    if circuit.state == "open":
        return (
            f"automation stopped: the remediation circuit is open since "
            f"{circuit.tripped_at.isoformat() if circuit.tripped_at else '?'} ({circuit.reason})"
        )
    used = spent(session, circuit, cap=circuit.budget)
    if used >= circuit.budget:
        reason = (
            f"{used} remediations in the last {circuit.window_seconds}s reached the budget of "
            f"{circuit.budget}; execution {execution.id} step {step!r} was refused"
        )
        trip(session, circuit, reason, execution_id=execution.id, used=used)
        return f"automation stopped: {reason}"
    return None


def trip(
    session: Session, circuit: Circuit, reason: str, *, execution_id: int | None, used: int
) -> None:
    before = {"state": circuit.state}
    circuit.state = "open"
    circuit.tripped_at = utcnow()
    circuit.reason = reason
    circuit.updated_at = utcnow()
    record_change(
        session,
        "trip",
        "remediation_circuit",
        GLOBAL,
        before=before,
        after={"state": "open", "reason": reason},
    )
    emit(
        session,
        "remediation.circuit.tripped",
        "remediation_circuit",
        GLOBAL,
        {
            "reason": reason,
            "budget": circuit.budget,
            "window_seconds": circuit.window_seconds,
            "used": used,
            "execution_id": execution_id,
        },
    )


def reset(session: Session) -> Circuit:
    circuit = get_circuit(session, lock=True)
    before = {"state": circuit.state, "reason": circuit.reason}
    circuit.state = "closed"
    circuit.reason = ""
    circuit.reset_by = current_actor().name
    circuit.reset_at = utcnow()
    circuit.updated_at = utcnow()
    record_change(
        session, "reset", "remediation_circuit", GLOBAL, before=before, after={"state": "closed"}
    )
    emit(
        session,
        "remediation.circuit.reset",
        "remediation_circuit",
        GLOBAL,
        {"by": circuit.reset_by, "previous_reason": before["reason"]},
    )
    return circuit


def configure(session: Session, *, budget: int | None, window_seconds: int | None) -> Circuit:
    if budget is not None and budget < 0:
        raise InvalidInput("budget: must be zero or more", details={"budget": budget})
    if window_seconds is not None and not 1 <= window_seconds <= 30 * 86400:
        raise InvalidInput(
            "window_seconds: must be between 1 and 2592000",
            details={"window_seconds": window_seconds},
        )
    circuit = get_circuit(session, lock=True)
    before = {"budget": circuit.budget, "window_seconds": circuit.window_seconds}
    if budget is not None:
        circuit.budget = budget
    if window_seconds is not None:
        circuit.window_seconds = window_seconds
    circuit.updated_at = utcnow()
    record_change(
        session,
        "update",
        "remediation_circuit",
        GLOBAL,
        before=before,
        after={"budget": circuit.budget, "window_seconds": circuit.window_seconds},
    )
    return circuit
