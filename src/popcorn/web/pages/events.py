"""Events pages: recent events and the rules they matched, one event with its actions,
incidents, and the rule editor (YAML in a textarea, loaded all or nothing by the events
service: a rule that does not parse is shown with its line and reason, and the active
version stays)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from popcorn.db import session_scope
from popcorn.errors import InvalidInput, PopcornError
from popcorn.events import queries, rulebook
from popcorn.events.schemas import ActionRunRead, EventRead, IncidentRead, MatchRead
from popcorn.listing import ListParams
from popcorn.web import auth as console_auth
from popcorn.web import helpers
from popcorn.web.views import OVERVIEW_PANELS, bp

EVENT_FILTERS = ("type", "source", "status")
EDITOR_FILE = "console"  # the file name rule errors mention
NEW_RULE = """\
name: my-team/disk-full
description: Page storage on-call when a cache disk fills up.
events: [alertmanager.alert.firing]
mode: monitor            # enforce | monitor | off
conditions:
  labels.alertname: DiskFull
  labels.severity: [critical, page]
actions:
  - type: incident
    params:
      key: "disk-full/{{ labels.instance }}"
      title: "Disk full on {{ labels.instance }}"
      severity: "{{ labels.severity }}"
"""
SAMPLE_EVENT = """\
{"specversion": "1.0", "id": "sample-1", "source": "console", "type": "alertmanager.alert.firing",
 "time": "2026-03-02T10:00:00Z", "alertname": "DiskFull", "severity": "critical",
 "instance": "oca-ams1-01"}
"""


def _dump(schema: Any, row: Any) -> dict[str, Any]:
    data: dict[str, Any] = schema.model_validate(row).model_dump(mode="json")
    return data


def _matches_by_event(session: Session, event_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Which rules matched each of these events."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not event_ids:
        return out
    page = queries.list_matches(
        session=session,
        params=ListParams(limit=1000, filters={"event_id__in": [",".join(map(str, event_ids))]}),
    )
    for match in page.items:
        out[match.event_id].append(_dump(MatchRead, match))
    return out


@bp.get("/events")
def events() -> Any:
    form = {k: request.args.get(k, "").strip() for k in ("q", *EVENT_FILTERS)}
    filters = {k: [v] for k, v in form.items() if v and k != "q"}
    error = None
    rows: list[dict[str, Any]] = []
    with session_scope(readonly=True) as session:
        try:
            found = queries.recent_events(
                session=session, params=ListParams(limit=50, filters=filters, q=form["q"] or None)
            )
            rows = [_dump(EventRead, e) for e in found]
        except PopcornError as exc:
            error = helpers.error_details(exc)
        matched = _matches_by_event(session, [r["id"] for r in rows])
        stats = queries.stats(session=session)
        failed = helpers.newest(
            lambda params: queries.list_action_runs(
                session=session, params=params, dead_letters=True
            ),
            size=10,
        )
        failed["items"] = [_dump(ActionRunRead, r) for r in failed["items"]]
    for row in rows:
        row["matches"] = matched.get(row["id"], [])
    return render_template(
        "events/index.html",
        form=form,
        searching=any(form.values()),
        rows=rows,
        stats=stats,
        failed=failed,
        error=error,
    ), 422 if error else 200


@bp.get("/events/<int:event_id>")
def events_event(event_id: int) -> str:
    with session_scope(readonly=True) as session:
        row = queries.get_event(session=session, ref=event_id)
        detail = queries.event_detail(session=session, row=row)
    return render_template("events/event.html", event=detail)


@bp.post("/events/actions/<int:run_id>/replay")
@console_auth.needs("operator")
def events_replay(run_id: int) -> Any:
    try:
        with session_scope() as session:
            run = queries.replay_action(session=session, run_id=run_id)
            status = run.status
    except PopcornError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Action run {run_id} replayed: {status}.", "ok")
    return redirect(request.form.get("back") or url_for("web.events"))


# --- rules ------------------------------------------------------------------------------


@bp.get("/events/rules")
def events_rules() -> str:
    with session_scope(readonly=True) as session:
        rules = rulebook.list_rules(session=session, include_inactive=True)
    return render_template("events/rules.html", rules=rules)


def _rule_page(
    name: str | None,
    text: str | None = None,
    error: Any = None,
    sample: str = "",
    tried: Any = None,
) -> tuple[str, int]:
    """The rule page (or the new-rule page) with the editor holding `text`."""
    rule = None
    recent: list[dict[str, Any]] = []
    with session_scope(readonly=True) as session:
        if name is not None:
            rule = rulebook.show_rule(session=session, name=name)
            listing = helpers.newest(
                lambda params: queries.list_matches(session=session, params=params),
                {"rule": [name]},
                size=20,
            )
            recent = [_dump(MatchRead, m) for m in listing["items"]]
    if text is None:
        text = rule["source"] if rule and rule["source"] else NEW_RULE
    status = 422 if error else 200
    return render_template(
        "events/rule.html",
        rule=rule,
        text=text,
        error=error,
        recent=recent,
        sample=sample or SAMPLE_EVENT,
        tried=tried,
    ), status


@bp.get("/events/rules/<path:name>")
def events_rule(name: str) -> tuple[str, int]:
    return _rule_page(name)


@bp.get("/events/new-rule")
@console_auth.needs("operator")
def events_rule_new() -> tuple[str, int]:
    return _rule_page(None)


@bp.post("/events/rules")
@console_auth.needs("operator")
def events_rules_save() -> Any:
    """Save the editor's YAML, or (the other button) try it on a sample event."""
    name = request.form.get("name") or None
    text = request.form.get("text", "").replace("\r\n", "\n")
    if request.form.get("do") == "test":
        return _try_rules(name, text, request.form.get("sample", ""))
    try:
        if not text.strip():
            raise InvalidInput("the editor is empty: write a rule in YAML", details={"line": 1})
        with session_scope() as session:
            result = rulebook.store_rules(session=session, files=[(EDITOR_FILE, text)])
    except PopcornError as exc:
        return _rule_page(name, text, helpers.error_details(exc))
    for change in result.rules:
        if change["change"] == "unchanged":
            flash(f"Rule {change['name']} is unchanged (version {change['version']}).", "ok")
        else:
            flash(f"Rule {change['name']} {change['change']}: version {change['version']}.", "ok")
    if len(result.rules) == 1:
        return redirect(url_for("web.events_rule", name=result.rules[0]["name"]))
    return redirect(url_for("web.events_rules"))


