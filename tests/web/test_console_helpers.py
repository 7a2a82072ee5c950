"""What every console page relies on: newest-first paging, times, and schema forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from popcorn.errors import InvalidInput
from popcorn.listing import ListParams, PageResult
from popcorn.web import forms, helpers


def fake_list(rows: list[int]) -> object:
    """A service list: ascending ids, offset paging, a count."""

    def fetch(params: ListParams) -> PageResult:
        start = params.offset or 0
        return PageResult(items=rows[start : start + params.limit], count=len(rows), next=None)

    return fetch


def test_newest_pages_walk_backwards_through_everything() -> None:
    rows = list(range(1, 8))
    first = helpers.newest(fake_list(rows), page=1, size=3)  # type: ignore[arg-type]
    assert first["items"] == [7, 6, 5] and first["pages"] == 3 and first["count"] == 7
    assert helpers.newest(fake_list(rows), page=2, size=3)["items"] == [4, 3, 2]  # type: ignore[arg-type]
    last = helpers.newest(fake_list(rows), page=9, size=3)  # type: ignore[arg-type]
    assert last["page"] == 3 and last["items"] == [1]
    empty = helpers.newest(fake_list([]), page=1, size=3)  # type: ignore[arg-type]
    assert empty["items"] == [] and empty["pages"] == 1


def test_times_and_durations_read_naturally() -> None:
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert helpers.ago(now - timedelta(minutes=5), now) == "5 min ago"
    assert helpers.ago(now + timedelta(days=3), now) == "in 3 days"
    assert helpers.ago(now, now) == "just now" and helpers.ago(None) == "never"
    assert helpers.fmt_time("2026-03-02T10:00:00+00:00") == "2026-03-02 10:00:00"
    assert (
        helpers.fmt_time(1_772_445_600) == "2026-03-02 10:00:00" and helpers.fmt_time(None) == "—"
    )
    assert helpers.fmt_duration(0.25) == "250 ms" and helpers.fmt_duration(120) == "2 min"
    assert helpers.fmt_duration(86400) == "24 h" and helpers.fmt_duration(3 * 86400) == "3 days"
    assert str(helpers.breakable('a.b{c="<x>"}')) == "a.<wbr>b{<wbr>c=<wbr>&#34;&lt;x&gt;&#34;}"


SCHEMA = {
    "properties": {
        "ticket": {"type": "string", "pattern": "^CHG-\\d+$"},
        "minutes": {"type": "integer", "default": 30, "maximum": 240},
        "force": {"type": "boolean", "default": False},
        "hosts": {"type": "array", "items": {"type": "string"}},
        "mode": {"$ref": "#/$defs/Mode"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    },
    "required": ["ticket"],
    "$defs": {"Mode": {"enum": ["fast", "safe"], "type": "string"}},
}


def test_schema_forms_show_fields_and_read_them_back_typed() -> None:
    fields = {f["name"]: f for f in forms.schema_fields(SCHEMA)}
    assert fields["ticket"]["required"] and "pattern" in fields["ticket"]["help"]
    assert fields["minutes"]["kind"] == "integer" and "≤ 240" in fields["minutes"]["help"]
    assert fields["mode"]["choices"] == ["fast", "safe"]
    assert fields["note"]["kind"] == "string" and fields["note"]["nullable"]
    form = {
        "p.ticket": "CHG-1",
        "p.minutes": "45",
        "p.force": "true",
        "p.hosts": "a, b",
        "p.mode": "safe",
        "p.note": "",
    }
    assert forms.parse_schema_form(SCHEMA, form, "p.") == {
        "ticket": "CHG-1",
        "minutes": 45,
        "force": True,
        "hosts": ["a", "b"],
        "mode": "safe",
    }
    with pytest.raises(InvalidInput, match="minutes: 'soon' is not a valid integer"):
        forms.parse_schema_form(SCHEMA, {"p.minutes": "soon"}, "p.")
