"""Stored rules: versions, the compiled rule set every worker shares, and explanations.

Rules are YAML stored as versions; each worker keeps one compiled `RuleSet`
keyed by a stamp that every rule change replaces, so rules are compiled once
per process and recompiled only when the active versions change. Storing is
all or nothing: if one rule of a delivery does not parse, nothing changes.
"""

from __future__ import annotations

import hashlib
import logging
import textwrap
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import jobs, safeyaml
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.events.formats import Event, EventFormatError, parse_payload
from popcorn.events.models import RuleRecord, RuleVersion
from popcorn.events.rules import Rule, RuleSet, RuleSyntaxError, parse_rules, rule_files, rule_nodes
from popcorn.events.settings import get_setting, put_setting
from popcorn.events.templating import TemplateError, event_context

log = logging.getLogger("popcorn.events")

RULES_STAMP = "rules_stamp"
RATE_PREFIX = "popcorn:events:rate:"


# --------------------------------------------------------------------------- rule state


class RedisRateState:
    """Throttle and dedupe memory shared by every worker: `SET key owner NX PX`.

    The owner is the stored event being processed, so re-processing the same
    event after a failed attempt is not mistaken for a repeat.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def owner(self) -> str | None:
        return getattr(self._local, "owner", None)

    @owner.setter
    def owner(self, value: str | None) -> None:
        self._local.owner = value

    def seen(self, key: str, window_s: float, now: float) -> bool:
        if window_s <= 0:
            return False
        redis = jobs.get_redis()
        name = RATE_PREFIX + key
        owner = self.owner
        if redis.set(name, owner or "-", nx=True, px=max(1, int(window_s * 1000))):
            return False
        if owner is None:
            return True
        current = redis.get(name)
        if isinstance(current, bytes):
            current = current.decode()
        return current != owner


@dataclass
class CompiledRules:
    stamp: str
    ruleset: RuleSet
    versions: dict[str, int]
    broken: dict[str, str]


_cache: dict[str, CompiledRules] = {}
_cache_lock = threading.Lock()
rate_state = RedisRateState()


def _stamp(session: Session) -> str:
    return str(get_setting(session, RULES_STAMP, ""))


def _bump_stamp(session: Session) -> None:
    put_setting(session, RULES_STAMP, uuid.uuid4().hex)


def active_rules(*, session: Session) -> CompiledRules:
    """The active rule versions compiled into a RuleSet, rebuilt only when the stamp moves."""
    url = str(session.get_bind().engine.url)
    stamp = _stamp(session)
    cached = _cache.get(url)
    if cached is not None and cached.stamp == stamp:
        return cached
    rows = session.execute(
        select(RuleRecord.name, RuleVersion.version, RuleVersion.source)
        .join(
            RuleVersion,
            (RuleVersion.rule_id == RuleRecord.id)
            & (RuleVersion.version == RuleRecord.active_version),
        )
        .order_by(RuleRecord.name)
    )
    rules: list[Rule] = []
    versions: dict[str, int] = {}
    broken: dict[str, str] = {}
    for name, version, source in rows:
        try:
            parsed = parse_rules(source, f"{name}@v{version}")
        except RuleSyntaxError as exc:  # stored by an older release; keep the rest running
            log.error("stored rule %s v%s no longer compiles: %s", name, version, exc)
            broken[name] = str(exc)
            continue
        rules.extend(parsed)
        versions[name] = version
    compiled = CompiledRules(stamp, RuleSet(rules, state=rate_state), versions, broken)
    with _cache_lock:
        _cache[url] = compiled
    return compiled


# --------------------------------------------------------------------------- rules


@dataclass
class RuleSource:
    rule: Rule
    source: str
    file: str


def _rule_sources(text: str, file: str) -> list[RuleSource]:
    """Parse a YAML text and cut it into one standalone YAML text per rule."""
    try:
        rules = parse_rules(text, file)
    except RuleSyntaxError as exc:
        raise rule_error(exc) from None
    nodes = [node for _, node in rule_nodes(text, file)]
    plain = [
        item
        for doc in safeyaml.load_all(text, source=file)
        if doc is not None
        for item in (doc if isinstance(doc, list) else [doc])
    ]
    out: list[RuleSource] = []
    for rule, node, obj in zip(rules, nodes, plain, strict=True):
        start, end = node.start_mark, node.end_mark
        piece = textwrap.dedent(" " * start.column + text[start.index : end.index]).strip()
        if not _standalone(piece, rule.name):
            piece = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).strip()
            if not _standalone(piece, rule.name):
                raise InvalidInput(
                    f"{file}: rule {rule.name!r} cannot be stored on its own "
                    "(does it use an alias defined elsewhere in the file?)",
                    details={"file": file, "line": rule.line, "rule": rule.name},
                )
        where = f"{file}:{rule.line}" if rule.line is not None else file
        out.append(RuleSource(rule, piece + "\n", where))
    return out


def _standalone(text: str, name: str) -> bool:
    try:
        parsed = parse_rules(text, name)
    except (RuleSyntaxError, safeyaml.YAMLLimitError):
        return False
    return len(parsed) == 1 and parsed[0].name == name


def rule_error(exc: RuleSyntaxError) -> InvalidInput:
    """A rule that does not load, as a 422 naming the file, line, rule and reason."""
    return InvalidInput(
        str(exc),
        details={
            "file": exc.file,
            "line": exc.line,
            "rule": exc.rule,
            "reason": exc.reason,
            "path": exc.path,
        },
    )


@dataclass
class LoadResult:
    rules: list[dict[str, Any]] = field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for r in self.rules if r["change"] == change)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            **{c: self.count(c) for c in ("created", "updated", "unchanged", "deactivated")},
        }


def read_rule_files(path: str | Path) -> list[tuple[str, str]]:
    """(file name, text) for a YAML file or every *.yaml/*.yml under a directory."""
    root = Path(path)
    if not root.exists():
        raise InvalidInput(f"{root}: no such file or directory", details={"path": str(root)})
    files = rule_files(root)
    out = []
    for file in files:
        try:
            out.append((str(file), file.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{file}: not UTF-8 text", details={"file": str(file), "reason": exc.reason}
            ) from None
    return out


def store_rules(
    *, session: Session, files: Sequence[tuple[str, str]], prune: bool = False
) -> LoadResult:
    """Store every rule of these texts: all or nothing.

    A rule whose text changed gets a new version, which becomes active; an
    unchanged one keeps its version. If any rule does not parse, nothing
    changes (the error names the file, line and reason). With `prune`, active
    rules that none of the texts define are deactivated.
    """
    sources: list[RuleSource] = []
    for file, text in files:
        sources.extend(_rule_sources(text, file))
    seen: dict[str, str] = {}
    for src in sources:
        if src.rule.name in seen:
            raise InvalidInput(
                f"{src.file}: duplicate rule name {src.rule.name!r} (first defined at "
                f"{seen[src.rule.name]})",
                details={"file": src.file, "rule": src.rule.name},
            )
        seen[src.rule.name] = src.file
    result = LoadResult()
    now = utcnow()
    actor = current_actor().name
    for src in sources:
        checksum = hashlib.sha256(src.source.encode()).hexdigest()
        record = session.scalar(
            select(RuleRecord).where(RuleRecord.name == src.rule.name).with_for_update()
        )
        active: RuleVersion | None = None
        if record is None:
            record = RuleRecord(name=src.rule.name, latest_version=0, created_at=now)
            session.add(record)
            session.flush()
        elif record.active_version is not None:
            active = session.scalar(
                select(RuleVersion).where(
                    RuleVersion.rule_id == record.id, RuleVersion.version == record.active_version
                )
            )
        if active is not None and active.checksum == checksum:
            result.rules.append(
                {"name": record.name, "version": active.version, "change": "unchanged"}
            )
            continue
        change = "created" if record.latest_version == 0 else "updated"
        version = record.latest_version + 1
        session.add(
            RuleVersion(
                rule_id=record.id,
                version=version,
                source=src.source,
                checksum=checksum,
                file=src.file[:1000],
                mode=src.rule.mode,
                created_at=now,
                created_by=actor,
            )
        )
        before = {"active_version": record.active_version}
        record.latest_version = version
        record.active_version = version
        record.updated_at = now
        after = {"active_version": version, "checksum": checksum, "file": src.file}
        record_change(
            session, "create" if change == "created" else "update", "event_rule", record.name,
            before=None if change == "created" else before, after=after,
        )  # fmt: skip
        _emit(session, f"events.rule.{change}", "event_rule", record.name, {"version": version})
        result.rules.append({"name": record.name, "version": version, "change": change})
    if prune:
        for record in session.scalars(
            select(RuleRecord).where(
                RuleRecord.active_version.is_not(None), RuleRecord.name.not_in(list(seen))
            )
        ):
            result.rules.append(_deactivate(session, record))
    if any(r["change"] != "unchanged" for r in result.rules):
        _bump_stamp(session)
    return result


def _emit(
    session: Session, event_type: str, object_type: str, object_id: Any, payload: dict[str, Any]
) -> None:
    from popcorn import outbox

    outbox.emit(session, event_type, object_type, object_id, payload)


def _deactivate(session: Session, record: RuleRecord) -> dict[str, Any]:
    before = {"active_version": record.active_version}
    record.active_version = None
    record.updated_at = utcnow()
    record_change(
        session, "deactivate", "event_rule", record.name, before=before,
        after={"active_version": None},
    )  # fmt: skip
    _emit(session, "events.rule.deactivated", "event_rule", record.name, before)
    return {"name": record.name, "version": before["active_version"], "change": "deactivated"}


def get_rule_record(*, session: Session, name: str) -> RuleRecord:
    record = session.scalar(select(RuleRecord).where(RuleRecord.name == name))
    if record is None:
        raise NotFound(f"no rule {name!r}", details={"name": name})
    return record


def deactivate_rule(*, session: Session, name: str) -> dict[str, Any]:
    """Stop using a rule (its versions stay; activate one to bring it back)."""
    record = get_rule_record(session=session, name=name)
    if record.active_version is None:
        raise Conflict(f"rule {name!r} is not active", details={"name": name})
    out = _deactivate(session, record)
    _bump_stamp(session)
    return out


def activate_rule_version(*, session: Session, name: str, version: int) -> dict[str, Any]:
    """Make a stored version the active one (a rollback, or re-enabling a rule)."""
    record = get_rule_record(session=session, name=name)
    row = session.scalar(
        select(RuleVersion).where(RuleVersion.rule_id == record.id, RuleVersion.version == version)
    )
    if row is None:
        raise NotFound(
            f"rule {name!r} has no version {version}", details={"name": name, "version": version}
        )
    try:
        parse_rules(row.source, f"{name}@v{version}")
    except RuleSyntaxError as exc:
        raise rule_error(exc) from None
    before = {"active_version": record.active_version}
    record.active_version = version
    record.updated_at = utcnow()
    record_change(
        session, "activate", "event_rule", name, before=before, after={"active_version": version}
    )
    _emit(session, "events.rule.activated", "event_rule", name, {"version": version})
    _bump_stamp(session)
    return {"name": name, "version": version, "change": "activated"}


def describe_rule(rule: Rule | None) -> dict[str, Any]:
    if rule is None:
        return {}
    return {
        "events": list(rule.events),
        "mode": rule.mode,
        "priority": rule.priority,
        "stop": rule.stop,
        "description": rule.description,
        "actions": [a.type for a in rule.actions],
        "throttle": rule.throttle.seconds if rule.throttle else None,
        "dedupe": rule.dedupe.seconds if rule.dedupe else None,
    }


def list_rules(*, session: Session, include_inactive: bool = False) -> list[dict[str, Any]]:
    compiled = active_rules(session=session)
    stmt = select(RuleRecord).order_by(RuleRecord.name)
    if not include_inactive:
        stmt = stmt.where(RuleRecord.active_version.is_not(None))
    out = []
    for record in session.scalars(stmt):
        out.append(
            {
                "name": record.name,
                "active_version": record.active_version,
                "latest_version": record.latest_version,
                "updated_at": record.updated_at,
                "error": compiled.broken.get(record.name, ""),
                **describe_rule(
                    compiled.ruleset.get(record.name) if record.active_version else None
                ),
            }
        )
    return out


def show_rule(*, session: Session, name: str) -> dict[str, Any]:
    record = get_rule_record(session=session, name=name)
    versions = list(
        session.scalars(
            select(RuleVersion)
            .where(RuleVersion.rule_id == record.id)
            .order_by(RuleVersion.version.desc())
        )
    )
    active = next((v for v in versions if v.version == record.active_version), None)
    rule = None
    if active is not None:
        rule = active_rules(session=session).ruleset.get(name)
    return {
        "name": record.name,
        "active_version": record.active_version,
        "latest_version": record.latest_version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "source": active.source if active else "",
        "file": active.file if active else "",
        **describe_rule(rule),
        "versions": [
            {
                "version": v.version,
                "checksum": v.checksum,
                "file": v.file,
                "mode": v.mode,
                "created_at": v.created_at,
                "created_by": v.created_by,
                "active": v.version == record.active_version,
            }
            for v in versions
        ],
    }


def get_rule_version(*, session: Session, name: str, version: int) -> RuleVersion:
    record = get_rule_record(session=session, name=name)
    row = session.scalar(
        select(RuleVersion).where(RuleVersion.rule_id == record.id, RuleVersion.version == version)
    )
    if row is None:
        raise NotFound(f"rule {name!r} has no version {version}")
    return row


def events_from_sample(obj: Any) -> list[Event]:
    """Sample events for `rules test`: CloudEvents, Alertmanager, or the stored-event shape."""
    try:
        if isinstance(obj, dict) and "specversion" not in obj and "alerts" not in obj:
            known = {k: v for k, v in obj.items() if k in Event.__dataclass_fields__}
            known.pop("_flat", None)
            return [Event.from_dict(known)]
        return parse_payload(obj)
    except EventFormatError as exc:
        raise exc.as_invalid_input() from None


def explain(
    *, session: Session, events: Sequence[Event], rules_text: str | None = None
) -> list[dict[str, Any]]:
    """For each event: every rule, whether it would match, why, and its rendered actions."""
    if rules_text is not None:
        try:
            ruleset = RuleSet(parse_rules(rules_text, "<test>"))
        except RuleSyntaxError as exc:
            raise rule_error(exc) from None
    else:
        ruleset = active_rules(session=session).ruleset
    out = []
    for ev in events:
        results = []
        for exp in ruleset.explain(ev):
            item: dict[str, Any] = {
                "rule": exp.rule.name,
                "matched": exp.matched,
                "mode": exp.rule.mode,
                "reason": exp.reason,
                "lines": exp.lines(),
            }
            if exp.matched:
                item["actions"] = _preview(exp.rule, ev)
            results.append(item)
        out.append({"event": ev.to_dict(), "rules": results})
    return out


def rule_context(rule: Rule, ev: Event) -> dict[str, Any]:
    context = event_context(ev)
    context["rule"] = {"name": rule.name, "description": rule.description}
    return context


def _preview(rule: Rule, ev: Event) -> list[dict[str, Any]]:
    context = rule_context(rule, ev)
    out = []
    for action in rule.actions:
        try:
            out.append({"type": action.type, "params": action.params.render(context)})
        except TemplateError as exc:
            out.append({"type": action.type, "error": str(exc)})
    return out
