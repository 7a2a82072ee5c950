"""Events API: ingest (CloudEvents, Alertmanager), search, rules, actions, incidents."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import request
from pydantic import ValidationError

from popcorn import metrics
from popcorn.app import role
from popcorn.auth import ROLE_RANK
from popcorn.context import current_actor
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.events import queries, rulebook, service, webhook_secrets
from popcorn.events import settings as event_settings
from popcorn.events.schemas import (
    ActionRunPage,
    ActionRunRead,
    Deleted,
    EventDetail,
    EventPage,
    EventRead,
    IncidentDetail,
    IncidentPage,
    IncidentRead,
    IngestAnswer,
    MatchPage,
    MatchRead,
    RuleActivate,
    RuleChange,
    RuleDetail,
    RulePage,
    RulesLoad,
    RulesLoaded,
    RulesTest,
    RulesTestAnswer,
    RuleVersionRead,
    SecretCreated,
    SecretPage,
    SecretSet,
    SettingsRead,
    SettingsUpdate,
)
from popcorn.listing import PageResult, parse_list_params

bp = APIBlueprint("events", __name__, tag="events")
metrics.SCRAPE_COLLECTORS.append(queries.collect_metrics)


# --- ingest ---------------------------------------------------------------------------


@bp.post("")
@bp.output(IngestAnswer, status_code=202)
@bp.doc(
    summary="Accept CloudEvents 1.0 (structured JSON, one event or a batch)",
    description="Content types `application/cloudevents+json`, "
    "`application/cloudevents-batch+json` or `application/json` (an object with "
    "`specversion`, or an array). Events are stored before the answer (202); an event "
    "whose source and id were seen before is reported as a duplicate and not processed "
    "again. Malformed input is a 422 naming the field path (`details.path`).",
)
def ingest() -> dict[str, Any]:
    with session_scope() as session:
        result = service.ingest_body(
            session=session, body=request.get_data(cache=False), content_type=request.content_type
        )
    return result.as_dict()


@bp.post("/alertmanager")
@bp.output(IngestAnswer, status_code=202)
@bp.doc(
    summary="Prometheus Alertmanager webhook receiver (payload version 4)",
    description="Point an Alertmanager `webhook_configs` entry here with a Popcorn token "
    "(operator role) as `http_config.authorization.credentials`. Each alert becomes an "
    "event `alertmanager.alert.firing` or `.resolved` whose id is derived from the "
    "fingerprint, start time and status and whose source is `alertmanager`, so "
    "re-delivered notifications, and the same alert from every replica of an HA "
    "Alertmanager cluster, are duplicates.",
)
def alertmanager() -> dict[str, Any]:
    with session_scope() as session:
        result = service.ingest_alertmanager(session=session, body=request.get_data(cache=False))
    return result.as_dict()


@bp.get("")
@bp.output(EventPage)
@bp.doc(
    summary="Search stored events",
    description="Filters: type, source, subject, status, origin, event_id, hops, "
    "time__gte/__lte, received_at__gte/__lte (and every NetBox-style lookup), "
    "`label=key:value` (repeat: all must hold), `q` (text in data, labels, subject, type).",
)
def list_events() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return queries.list_events(session=session, params=params).serialize(EventRead)


# --- matches, action runs, dead letters ---------------------------------------------------


@bp.get("/matches")
@bp.output(MatchPage)
@bp.doc(summary="Rule matches (filters: rule, event_id, mode, acted, suppressed)")
def list_matches() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return queries.list_matches(session=session, params=params).serialize(MatchRead)


@bp.get("/actions")
@bp.output(ActionRunPage)
@bp.doc(
    summary="Action runs (filters: status, type, rule, event_id)",
    description="Webhook replies and header values are shown to operators and admins only.",
)
def list_actions() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        page = queries.list_action_runs(session=session, params=params)
        return _visible_runs(page.serialize(ActionRunRead))


@bp.get("/actions/<int:run_id>")
@bp.output(ActionRunRead)
@bp.doc(summary="One action run: rendered parameters, attempts, error, response")
def show_action(run_id: int) -> Any:
    with session_scope(readonly=True) as session:
        run = queries.get_action_run(session=session, run_id=run_id)
        data = ActionRunRead.model_validate(run).model_dump(mode="json")
    return queries.visible_run(data, full=_operator())


@bp.get("/dead-letters")
@bp.output(ActionRunPage)
@bp.doc(summary="Failed action runs (webhooks that exhausted their retries, and others)")
def list_dead_letters() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        result = queries.list_action_runs(session=session, params=params, dead_letters=True)
        return _visible_runs(result.serialize(ActionRunRead))


@bp.post("/dead-letters/<int:run_id>/replay")
@bp.output(ActionRunRead)
@bp.doc(summary="Run a failed action again with its rendered parameters")
def replay_dead_letter(run_id: int) -> Any:
    with session_scope() as session:
        return queries.replay_action(session=session, run_id=run_id)


# --- rules ------------------------------------------------------------------------------


@bp.get("/rules")
@bp.output(RulePage)
@bp.doc(summary="Rules with their active version (`?all=true` includes inactive ones)")
def list_rules() -> dict[str, Any]:
    include = request.args.get("all", "").lower() in {"1", "true", "yes"}
    with session_scope(readonly=True) as session:
        rows = rulebook.list_rules(session=session, include_inactive=include)
    return PageResult.whole(rows).serialize()


@bp.post("/rules")
@bp.output(RulesLoaded)
@bp.doc(
    summary="Load rules from YAML (all or nothing)",
    description="Send YAML as the body (`Content-Type: application/yaml`, `?file=` names it "
    'in errors, `?prune=true`) or JSON `{"text": ..., "file": ..., "prune": ...}`. A changed '
    "rule gets a new active version; a rule that does not parse is a 422 with "
    "`details.line` and `details.reason`, and nothing changes.",
)
def load_rules() -> dict[str, Any]:
    if request.is_json:
        try:
            spec = RulesLoad.model_validate(request.get_json(silent=True))
        except ValidationError as exc:
            raise InvalidInput(
                "request validation failed",
                details={"fields": {".".join(map(str, e["loc"])): e["msg"] for e in exc.errors()}},
            ) from None
    else:
        text = request.get_data(as_text=True)
        if not text.strip():
            raise InvalidInput("body: send the rules as YAML text", details={"path": "body"})
        spec = RulesLoad(
            text=text,
            file=request.args.get("file", "<api>"),
            prune=request.args.get("prune", "").lower() in {"1", "true", "yes"},
        )
    with session_scope() as session:
        result = rulebook.store_rules(
            session=session, files=[(spec.file, spec.text)], prune=spec.prune
        )
    return result.as_dict()


@bp.post("/rules/test")
@bp.input(RulesTest, arg_name="body")
@bp.output(RulesTestAnswer)
@bp.doc(summary="Which rules would match a sample event, and why (nothing is stored or run)")
def test_rules(body: RulesTest) -> dict[str, Any]:
    events = rulebook.events_from_sample(body.event)
    with session_scope(readonly=True) as session:
        return {"results": rulebook.explain(session=session, events=events, rules_text=body.rules)}


@bp.get("/rules/<path:name>")
@bp.output(RuleDetail)
@bp.doc(summary="A rule: active source, parsed summary and every version")
def show_rule(name: str) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return rulebook.show_rule(session=session, name=name)


@bp.get("/rules/<path:name>/versions/<int:version>")
@bp.output(RuleVersionRead)
@bp.doc(summary="One stored version of a rule, with its YAML")
def show_rule_version(name: str, version: int) -> Any:
    with session_scope(readonly=True) as session:
        return rulebook.get_rule_version(session=session, name=name, version=version)


@bp.post("/rules/<path:name>/activate")
@bp.input(RuleActivate, arg_name="body")
@bp.output(RuleChange)
@bp.doc(summary="Make a stored version active (roll back, or bring back a deactivated rule)")
def activate_rule(name: str, body: RuleActivate) -> dict[str, Any]:
    with session_scope() as session:
        return rulebook.activate_rule_version(session=session, name=name, version=body.version)


@bp.delete("/rules/<path:name>")
@bp.output(RuleChange)
@bp.doc(summary="Deactivate a rule (its versions are kept)")
def deactivate_rule(name: str) -> dict[str, Any]:
    with session_scope() as session:
        return rulebook.deactivate_rule(session=session, name=name)


# --- incidents --------------------------------------------------------------------------


@bp.get("/incidents")
@bp.output(IncidentPage)
@bp.doc(summary="Incidents opened by rules (filters: status, key, severity, rule; q in title)")
def list_incidents() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return queries.list_incidents(session=session, params=params).serialize(IncidentRead)


@bp.get("/incidents/<int:incident_id>")
@bp.output(IncidentDetail)
@bp.doc(summary="An incident with the events attached to it")
def show_incident(incident_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        incident = queries.get_incident(session=session, incident_id=incident_id)
        return queries.incident_detail(session=session, incident=incident)


@bp.post("/incidents/<int:incident_id>/resolve")
@bp.output(IncidentRead)
@bp.doc(summary="Resolve an open incident by hand")
def resolve_incident(incident_id: int) -> Any:
    with session_scope() as session:
        return queries.resolve_incident(session=session, incident_id=incident_id)


# --- secrets and settings -----------------------------------------------------------------


@bp.get("/secrets")
@role("admin")
@bp.output(SecretPage)
@bp.doc(summary="Webhook signing secrets (names and allowed targets, never values)")
def list_secrets() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        rows = webhook_secrets.list_secrets(session=session)
    return PageResult.whole(rows).serialize()


@bp.put("/secrets/<name>")
@role("admin")
@bp.input(SecretSet, arg_name="body")
@bp.output(SecretCreated)
@bp.doc(
    summary="Set a webhook signing secret (generated if no value; shown in this answer only)",
    description="Actions name a secret with `params.secret`; without one, webhooks are signed "
    "with the secret named `default` if it exists. A secret signs only deliveries whose URL "
    "matches one of its `allowed_targets` (URL prefixes or host names).",
)
def set_secret(name: str, body: SecretSet) -> dict[str, Any]:
    with session_scope() as session:
        value = webhook_secrets.set_secret(
            session=session, name=name, value=body.value, allowed_targets=body.allowed_targets
        )
        targets = webhook_secrets.normalize_targets(body.allowed_targets)
    return {"name": name, "secret": value, "allowed_targets": targets}


@bp.delete("/secrets/<name>")
@role("admin")
@bp.output(Deleted)
@bp.doc(summary="Delete a signing secret")
def delete_secret(name: str) -> dict[str, Any]:
    with session_scope() as session:
        webhook_secrets.delete_secret(session=session, name=name)
    return {"name": name, "deleted": True}


@bp.get("/settings")
@bp.output(SettingsRead)
@bp.doc(summary="Retention and loop protection settings")
def show_settings() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return event_settings.get_settings_view(session=session)


@bp.patch("/settings")
@role("admin")
@bp.input(SettingsUpdate, arg_name="body")
@bp.output(SettingsRead)
@bp.doc(summary="Change the retention period (days)")
def update_settings(body: SettingsUpdate) -> dict[str, Any]:
    with session_scope() as session:
        return event_settings.update_settings(session=session, retention_days=body.retention_days)


# --- one event -----------------------------------------------------------------------------


@bp.get("/<ref>")
@bp.output(EventDetail)
@bp.doc(
    summary="One event, what matched it and what each action did",
    description="`ref` is Popcorn's numeric id, or the sender's event id if only one "
    "source used it.",
)
def show_event(ref: str) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        row = queries.get_event(session=session, ref=ref)
        detail = queries.event_detail(session=session, row=row)
    full = _operator()
    for match in detail["matches"]:
        match["actions"] = [queries.visible_run(run, full=full) for run in match["actions"]]
    return detail


def _operator() -> bool:
    """Is the caller an operator or admin (who may read webhook replies and headers)?"""
    return ROLE_RANK.get(current_actor().role, 0) >= ROLE_RANK["operator"]


def _visible_runs(page: dict[str, Any]) -> dict[str, Any]:
    full = _operator()
    page["items"] = [queries.visible_run(item, full=full) for item in page["items"]]
    return page
