"""RuleSet: indexed matching, priorities, modes, throttle, dedupe and explanations."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from popcorn.events.formats import Event, parse_alertmanager
from popcorn.events.rules import MemoryRateState, RuleSet, parse_rules

NOW = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)
MakeEvent = Callable[..., Event]


def ruleset(text: str, state: MemoryRateState | None = None) -> RuleSet:
    return RuleSet(parse_rules(text), state)


def names(matches: list[Any]) -> list[str]:
    return [m.rule.name for m in matches]


def test_alertmanager_payload_end_to_end(alertmanager_payload: dict[str, Any]) -> None:
    rules = ruleset(
        """
- name: page-critical-disk
  events: [alertmanager.alert.firing]
  conditions:
    labels.alertname: CacheDiskFull
    labels.severity: critical
  actions:
    - type: runbook
      params: {runbook: disk-cleanup, device: "{{ labels.instance.split(':')[0] }}",
               why: "{{ data.annotations.summary }}", rule: "{{ rule.name }}"}
- name: close-on-resolve
  events: [alertmanager.alert.resolved]
  actions:
    - type: incident
      params: {title: "resolved {{ subject }}", fingerprint: "{{ data.fingerprint }}"}
"""
    )
    events = parse_alertmanager(alertmanager_payload)
    results = [names(rules.match(e, NOW)) for e in events]
    assert results == [["page-critical-disk"], [], ["close-on-resolve"]]
    (match,) = rules.match(events[0], NOW)
    assert match.act
    (action,) = match.render_actions()
    assert action.type == "runbook" and action.rule == "page-critical-disk"
    assert action.params == {
        "runbook": "disk-cleanup",
        "device": "oca-ams-017",
        "why": "Cache disk on oca-ams-017 is 97% full",
        "rule": "page-critical-disk",
    }


RULES = """
- {name: low, events: ['*'], priority: -5, conditions: {labels.team: storage}}
- {name: plain, events: ['*'], conditions: {labels.team: storage}}
- {name: high, events: ['*'], priority: 10, conditions: {labels.team: storage}}
- {name: other-team, events: ['*'], priority: 20, conditions: {labels.team: network}}
"""


def test_matches_come_in_priority_order_then_file_order(make_event: MakeEvent) -> None:
    rules = ruleset(RULES)
    assert names(rules.match(make_event(labels={"team": "storage"}), NOW)) == [
        "high",
        "plain",
        "low",
    ]
    assert [r.name for r in rules] == ["other-team", "high", "plain", "low"]


def test_stop_skips_lower_priority_rules(make_event: MakeEvent) -> None:
    rules = ruleset(RULES.replace("priority: 10,", "priority: 10, stop: true,"))
    event = make_event(labels={"team": "storage"})
    assert names(rules.match(event, NOW)) == ["high"]
    reasons = {x.rule.name: x.reason for x in rules.explain(event, NOW)}
    assert "skipped: rule 'high' matched first" in reasons["plain"]


def test_monitor_matches_without_acting_and_off_never_matches(make_event: MakeEvent) -> None:
    rules = ruleset(
        """
