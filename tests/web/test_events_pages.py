"""Events pages: recent events and matched rules, event detail, incidents, the rule editor."""

from __future__ import annotations

from collections.abc import Callable

from console_kit import RULES, Console, events_world, text_of

from popcorn.db import session_scope
from popcorn.events import queries, rulebook
from popcorn.listing import ListParams


def test_fresh_install_shows_how_to_send_events(console: Callable[[str], Console]) -> None:
    ui = console("viewer")
    assert "No events received yet" in text_of(ui.page("/ui/events"))
    assert "No rules yet" in text_of(ui.page("/ui/events/rules"))
    assert "No open incidents" in text_of(ui.page("/ui/events/incidents"))


def test_recent_events_show_which_rules_matched(console: Callable[[str], Console]) -> None:
    disk, fan = events_world()
    ui = console("viewer")
    page = ui.page("/ui/events")
    rows = {row.split("</tr>")[0] for row in page.split("<tr>")[1:]}
    disk_row = next(r for r in rows if f"/ui/events/{disk}" in r)
    fan_row = next(r for r in rows if f"/ui/events/{fan}" in r)
    assert "disk/incident" in disk_row and "disk/watch" in disk_row
    assert "disk/" not in fan_row and "none" in fan_row  # a warning matches no rule
    found = text_of(ui.page("/ui/events?q=FanSlow"))
    assert found.count("alertmanager.alert.firing") == 1

    detail = text_of(ui.page(f"/ui/events/{disk}"))
    assert "disk/incident" in detail and "incident" in detail and "succeeded" in detail
    assert "not run in monitor mode" not in detail  # monitor actions are listed as skipped
    assert "skipped" in detail and "oca-ams1-01" in detail
    overview = text_of(ui.page("/ui/"))
    assert "Recent events" in overview and "open incidents 1" in overview


def test_incidents_list_and_resolve(console: Callable[[str], Console]) -> None:
    events_world()
    with session_scope(readonly=True) as session:
        (incident,) = queries.list_incidents(
            session=session, params=ListParams(filters={"status": ["open"]})
        ).items
    ui = console("viewer")
    assert "Cache disk full on oca-ams1-01" in text_of(ui.page("/ui/events/incidents"))
    page = text_of(ui.page(f"/ui/events/incidents/{incident.id}"))
    assert "disk/oca-ams1-01" in page and "Resolve" not in page
    assert ui.post(f"/ui/events/incidents/{incident.id}/resolve").status_code == 403
    operator = console("operator")
    assert operator.post(f"/ui/events/incidents/{incident.id}/resolve").status_code == 302
    assert "resolved" in text_of(operator.page(f"/ui/events/incidents/{incident.id}"))
    assert "No open incidents" in text_of(operator.page("/ui/events/incidents"))
    assert "404" in text_of(operator.page("/ui/events/incidents/999", status=404))


def test_rule_editor_saves_a_new_version(console: Callable[[str], Console]) -> None:
    events_world()
    ui = console("operator")
    page = ui.page("/ui/events/rules/disk/incident")
    assert "<textarea" in page and "CacheDiskFull" in page
    changed = RULES.split("- name: disk/watch")[0].replace("CacheDiskFull", "CacheDiskGone")
    text = "\n".join(line[2:] for line in changed.strip().splitlines())  # the first rule alone
    saved = ui.post("/ui/events/rules", {"name": "disk/incident", "text": text, "do": "save"})
    assert (
        saved.status_code == 302 and saved.headers["Location"] == "/ui/events/rules/disk/incident"
    )
    page = text_of(ui.page("/ui/events/rules/disk/incident"))
    assert "Rule disk/incident updated: version 2." in page
    with session_scope(readonly=True) as session:
        rule = rulebook.show_rule(session=session, name="disk/incident")
    assert rule["active_version"] == 2 and "CacheDiskGone" in rule["source"]
    rolled = ui.post("/ui/events/rules/disk/incident/activate", {"version": "1"})
    assert rolled.status_code == 302
    with session_scope(readonly=True) as session:
        assert rulebook.show_rule(session=session, name="disk/incident")["active_version"] == 1


def test_a_rule_that_does_not_parse_shows_line_and_reason_and_changes_nothing(
    console: Callable[[str], Console],
) -> None:
    events_world()
    ui = console("operator")
    broken = (
        "name: disk/incident\nevents: [alertmanager.alert.*]\nconditions:\n  labels.x: {bogus: 1}\n"
    )
    refused = ui.post("/ui/events/rules", {"name": "disk/incident", "text": broken, "do": "save"})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    page = text_of(html)
    assert "line 4" in page and "bogus" in page
    assert "labels.x: {bogus: 1}" in page  # the editor keeps what was typed
    with session_scope(readonly=True) as session:
        rule = rulebook.show_rule(session=session, name="disk/incident")
    assert rule["active_version"] == 1 and "CacheDiskFull" in rule["source"]
    bad_yaml = ui.post("/ui/events/rules", {"text": "name: [unclosed\n", "do": "save"})
    assert bad_yaml.status_code == 422 and "line" in text_of(bad_yaml.get_data(as_text=True))


def test_rule_editor_tries_rules_on_a_sample_event(console: Callable[[str], Console]) -> None:
    ui = console("operator")
    assert "<textarea" in ui.page("/ui/events/new-rule")
    tried = ui.post(
        "/ui/events/rules",
        {
            "text": RULES,
            "do": "test",
            "sample": '{"specversion": "1.0", "id": "x", "source": "am", '
            '"type": "alertmanager.alert.firing", "alertname": "CacheDiskFull", '
            '"severity": "critical", "instance": "oca-1"}',
        },
    )
    assert tried.status_code == 200
    page = text_of(tried.get_data(as_text=True))
    assert page.count("matched") >= 2 and "disk/oca-1" in page
    with session_scope(readonly=True) as session:
        assert rulebook.list_rules(session=session, include_inactive=True) == []


def test_viewers_cannot_edit_rules(console: Callable[[str], Console]) -> None:
    events_world()
    viewer = console("viewer")
    page = viewer.page("/ui/events/rules/disk/incident")
    assert "<textarea" not in page and "CacheDiskFull" in page
    assert viewer.get("/ui/events/new-rule").status_code == 403
    refused = viewer.post("/ui/events/rules", {"text": RULES, "do": "save"})
    assert refused.status_code == 403
    operator = console("operator")
    assert operator.post("/ui/events/rules", {"text": RULES}, csrf=False).status_code == 400
    assert "no rule 'nope'" in text_of(viewer.page("/ui/events/rules/nope", status=404))