def _try_rules(name: str | None, text: str, sample: str) -> tuple[str, int]:
    """Which of the editor's rules a sample event would match, and why (nothing is stored)."""
    try:
        try:
            obj = json.loads(sample)
        except ValueError as exc:
            raise InvalidInput(f"sample event: not JSON ({exc})") from None
        events_ = rulebook.events_from_sample(obj)
        with session_scope(readonly=True) as session:
            tried = rulebook.explain(session=session, events=events_, rules_text=text)
    except PopcornError as exc:
        return _rule_page(name, text, helpers.error_details(exc), sample)
    return _rule_page(name, text, None, sample, tried)


@bp.post("/events/rules/<path:name>/activate")
@console_auth.needs("operator")
def events_rule_activate(name: str) -> Any:
    raw = request.form.get("version", "")
    try:
        with session_scope() as session:
            rulebook.activate_rule_version(
                session=session, name=name, version=int(raw) if raw.isdigit() else 0
            )
    except PopcornError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Version {raw} of {name} is active.", "ok")
    return redirect(url_for("web.events_rule", name=name))


@bp.post("/events/rules/<path:name>/deactivate")
@console_auth.needs("operator")
def events_rule_deactivate(name: str) -> Any:
    try:
        with session_scope() as session:
            rulebook.deactivate_rule(session=session, name=name)
    except PopcornError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Rule {name} is off; activate a version to bring it back.", "ok")
    return redirect(url_for("web.events_rule", name=name))


# --- incidents ----------------------------------------------------------------------------


@bp.get("/events/incidents")
def events_incidents() -> str:
    status = request.args.get("status", "open")
    filters = {"status": [status]} if status else {}
    with session_scope(readonly=True) as session:
        listing = helpers.newest(
            lambda params: queries.list_incidents(session=session, params=params),
            filters,
            page=helpers.page_number(request.args),
        )
    listing["items"] = [_dump(IncidentRead, i) for i in listing["items"]]
    return render_template("events/incidents.html", incidents=listing, status=status)


@bp.get("/events/incidents/<int:incident_id>")
def events_incident(incident_id: int) -> str:
    with session_scope(readonly=True) as session:
        incident = queries.get_incident(session=session, incident_id=incident_id)
        detail = queries.incident_detail(session=session, incident=incident)
    return render_template("events/incident.html", incident=detail)


@bp.post("/events/incidents/<int:incident_id>/resolve")
@console_auth.needs("operator")
def events_incident_resolve(incident_id: int) -> Any:
    try:
        with session_scope() as session:
            queries.resolve_incident(session=session, incident_id=incident_id)
    except PopcornError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Incident {incident_id} resolved.", "ok")
    return redirect(url_for("web.events_incident", incident_id=incident_id))


def events_panel(session: Session) -> dict[str, Any]:
    stats = queries.stats(session=session)
    rows: list[tuple[str, Any, str | None]] = []
    if stats["open_incidents"]:
        rows.append(("open incidents", stats["open_incidents"], url_for("web.events_incidents")))
    if stats["failed_actions"]:
        rows.append(("failed actions", stats["failed_actions"], url_for("web.events")))
    if stats["pending_events"]:
        rows.append(("events waiting", stats["pending_events"], None))
    for event in queries.recent_events(session=session, params=ListParams(limit=6)):
        rows.append(
            (
                event.type,
                helpers.ago(event.received_at),
                url_for("web.events_event", event_id=event.id),
            )
        )
    return {
        "title": "Recent events",
        "link": url_for("web.events"),
        "rows": rows,
        "empty": "No events received yet.",
    }


OVERVIEW_PANELS.append(events_panel)