- {name: watch, events: ['*'], mode: monitor, stop: true}
- {name: act, events: ['*']}
- {name: disabled, events: ['*'], mode: 'off'}
"""
    )
    event = make_event()
    matches = rules.match(event, NOW)
    assert [(m.rule.name, m.act) for m in matches] == [("watch", False), ("act", True)]
    explained = {x.rule.name: x for x in rules.explain(event, NOW)}
    assert explained["disabled"].matched is False
    assert explained["disabled"].reason == "rule is off"
    assert "monitor" in explained["watch"].reason


def test_throttle_once_per_key_per_window(make_event: MakeEvent) -> None:
    rules = ruleset(
        "name: r\nevents: ['*']\nthrottle: {key: '{{ labels.host }}', window: 10m}\n"
        "actions: [{type: job, params: {job: reboot}}]\n"
    )

    def outcome(host: str, minutes: float) -> str | None:
        event = make_event(id=f"{host}-{minutes}", labels={"host": host})
        (match,) = rules.match(event, NOW + timedelta(minutes=minutes))
        return match.suppressed

    assert outcome("a", 0) is None
    assert outcome("a", 1) == "throttle"
    assert outcome("b", 2) is None
    assert outcome("a", 9.9) == "throttle"
    assert outcome("a", 10) is None
    assert outcome("a", 11) == "throttle"


def test_throttle_without_key_limits_the_whole_rule(make_event: MakeEvent) -> None:
    rules = ruleset("name: r\nevents: ['*']\nthrottle: 1h\n")
    first = rules.match(make_event(id="1", labels={"host": "a"}), NOW)
    second = rules.match(make_event(id="2", labels={"host": "b"}), NOW)
    assert (first[0].act, second[0].act) == (True, False)


def test_dedupe_drops_redelivered_events(alertmanager_payload: dict[str, Any]) -> None:
    rules = ruleset("name: r\nevents: [alertmanager.*]\ndedupe: 1h\n")
    first = [m.act for e in parse_alertmanager(alertmanager_payload) for m in rules.match(e, NOW)]
    again = [m.suppressed for e in parse_alertmanager(alertmanager_payload)
             for m in rules.match(e, NOW + timedelta(minutes=5))]  # fmt: skip
    assert first == [True, True, True]
    assert again == ["dedupe", "dedupe", "dedupe"]


def test_a_duplicate_does_not_use_up_the_throttle(make_event: MakeEvent) -> None:
    rules = ruleset(
        "name: r\nevents: ['*']\ndedupe: {key: '{{ id }}', window: 1h}\n"
        "throttle: {key: '{{ labels.host }}', window: 1m}\n"
    )
    assert rules.match(make_event(id="1", labels={"host": "a"}), NOW)[0].act
    assert rules.match(make_event(id="1", labels={"host": "a"}), NOW)[0].suppressed == "dedupe"
    later = NOW + timedelta(minutes=2)
    assert rules.match(make_event(id="2", labels={"host": "a"}), later)[0].act


def test_rate_state_is_per_rule(make_event: MakeEvent) -> None:
    state = MemoryRateState()
    rules = ruleset("- {name: a, events: ['*'], throttle: 1h}\n- {name: b, events: ['*'], "
                    "throttle: 1h}\n", state)  # fmt: skip
    assert [m.act for m in rules.match(make_event(), NOW)] == [True, True]
    assert [m.act for m in rules.match(make_event(), NOW)] == [False, False]


def test_a_key_that_cannot_render_blocks_the_action(make_event: MakeEvent) -> None:
    rules = ruleset("name: r\nevents: ['*']\nthrottle: {key: '{{ labels.host }}', window: 1m}\n")
    (match,) = rules.match(make_event(labels={}), NOW)
    assert match.act is False
    assert match.error is not None and "throttle.key" in match.error


def test_explain_says_which_condition_failed(make_event: MakeEvent) -> None:
    rules = ruleset(
        """
- name: disk
  events: [alertmanager.alert.firing]
  conditions:
    labels.alertname: CacheDiskFull
    labels.severity: {in: [critical, page]}
    any:
      - labels.site: {prefix: lhr}
      - data.used: {gt: 95}
- name: deploys
  events: [deploy.*]
