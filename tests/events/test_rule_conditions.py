"""Every condition operator, combinators, and the missing-field rules."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from popcorn.events.formats import Event
from popcorn.events.rules import RuleSet, RuleSyntaxError, compile_test, not_, parse_rules

NOW = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)  # a Monday

EVENT = Event(
    id="ev-42",
    type="alertmanager.alert.firing",
    source="http://alertmanager:9093",
    subject="CacheDiskFull",
    time=NOW - timedelta(minutes=5),
    labels={
        "alertname": "CacheDiskFull",
        "severity": "critical",
        "instance": "oca-ams-017:9100",
        "code": "503",
        "used_pct": "97.5",
        "app.kubernetes.io/name": "edge",
    },
    data={
        "value": 97.5,
        "count": 3,
        "flag": True,
        "nothing": None,
        "tags": ["cache", "ssd", 7],
        "disk": {"mount": "/cache", "slots": [{"id": "s1"}, {"id": "s2"}]},
        "startsAt": "2024-05-06T07:00:00Z",
    },
)


def holds(conditions: str, event: Event = EVENT, now: datetime = NOW) -> bool:
    """Evaluate a condition the three ways the product does; they must agree."""
    text = "name: r\nevents: ['*']\nconditions:\n" + textwrap.indent(conditions, "  ")
    rule = parse_rules(text)[0]
    fast = rule.test(event, now)
    assert rule.check(event, now).passed is fast
    assert compile_test(rule.condition)(event, now) is fast
    assert bool(RuleSet([rule]).match(event, now)) is fast
    return fast


CASES: list[tuple[str, bool]] = [
    # eq / ne, shorthand and explicit; labels compare as text
    ("labels.severity: critical", True),
    ("labels.severity: warning", False),
    ("labels.severity: {eq: critical}", True),
    ("labels.code: {eq: 503}", True),
    ("labels.code: 503", True),
    ("labels.severity: {ne: warning}", True),
    ("labels.severity: {ne: critical}", False),
    ("labels.app.kubernetes.io/name: edge", True),
    ("type: alertmanager.alert.firing", True),
    ("source: {eq: 'http://alertmanager:9093'}", True),
    ("subject: CacheDiskFull", True),
    ("id: ev-42", True),
    # data keeps JSON types: 3 is not "3", true is not 1
    ("data.count: 3", True),
    ("data.count: '3'", False),
    ("data.flag: true", True),
    ("data.flag: {eq: 1}", False),
    ("data.count: {eq: 3.0}", True),
    ("data.nothing: {eq: null}", True),
    ("data.disk.mount: /cache", True),
    ("data.disk.slots.1.id: s2", True),
    # ordering; numeric operands also read numeric strings
    ("labels.used_pct: {gt: 97}", True),
    ("labels.used_pct: {ge: 97.5}", True),
    ("labels.used_pct: {lt: 97.5}", False),
    ("labels.used_pct: {le: 97.5}", True),
    ("data.value: {gt: 90, lt: 100}", True),
    ("data.count: {lt: 3}", False),
    ("labels.severity: {gt: 5}", False),  # not a number
    ("data.flag: {ge: 0}", False),  # booleans are not numbers
    ("labels.severity: {gt: critic}", True),  # strings compare as strings
    ("time: {gt: '2024-05-06T07:00:00Z'}", True),
    ("time: {lt: '2024-05-06T10:00:00+02:00'}", True),
    ("time: {lt: '2024-05-06T09:00:00+02:00'}", False),
    ("data.startsAt: {lt: '2024-05-06T07:30:00Z'}", True),
    # in / not_in
    ("labels.severity: [critical, page]", True),
    ("labels.severity: {in: [warning, info]}", False),
    ("labels.code: {in: [500, 503]}", True),
    ("labels.severity: {not_in: [warning, info]}", True),
    ("labels.severity: {not_in: [critical]}", False),
    ("data.count: {in: [1, 2, 3]}", True),
    ("data.count: {in: ['3']}", False),
    # contains: substring, list element, object key
    ("labels.instance: {contains: ams}", True),
    ("labels.instance: {contains: lhr}", False),
    ("data.tags: {contains: ssd}", True),
    ("data.tags: {contains: 7}", True),
    ("data.tags: {contains: hdd}", False),
    ("data.disk: {contains: mount}", True),
    ("data.count: {contains: 3}", False),
    # prefix / suffix, single or any of a list
    ("labels.instance: {prefix: oca-}", True),
    ("labels.instance: {prefix: [ocb-, oca-ams]}", True),
    ("labels.instance: {suffix: ':9100'}", True),
    ("labels.instance: {suffix: ':9090'}", False),
    ("data.count: {prefix: '3'}", False),
    # regex searches anywhere; glob covers the whole string
    ("labels.instance: {regex: 'ams-\\d+'}", True),
    ("labels.instance: {regex: '^ams'}", False),
    ("labels.alertname: {regex: '(?i)^cachedisk'}", True),
    ("labels.instance: {regex: ['^lhr', 'ams-0']}", True),
    ("labels.instance: {glob: 'oca-*-0??:*'}", True),
    ("labels.instance: {glob: 'oca-*'}", True),
    ("labels.instance: {glob: 'ams*'}", False),
    ("data.count: {regex: '3'}", False),
    # exists: null counts as present
    ("labels.severity: {exists: true}", True),
    ("labels.team: {exists: true}", False),
    ("labels.team: {exists: false}", True),
    ("data.nothing: {exists: true}", True),
    ("data.disk.slots.5: {exists: false}", True),
    # a missing field fails everything but ne, not_in and exists: false
    ("labels.team: {eq: storage}", False),
    ("labels.team: {ne: storage}", True),
    ("labels.team: {not_in: [storage]}", True),
    ("labels.team: {in: [storage]}", False),
    ("labels.team: {contains: s}", False),
    ("labels.team: {lt: 5}", False),
    ("labels.team: {regex: '.*'}", False),
    ("data.missing.deep: {glob: '*'}", False),
    ("subject: {exists: true}", True),
    # time since, relative to now: the event is 5 minutes old
    ("time: {older_than: 1m}", True),
    ("time: {older_than: 10m}", False),
    ("time: {newer_than: 10m}", True),
    ("time: {newer_than: 120}", False),
    ("data.startsAt: {older_than: 1h}", False),
    ("data.startsAt: {older_than: 59m}", True),
    ("labels.severity: {older_than: 1m}", False),
    # time of day (07:55 UTC on Monday = 09:55 in Amsterdam)
    ("time: {time_of_day: {between: ['09:00', '17:00'], tz: Europe/Amsterdam}}", True),
    ("time: {time_of_day: {between: ['09:00', '17:00']}}", False),  # UTC by default
    ("time: {time_of_day: {between: ['07:00', '08:00'], days: [mon]}}", True),
    ("time: {time_of_day: {between: ['07:00', '08:00'], days: [tue-sun]}}", False),
    ("time: {time_of_day: {between: ['07:00', '08:00'], days: mon-fri}}", True),
    ("time: {time_of_day: {between: ['22:00', '08:00']}}", True),  # past midnight
    ("time: {time_of_day: {between: ['08:00', '24:00']}}", False),
    # ... a window past midnight belongs to the day it started: Monday 07:55 is Sunday night
    ("time: {time_of_day: {between: ['22:00', '08:00'], days: [sun]}}", True),
    ("time: {time_of_day: {between: ['22:00', '08:00'], days: [mon]}}", False),
    ("data.startsAt: {time_of_day: {between: ['06:59', '07:01']}}", True),
]


@pytest.mark.parametrize(("conditions", "expected"), CASES)
def test_operator(conditions: str, expected: bool) -> None:
    assert holds(conditions) is expected


def test_every_operator_is_covered() -> None:
    from popcorn.events.rules import OPERATORS

    used = " ".join(c for c, _ in CASES)
    for op in OPERATORS:
        assert f"{op}:" in used or op in ("eq", "in"), op


NESTED: list[tuple[str, bool]] = [
    ("all:\n  - labels.severity: critical\n  - labels.code: 503\n", True),
    ("all:\n  - labels.severity: critical\n  - labels.code: 500\n", False),
    ("any:\n  - labels.severity: warning\n  - labels.code: 503\n", True),
    ("any:\n  - labels.severity: warning\n  - labels.code: 500\n", False),
    ("any: {labels.severity: warning, labels.code: 503}\n", True),
    ("not: {labels.severity: warning}\n", True),
    ("not: {labels.severity: critical}\n", False),
    ("not: [labels.severity: critical, labels.code: 500]\n", True),  # not (a and b)
    (
        "any:\n"
        "  - all: [labels.severity: warning, labels.code: 503]\n"
        "  - all:\n"
        "      - labels.severity: critical\n"
        "      - not: {any: [labels.team: storage, labels.instance: {prefix: lhr}]}\n",
        True,
    ),
    (
        "any:\n"
        "  - all: [labels.severity: warning, labels.code: 503]\n"
        "  - all:\n"
        "      - labels.severity: critical\n"
        "      - not: {any: [labels.team: storage, labels.instance: {prefix: oca}]}\n",
        False,
    ),
    ("- labels.severity: critical\n- any: [data.count: 1, data.count: 3]\n", True),
    ("labels.severity: critical\nnot:\n  not: {labels.code: 503}\n", True),
]


@pytest.mark.parametrize(("conditions", "expected"), NESTED)
def test_nested_all_any_not(conditions: str, expected: bool) -> None:
    assert holds(conditions) is expected


def test_no_conditions_match_every_event_of_the_type() -> None:
    rule = parse_rules("name: r\nevents: [alertmanager.*]\n")[0]
    assert rule.test(EVENT, NOW)
    other = Event(id="x", type="deploy.started", source="s", time=NOW)
    assert not rule.test(other, NOW)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ("['alertmanager.alert.firing']", True),
        ("['alertmanager.*']", True),
        ("['*.firing', 'deploy.*']", True),
        ("['alertmanager.alert.resolved']", False),
        ("['alertmanager.alert.fir?ng']", True),
        ("['Alertmanager.*']", False),  # case-sensitive
    ],
)
def test_event_type_patterns(events: str, expected: bool) -> None:
    rule = parse_rules(f"name: r\nevents: {events}\n")[0]
    assert rule.test(EVENT, NOW) is expected
    assert bool(RuleSet([rule]).match(EVENT, NOW)) is expected


def test_time_of_day_honours_daylight_saving() -> None:
    summer = Event(id="1", type="t", source="s", time=datetime(2024, 7, 1, 6, 30, tzinfo=UTC))
    winter = Event(id="2", type="t", source="s", time=datetime(2024, 1, 8, 6, 30, tzinfo=UTC))
    cond = "time: {time_of_day: {between: ['08:00', '09:00'], tz: Europe/Amsterdam}}"
    assert holds(cond, summer)  # 08:30 CEST
    assert not holds(cond, winter)  # 07:30 CET


def test_explicit_now_drives_time_since() -> None:
    cond = "time: {older_than: 1h}"
    assert not holds(cond, EVENT, NOW)
    assert holds(cond, EVENT, NOW + timedelta(hours=2))


def test_rule_test_requires_aware_now() -> None:
    rule = parse_rules("name: r\nevents: ['*']\n")[0]
    with pytest.raises(ValueError, match="timezone"):
        rule.test(EVENT, datetime(2024, 1, 1))


def _label_event(**labels: Any) -> Event:
    return Event(id="1", type="t", source="s", time=NOW, labels=labels)


def test_label_operands_keep_their_literal_text() -> None:
    # YAML would read 0503 as a number and 1e3 as a float; labels need the text.
    assert holds("labels.code: 0503", _label_event(code="0503"))
    assert holds("labels.limit: 1e3", _label_event(limit="1e3"))
    assert holds("labels.enabled: yes", _label_event(enabled="yes"))


def test_deep_nesting_is_refused_or_evaluated_without_crashing() -> None:
    deep = "{labels.severity: critical}"
    for _ in range(25):
        deep = "{not: {not: " + deep + "}}"
    assert holds("all: [" + deep + "]\n")
    too_deep = "{labels.severity: critical}"
    for _ in range(70):
        too_deep = "{any: [" + too_deep + "]}"
    with pytest.raises(RuleSyntaxError, match="nested more than"):
        parse_rules("name: r\nevents: ['*']\nconditions: " + too_deep + "\n")


def test_generated_code_falls_back_to_closures_when_too_deep() -> None:
    condition = parse_rules("name: r\nevents: ['*']\nconditions: {labels.code: {gt: 500}}")[0]
    tree = condition.condition
    for _ in range(300):  # deeper than the Python compiler accepts
        tree = not_(not_(tree))
    assert compile_test(tree)(EVENT, NOW) is True
