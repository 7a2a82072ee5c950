"""NetBox cables to circuit terminations and power feeds: made together after the IPAM,
circuit and power records, re-cabled when a newer dump moves them, refused whole when one
breaks a rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from netbox_dumps import CT, dump  # type: ignore[import-not-found]

from popcorn.audit import AuditRecord
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory import models as m
from popcorn.inventory.ipam.models import CircuitTermination, PowerFeed
from popcorn.inventory.netbox import import_netbox


def write(tmp_path: Path, records: list[dict[str, Any]], name: str) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def retarget(records: list[dict[str, Any]], cable: int, end: str, ctype: int, pk: int) -> None:
    """Point one end of a 4.x cable at another NetBox object."""
    ends = [r["fields"] for r in records if r["model"] == "dcim.cabletermination"]
    for fields in ends:
        if (fields["cable"], fields["cable_end"]) == (cable, end):
            fields.update(termination_type=ctype, termination_id=pk)


def linked(session: Any, model: Any) -> dict[str, int | None]:
    return {row.name: row.link_id for row in session.query(model)}


def test_a_newer_dump_moves_a_circuit_cable_to_another_interface(tmp_path: Path) -> None:
    first = dump("4.2", extra_interface=True)
    with session_scope() as session:
        done = import_netbox(session=session, path=write(tmp_path, first, "a.json"))
    assert done.result.counts["links"]["create"] == 3
    with session_scope(readonly=True) as session:
        old_link = session.query(CircuitTermination).one().link_id
        assert old_link is not None
        ports = linked(session, m.Interface)
        assert ports["et-0/0/1"] == old_link and ports["et-0/0/2"] is None
        feed_link = session.query(PowerFeed).one().link_id
        created = session.query(AuditRecord).filter_by(object_type="link", action="create")
        assert {r.after["b_type"] for r in created} >= {"circuit_termination", "power_feed"}  # type: ignore[index]

    with session_scope() as session:  # the same dump: every cable unchanged
        again = import_netbox(session=session, path=write(tmp_path, first, "a.json"))
    assert again.result.counts["links"] == {"create": 0, "update": 0, "unchanged": 3}

    moved = dump("4.2", extra_interface=True)
    retarget(moved, 2, "A", CT["dcim.interface"], 6)  # the IX circuit onto et-0/0/2
    with session_scope() as session:
        found = import_netbox(session=session, path=write(tmp_path, moved, "b.json"))
    assert found.result.counts["links"]["create"] == 1
    assert found.result.counts["links"]["unchanged"] == 2
    with session_scope(readonly=True) as session:
        new_link = session.query(CircuitTermination).one().link_id
        ports = linked(session, m.Interface)
        assert ports["et-0/0/1"] is None and ports["et-0/0/2"] == new_link != old_link
        assert session.get(m.Link, old_link) is None
        link = session.get(m.Link, new_link)
        assert link is not None and (link.a_type, link.b_type) == (
            "interface",
            "circuit_termination",
        )
        assert session.query(PowerFeed).one().link_id == feed_link
        deleted = session.query(AuditRecord).filter_by(object_type="link", action="delete").one()
        assert deleted.object_id == str(old_link)


def test_cables_that_break_a_rule_are_all_named_and_nothing_is_written(tmp_path: Path) -> None:
    records = dump("4.2")
    retarget(records, 2, "A", CT["dcim.interface"], 1)  # already cabled to the appliance
    retarget(records, 3, "A", CT["dcim.consoleport"], 1)  # a feed to a console port
    with pytest.raises(InvalidInput) as refused, session_scope() as session:
        import_netbox(session=session, path=write(tmp_path, records, "bad.json"))
    errors = {e["where"]: e["message"] for e in refused.value.details["errors"]}
    assert "already connected" in errors["dcim.cable 2"]
    assert "'et-0/0/0' on 'mx1-ams1'" in errors["dcim.cable 2"]
    assert "is not a power-port" in errors["dcim.cable 3"]
    with session_scope(readonly=True) as session:
        assert session.query(m.Device).count() == 0
        assert session.query(m.Link).count() == 0
        assert session.query(PowerFeed).count() == 0


def test_a_cable_twice_on_one_end_is_refused(tmp_path: Path) -> None:
    records = dump("4.2")
    retarget(records, 3, "A", CT["dcim.powerport"], 1)
    retarget(records, 2, "A", CT["dcim.powerport"], 1)  # circuit cable onto the same PEM0
    retarget(records, 2, "B", CT["dcim.powerfeed"], 1)  # ...and the same feed
    with pytest.raises(InvalidInput) as refused, session_scope() as session:
        import_netbox(session=session, path=write(tmp_path, records, "twice.json"))
    messages = [e["message"] for e in refused.value.details["errors"]]
    assert any("cabled twice" in message for message in messages), messages
    with session_scope(readonly=True) as session:
        assert session.query(m.Link).count() == 0