"""
    )
    event = make_event(labels={"alertname": "CacheDiskFull", "severity": "warning"},
                       data={"used": 91})  # fmt: skip
    disk, deploys = rules.explain(event, NOW)
    assert not disk.matched
    assert 'labels.severity in ["critical", "page"] (line 6): actual "warning"' in disk.reason
    assert "labels.site prefix" in disk.reason and "actual missing" in disk.reason
    assert "data.used gt 95" in disk.reason and "actual 91" in disk.reason
    assert "labels.alertname" not in disk.reason
    assert not deploys.matched and "does not match ['deploy.*']" in deploys.reason
    report = "\n".join(disk.lines())
    assert 'pass labels.alertname eq "CacheDiskFull"' in report
    assert 'FAIL labels.severity in ["critical", "page"]  (actual: "warning")  [line 6]' in report


def test_explain_names_a_not_that_held(make_event: MakeEvent) -> None:
    rules = ruleset("name: r\nevents: ['*']\nconditions:\n  not: {labels.env: {glob: 'stag*'}}\n")
    (explained,) = rules.explain(make_event(labels={"env": "staging"}), NOW)
    assert explained.reason == (
        'condition failed: not labels.env glob "stag*" (line 4): actual "staging"'
    )


def test_match_carries_an_explanation(make_event: MakeEvent) -> None:
    rules = ruleset("name: r\nevents: ['*']\nconditions: {labels.severity: [critical, page]}\n")
    (match,) = rules.match(make_event(labels={"severity": "page"}), NOW)
    assert any('labels.severity in ["critical", "page"]' in line and '"page"' in line
               for line in match.explanation)  # fmt: skip


def test_index_narrows_candidates(make_event: MakeEvent) -> None:
    text = "".join(
        f"- {{name: r{i}, events: [alertmanager.alert.firing], "
        f"conditions: {{labels.alertname: Alert{i}, labels.severity: [critical, page]}}}}\n"
        for i in range(200)
    )
    text += "- {name: any-critical, events: ['alertmanager.*'], conditions: {data.x: {gt: 1}}}\n"
    text += "- {name: deploys, events: [deploy.*], conditions: {labels.alertname: Alert7}}\n"
    rules = ruleset(text)
    event = make_event(labels={"alertname": "Alert7", "severity": "page"}, data={"x": 2})
    assert [r.name for r in rules.candidates(event)] == ["r7", "any-critical"]
    assert names(rules.match(event, NOW)) == ["r7", "any-critical"]
    assert rules.candidates(make_event(type="other", labels={"alertname": "Alert7"})) == []


FIELDS = ["labels.alertname", "labels.severity", "labels.team", "data.value", "subject"]
VALUES: dict[str, list[Any]] = {
    "labels.alertname": ["A", "B", "C", "D"],
    "labels.severity": ["critical", "warning", "info"],
    "labels.team": ["storage", "network"],
    "data.value": [1, 50, 99],
    "subject": ["s1", "s2"],
}


def _random_condition(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 2 and roll < 0.25:
        kind = rng.choice(["all", "any"])
        items = ", ".join(_random_condition(rng, depth + 1) for _ in range(rng.randint(1, 3)))
        return f"{{{kind}: [{items}]}}"
    if depth < 2 and roll < 0.35:
        return f"{{not: {_random_condition(rng, depth + 1)}}}"
    field = rng.choice(FIELDS)
    value = rng.choice(VALUES[field])
    op = rng.choice(["eq", "ne", "in", "not_in", "exists", "regex", "gt", "prefix"])
    if op in ("in", "not_in"):
        operand: Any = sorted({str(rng.choice(VALUES[field])) for _ in range(2)})
        if field == "data.value":
            operand = [int(v) for v in operand]
    elif op == "exists":
        operand = rng.choice(["true", "false"])
    elif op in ("regex", "prefix"):
        operand = f"'{str(value)[:1]}'"
    elif op == "gt":
        operand = rng.choice([0, 10, 60])
    else:
        operand = value
    return f"{{{field}: {{{op}: {operand}}}}}"


def test_match_agrees_with_explain_on_random_rules_and_events() -> None:
    rng = random.Random(7)
    lines = []
    for i in range(200):
        events = rng.choice(["[a.x]", "[a.y]", "['a.*']", "['*']", "[b.x, a.x]"])
        conds = ", ".join(_random_condition(rng) for _ in range(rng.randint(0, 3)))
        mode = rng.choice(["enforce"] * 8 + ["monitor", "off"])
        stop = "true" if rng.random() < 0.03 else "false"
        priority = rng.randint(-2, 2)
        where = f", conditions: [{conds}]" if conds else ""
        lines.append(
            f"- {{name: r{i}, events: {events}, mode: '{mode}', stop: {stop}, "
            f"priority: {priority}{where}}}\n"
        )
    rules = ruleset("".join(lines))
    for n in range(200):
        labels = {f.split(".")[1]: rng.choice(VALUES[f]) for f in FIELDS[:3] if rng.random() < 0.8}
        data = {"value": rng.choice(VALUES["data.value"])} if rng.random() < 0.8 else {}
        event = Event(id=str(n), type=rng.choice(["a.x", "a.y", "b.x", "c"]), source="s",
                      subject=rng.choice([None, "s1", "s2"]), time=NOW, labels=labels,
                      data=data)  # fmt: skip
        matched = names(rules.match(event, NOW))
        explained = [x.rule.name for x in rules.explain(event, NOW) if x.matched]
        assert matched == explained
        brute = []
        for rule in rules:  # every rule, in priority order, without the index
            if rule.mode != "off" and rule.test(event, NOW):
                brute.append(rule.name)
                if rule.stop and rule.mode == "enforce":
                    break
        assert matched == brute


def test_memory_rate_state() -> None:
    state = MemoryRateState(max_keys=10)
    assert state.seen("k", 60, 1000.0) is False
    assert state.seen("k", 60, 1059.0) is True
    assert state.seen("k", 60, 1060.0) is False
    assert state.seen("zero", 0, 1000.0) is False
    assert state.seen("zero", 0, 1000.0) is False
    for i in range(100):
        state.seen(f"key-{i}", 3600, 2000.0)
    assert len(state) <= 10
    assert state.seen("key-99", 3600, 2001.0) is True


def test_now_must_be_aware(make_event: MakeEvent) -> None:
    rules = ruleset("name: r\nevents: ['*']\n")
    with pytest.raises(ValueError, match="timezone"):
        rules.match(make_event(), datetime(2024, 1, 1))
