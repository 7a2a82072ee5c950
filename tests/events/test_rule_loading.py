"""Loading rules from YAML: what is accepted, and errors that point at the line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from popcorn.events.rules import RuleSet, RuleSyntaxError, load_rules, parse_rules

GOOD = """\
name: disk-full-page
description: Page storage on-call.
events: [alertmanager.alert.firing]
priority: 10
mode: monitor
stop: true
conditions:
  labels.alertname: CacheDiskFull
actions:
  - type: runbook
    params:
      runbook: disk-cleanup
      device: "{{ labels.instance }}"
      checks: [smart, "{{ labels.mountpoint }}"]
  - type: webhook
    params: {url: "https://hooks.example.net/{{ labels.team | default('noc') }}"}
throttle: {key: "{{ labels.instance }}", window: 1h30m}
dedupe: 5m
"""


def test_a_complete_rule() -> None:
    (rule,) = parse_rules(GOOD, "rules/disk.yaml")
    assert rule.name == "disk-full-page"
    assert rule.description == "Page storage on-call."
    assert rule.events == ("alertmanager.alert.firing",)
    assert (rule.priority, rule.mode, rule.stop) == (10, "monitor", True)
    assert [a.type for a in rule.actions] == ["runbook", "webhook"]
    assert rule.throttle is not None and rule.throttle.seconds == 5400
    assert rule.dedupe is not None and rule.dedupe.seconds == 300
    assert (rule.file, rule.line) == ("rules/disk.yaml", 1)


def test_defaults() -> None:
    (rule,) = parse_rules("name: r\nevents: '*'\n")
    assert (rule.mode, rule.priority, rule.stop, rule.actions) == ("enforce", 0, False, ())
    assert rule.throttle is None and rule.dedupe is None


def test_a_list_of_rules_and_several_documents() -> None:
    text = "- {name: a, events: [x]}\n- {name: b, events: [y]}\n---\nname: c\nevents: [z]\n---\n"
    assert [r.name for r in parse_rules(text)] == ["a", "b", "c"]


def err(text: str) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rules(text, "rules.yaml")
    return info.value


BAD: list[tuple[str, int, str]] = [
    # YAML itself
    ("name: r\nevents: [x\nconditions: {}\n", 3, "invalid YAML"),
    ("name: r\n  events: [x]\n", 2, "invalid YAML"),
    # rule keys
    ("events: [x]\n", 1, "needs 'name'"),
    ("name: r\n", 1, "needs 'events'"),
    ("name: r\nevents: [x]\ncondition:\n  type: x\n", 3, "did you mean 'conditions'"),
    ("name: 'has space'\nevents: [x]\n", 1, "rule name"),
    ("name: r\nevents: []\n", 2, "empty list"),
    ("name: r\nevents: [x]\nmode: dry-run\n", 3, "mode must be one of"),
    ("name: r\nevents: [x]\npriority: high\n", 3, "integer"),
    ("name: r\nevents: [x]\nstop: 1\n", 3, "true or false"),
    ("name: r\nname: s\nevents: [x]\n", 2, "duplicate key 'name' (first on line 1)"),
    ("- name: r\n  events: [x]\n- oops\n", 3, "a rule must be a mapping"),
    # conditions
    ("name: r\nevents: [x]\nconditions:\n  severity: critical\n", 4, "labels.severity"),
    ("name: r\nevents: [x]\nconditions:\n  labels.a: {equals: 1}\n", 4, "did you mean 'eq'"),
    ("name: r\nevents: [x]\nconditions:\n  labels.a: {}\n", 4, "no operator"),
    ("name: r\nevents: [x]\nconditions:\n  eq: 1\n", 4, "needs a field"),
    ("name: r\nevents: [x]\nconditions:\n  labels.a: {in: b}\n", 4, "must be a list"),
    ("name: r\nevents: [x]\nconditions:\n  labels.a: {eq: [1]}\n", 4, "single value"),
    ("name: r\nevents: [x]\nconditions:\n  labels.a: ~\n", 4, "null is not a label value"),
    ("name: r\nevents: [x]\nconditions:\n  data.a: {exists: maybe}\n", 4, "true or false"),
    ("name: r\nevents: [x]\nconditions:\n  data.a: {gt: true}\n", 4, "number or a string"),
    ("name: r\nevents: [x]\nconditions:\n  time: {gt: yesterday}\n", 4, "RFC 3339"),
    ("name: r\nevents: [x]\nconditions:\n  data..a: 1\n", 4, "empty segment"),
    ("name: r\nevents: [x]\nconditions:\n  any: []\n", 4, "at least one"),
    ("name: r\nevents: [x]\nconditions:\n  - labels.a: 1\n  - 7\n", 5, "must be a mapping"),
    (
        "name: r\nevents: [x]\nconditions:\n  labels.a: 1\n  any:\n    - labels.b: 2\n"
        "    - labels.c: {regex: '(unclosed'}\n",
        7,
        "invalid regular expression '(unclosed'",
    ),
    ("name: r\nevents: [x]\nconditions:\n  labels.a: {regex: [ok, '*bad']}\n", 4, "'*bad'"),
    ("name: r\nevents: [x]\nconditions:\n  labels.a: 1\n  labels.a: 2\n", 5, "duplicate key"),
    ("name: r\nevents: [x]\nconditions:\n  time: {older_than: soon}\n", 4, "duration"),
    ("name: r\nevents: [x]\nconditions:\n  time: {newer_than: -5}\n", 4, "duration"),
    (
        "name: r\nevents: [x]\nconditions:\n  time:\n    time_of_day:\n"
        "      between: ['9:00', '17:00']\n",
        6,
        "HH:MM",
    ),
    (
        "name: r\nevents: [x]\nconditions:\n  time:\n    time_of_day:\n"
        "      between: ['09:00', '17:00']\n      tz: Mars/Olympus\n",
        7,
        "unknown time zone",
    ),
    (
        "name: r\nevents: [x]\nconditions:\n  time:\n    time_of_day:\n"
        "      between: ['09:00', '17:00']\n      days: [mon, funday]\n",
        7,
        "weekday",
    ),
    (
        "name: r\nevents: [x]\nconditions:\n  time: {time_of_day: {between: ['09:00', '09:00']}}\n",
        4,
        "empty",
    ),
    # actions, throttle, dedupe
    ("name: r\nevents: [x]\nactions:\n  - type: page\n", 4, "unknown action type 'page'"),
    ("name: r\nevents: [x]\nactions:\n  - type: webhook\n    params: {}\n", 5, "params.url"),
    ("name: r\nevents: [x]\nactions:\n  - params: {url: x}\n", 4, "needs a type"),
    ("name: r\nevents: [x]\nactions: {type: webhook}\n", 3, "must be a list"),
    (
        "name: r\nevents: [x]\nactions:\n  - type: webhook\n    params:\n      url: http://x\n"
        "      body:\n        text: '{{ labels.a }'\n",
        8,
        "template syntax error",
    ),
    ("name: r\nevents: [x]\nthrottle: {window: 0}\n", 3, "positive duration"),
    ("name: r\nevents: [x]\nthrottle: {key: x}\n", 3, "needs a window"),
    ("name: r\nevents: [x]\ndedupe: {key: '{% if %}', window: 1m}\n", 3, "template syntax"),
    # YAML features a rule has no use for
    ("name: r\nevents: [x]\nconditions:\n  labels.a: !!python/name:os.system x\n", 4, "tag"),
    ("name: !custom r\nevents: [x]\n", 1, "tag"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD)
def test_errors_name_file_line_and_reason(text: str, line: int, reason: str) -> None:
    error = err(text)
    assert error.line == line, str(error)
    assert reason in error.reason or reason in str(error)
    assert str(error).startswith(f"rules.yaml:{line}:")


def test_error_line_counts_across_documents() -> None:
    text = "name: a\nevents: [x]\n---\nname: b\nevents: [x]\nconditions:\n  labels.a: {gtt: 1}\n"
    assert err(text).line == 7


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = "name: r\nevents: [x]\nactions:\n  - type: job\n    params:\n      job: j\n"
    text += "".join(f"      {line}\n" for line in lines)
    assert "more than" in err(text).reason  # the platform YAML limits (popcorn.safeyaml)


def test_duplicate_rule_names_are_refused() -> None:
    error = err("- {name: a, events: [x]}\n- {name: a, events: [y]}\n")
    assert error.line == 2 and "first defined at rules.yaml:1" in error.reason
    (one,) = parse_rules("name: a\nevents: [x]\n", "one.yaml")
    (two,) = parse_rules("name: a\nevents: [y]\n", "two.yaml")
    with pytest.raises(RuleSyntaxError, match="duplicate rule name"):
        RuleSet([one, two])


def test_load_directory(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("name: b\nevents: [x]\n")
    (tmp_path / "a.yml").write_text("- {name: a1, events: [x]}\n- {name: a2, events: [x]}\n")
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "c.yaml").write_text("name: c\nevents: [x]\n")
    (tmp_path / "notes.txt").write_text("not a rule")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "d.yaml").write_text("broken: [")
    rules = load_rules(tmp_path)
    assert [r.name for r in rules] == ["a1", "a2", "b", "c"]
    assert rules[3].file == str(tmp_path / "team" / "c.yaml")
    assert len(RuleSet.from_path(tmp_path)) == 4


def test_load_directory_reports_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("name: a\nevents: [x]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nevents: [x]\nconditions:\n  labels.x: {regex: '['}\n")
    with pytest.raises(RuleSyntaxError) as info:
        load_rules(tmp_path)
    assert (info.value.file, info.value.line) == (str(bad), 4)
    (tmp_path / "bad.yaml").write_text("name: a\nevents: [y]\n")
    with pytest.raises(RuleSyntaxError, match="duplicate rule name 'a'"):
        load_rules(tmp_path)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\nevents: [x]\n")
    with pytest.raises(RuleSyntaxError, match="UTF-8"):
        load_rules(path)


def test_mangled_rules_fail_cleanly() -> None:
    """Random edits to a valid rule either load or raise RuleSyntaxError, nothing else."""
    rng = random.Random(11)
    pieces = [*"{}[]:,-'\"!&*#|>\n ", "~", "true", "1.5", "any", "not", "eq", "in", "labels.x",
              "{{", "}}", "regex", "(", "tz", "between", "09:00", "24:00"]  # fmt: skip
    loaded = 0
    for _ in range(1500):
        chars = list(GOOD)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars))
            if rng.random() < 0.5:
                del chars[pos]
            else:
                chars.insert(pos, rng.choice(pieces))
        try:
            RuleSet(parse_rules("".join(chars)))
            loaded += 1
        except RuleSyntaxError as exc:
            assert exc.reason
    assert 0 < loaded < 1500
