"""The storage pack's steps on their own: degradation without inventory, verification."""

from __future__ import annotations

from typing import Any

import pytest
from remediation_kit import make_devices

from popcorn import domains
from popcorn.db import session_scope
from popcorn.remediation.engine import StepContext, StepFailed, call_step
from popcorn.remediation.packs.storage import DiskFailure, DiskFailureInputs

DECISION = {"failed": [{"device": "oca-1", "site": "lax1", "disk": "sdb", "reasons": ["bad"]}]}


def context(step: str, **inputs: Any) -> StepContext:
    return StepContext(
        execution_id=1,
        runbook="storage.disk_failure",
        step=step,
        kind="remediate",
        attempt=1,
        inputs=DiskFailureInputs(**inputs),
        outputs={"decide": DECISION},
        targets=[{"name": "oca-1", "site": "lax1"}],
        dry_run=False,
    )


def test_without_inventory_the_remediation_records_what_it_could_not_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(domains, "DOMAINS", [d for d in domains.DOMAINS if d != "inventory"])
    ctx = context("take_out_of_service")
    done = DiskFailure().take_out_of_service(ctx)
    assert done["components"] == [] and done["devices"] == []
    assert done["degraded"] == ["inventory service unavailable: disk and device status not changed"]
    assert ctx.logs[0]["level"] == "warning"
    with pytest.raises(StepFailed, match="cannot verify") as failed:
        DiskFailure().verify(context("verify"))
    assert failed.value.retry is False


def test_verify_insists_on_maintenance_and_a_failed_disk() -> None:
    make_devices("oca-1")
    spec = DiskFailure.step_named("verify")
    outcome = call_step(DiskFailure, spec, context("verify"))
    assert outcome.status == "failed" and outcome.retry
    assert outcome.error == "oca-1 is 'active' in inventory, not 'maintenance'"
    DiskFailure().take_out_of_service(context("take_out_of_service"))
    outcome = call_step(DiskFailure, spec, context("verify"))
    assert outcome.status == "succeeded"
    assert outcome.outputs == {
        "verified": [{"device": "oca-1", "status": "maintenance", "failed_disks": ["sdb"]}]
    }
    # Running the remediation twice (a retry after a lost worker) changes nothing more.
    again = DiskFailure().take_out_of_service(context("take_out_of_service"))
    assert again["devices"] == [{"device": "oca-1", "status": "maintenance"}]
    from popcorn.audit import AuditRecord

    with session_scope(readonly=True) as session:
        changes = session.query(AuditRecord).filter(AuditRecord.object_type == "device").count()
    assert changes == 2  # created, then set to maintenance once


def test_shift_requests_name_the_site_and_device_unless_turned_off() -> None:
    ctx = context("shift_traffic")
    assert DiskFailure().shift_traffic(ctx) == {"requested": [{"site": "lax1", "device": "oca-1"}]}
    assert ctx.events == [
        (
            "remediation.traffic.shift_requested",
            {"site": "lax1", "device": "oca-1", "reason": "disk failure alert", "disks": ["sdb"]},
        )
    ]
    quiet = context("shift_traffic", shift_traffic=False)
    assert DiskFailure().shift_traffic(quiet) == {"requested": []} and not quiet.events
