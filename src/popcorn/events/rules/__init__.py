"""Rules: which events deserve which actions.

A rule is YAML. A file holds one rule, a list of rules, or several YAML
documents; `load_rules` reads a file or a directory of ``*.yaml``/``*.yml``::

    name: disk-full-page
    description: Page storage on-call when a cache disk fills up.
    events: [alertmanager.alert.firing]       # glob patterns on the event type
    priority: 10                              # higher runs first (default 0)
    mode: enforce                             # enforce | monitor | off
    stop: false                               # true: skip lower-priority rules (enforce only)
    conditions:
      labels.alertname: DiskFull              # a plain value means eq
      labels.severity: [critical, page]       # a list means in
      data.annotations.summary: {regex: "(?i)cache"}
      labels.used_pct: {ge: 90, lt: 101}      # several operators: all must hold
      any:
        - labels.team: storage
        - labels.service: {prefix: "oca-"}
      not: {labels.env: {glob: "staging*"}}
      time: {time_of_day: {between: ["08:00", "20:00"], tz: Europe/Amsterdam,
                           days: [mon-fri]}}
    actions:
      - type: runbook                         # webhook | runbook | job | emit | incident
        params: {runbook: disk-cleanup, device: "{{ labels.instance }}"}
    throttle: {key: "{{ labels.instance }}", window: 10m}   # act once per key per window
    dedupe: {key: "{{ labels.alertname }}/{{ labels.instance }}", window: 1h}

Conditions are a mapping (every entry must hold) or a list of mappings (every
item must hold); ``all``, ``any`` and ``not`` nest. A key is a field: ``id``,
``type``, ``source``, ``subject``, ``time``, ``labels.<name>`` (the rest of the
key is the label name, dots included) or ``data.<path>`` (dotted keys and list
indexes). Its value is a plain value (eq), a list (in), or a mapping of
operators:

===================  =============================================================
eq, ne               equal / not equal (labels compare as text: ``{eq: 503}`` matches "503")
lt, le, gt, ge       order; a numeric operand compares numbers and numeric strings
in, not_in           one of / none of a list
contains             substring of a string, element of a list, key of an object
prefix, suffix       starts / ends with a string (or any string of a list)
regex                RE2 search anywhere in a string (anchor with ^ and $); no
                     backreferences or lookaround, matched in linear time
glob                 shell-style pattern over the whole string
exists               true: the field is present (even if null); false: absent
time_of_day          ``{between: [HH:MM, HH:MM], tz: Area/City, days: [mon-fri, sun]}``;
                     a window past midnight belongs to the day it starts on
older_than           the time field is older than a duration (``90s``, ``10m``, ``1h30m``)
newer_than           the time field is newer than a duration, relative to now
===================  =============================================================

A missing field fails every test except ``ne``, ``not_in`` and ``exists: false``.
Throttle lets a rule act at most once per key per window (the key defaults to
the rule itself); dedupe drops repeats of the same key within the window (the
key defaults to the event id, so re-deliveries are ignored). In monitor mode a
rule matches and is reported, but callers must not act (`Match.act`); off
rules never match.

Rules are compiled once, at load, so matching never walks YAML. The package
reads top to bottom: `model` (what a rule is), `operators` (conditions and
their compiled code), `parse` (YAML text or files into rules) and `matching`
(the indexed `RuleSet`). Errors in a rule raise `RuleSyntaxError` with the
file, line, rule name and reason.
"""

from popcorn.events.rules.matching import (
    Match,
    MemoryRateState,
    RateState,
    RuleExplanation,
    RuleSet,
)
from popcorn.events.rules.model import (
    ACTION_TYPES,
    MODES,
    Action,
    Mode,
    RenderedAction,
    Rule,
    RuleSyntaxError,
    Window,
)
from popcorn.events.rules.operators import (
    MAX_PATTERN_LENGTH,
    OPERATORS,
    Check,
    Condition,
    all_of,
    any_of,
    compile_test,
    not_,
)
from popcorn.events.rules.parse import load_rules, parse_rules, rule_files, rule_nodes

__all__ = [
    "ACTION_TYPES",
    "MAX_PATTERN_LENGTH",
    "MODES",
    "OPERATORS",
    "Action",
    "Check",
    "Condition",
    "Match",
    "MemoryRateState",
    "Mode",
    "RateState",
    "RenderedAction",
    "Rule",
    "RuleExplanation",
    "RuleSet",
    "RuleSyntaxError",
    "Window",
    "all_of",
    "any_of",
    "compile_test",
    "load_rules",
    "not_",
    "parse_rules",
    "rule_files",
    "rule_nodes",
]
