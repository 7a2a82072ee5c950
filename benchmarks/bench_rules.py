"""Rule matching throughput: Popcorn's compiled, indexed RuleSet against the StackStorm approach.

The baseline does what StackStorm's rules engine does: it first fetches only the
rules of the event's trigger type (here a dict from type to rules, plus the rules
whose type is a glob), then interprets each one's criteria by walking the parsed
rule document: the same 1,000 rules, loaded with ``yaml.safe_load``. A weaker
engine that skips the type lookup and interprets every rule on every event is
measured beside it and named for what it is. All run in this process, pinned to
one core, on the same events with the same `now`; the script checks they find
exactly the same matches, prints events per second and the ratios, and writes
the figures to ``benchmarks/results/rules.md``.

    .venv/bin/python benchmarks/bench_rules.py [--rules 1000] [--events 20000]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import platform
import random
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from popcorn.events.formats import MISSING, Event
from popcorn.events.rules import RuleSet, compile_test, parse_rules

sys.path.insert(0, str(Path(__file__).parent))
from common import LoadWatch

NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
RESULTS = Path(__file__).parent / "results" / "rules.md"

COMPONENTS = [
    "CacheDisk",
    "Node",
    "Nginx",
    "Kafka",
    "Cassandra",
    "Envoy",
    "Bgp",
    "Tls",
    "Origin",
    "Edge",
    "Redis",
    "Postgres",
    "Zuul",
    "Eureka",
    "Titus",
    "Spinnaker",
    "Atlas",
    "Evcache",
    "Oca",
    "Dns",
]
PROBLEMS = ["Full", "HighLatency", "Down", "ErrorRate", "Saturated", "Flapping", "CertExpiry"]
ALERTNAMES = [c + p for c in COMPONENTS for p in PROBLEMS][:140]
SEVERITIES = ["critical", "page", "warning", "info"]
SITES = [
    f"{city}{n}"
    for city in ("ams", "lhr", "fra", "iad", "sjc", "gru", "nrt", "syd")
    for n in (1, 2, 3)
]
TEAMS = ["storage", "network", "edge", "platform", "data", "security", "playback"]
ENVS = ["prod", "prod", "prod", "staging", "test"]
SERVICES = [
    f"{p}-{s}"
    for p in ("oca", "api", "cdn", "play", "auth")
    for s in ("gw", "cache", "store", "edge")
]
OTHER_TYPES = [
    "deploy.finished",
    "deploy.failed",
    "k8s.pod.crashlooping",
    "k8s.node.notready",
    "inventory.device.failed",
    "security.finding.created",
    "traffic.region.evacuated",
    "devicelab.test.failed",
    "certificates.expiring",
    "notebooks.job.failed",
]


def q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def generate_rules(n: int, rng: random.Random) -> str:
    """Rules as an operations team writes them: mostly per alert, some broad ones."""
    docs = []
    for i in range(n):
        conds: list[str] = []
        roll = rng.random()
        if roll < 0.55:
            events = "[alertmanager.alert.firing]"
            conds.append(f"labels.alertname: {rng.choice(ALERTNAMES)}")
            sev = rng.sample(SEVERITIES[:3], rng.randint(1, 2))
            conds.append(f"labels.severity: [{', '.join(sev)}]")
            if rng.random() < 0.4:
                sites = "|".join(rng.sample(SITES, 3))
                conds.append(f"labels.site: {{regex: {q('^(' + sites + ')$')}}}")
            if rng.random() < 0.3:
                word = rng.choice(["disk", "latency", "down", "error"])
                conds.append(f"data.annotations.summary: {{regex: {q('(?i)' + word)}}}")
            if rng.random() < 0.3:
                conds.append(
                    f"any: [labels.team: {rng.choice(TEAMS)}, "
                    f"labels.service: {{prefix: {rng.choice(SERVICES)[:4]}}}]"
                )
            if rng.random() < 0.5:
                conds.append("not: {labels.env: {in: [staging, test]}}")
        elif roll < 0.7:
            events = "[alertmanager.alert.resolved]"
            conds.append(f"labels.alertname: {rng.choice(ALERTNAMES)}")
            if rng.random() < 0.5:
                conds.append(f"labels.team: {rng.choice(TEAMS)}")
        elif roll < 0.88:
            events = f"[{rng.choice(OTHER_TYPES)}]"
            conds.append(f"labels.service: {rng.choice(SERVICES)}")
            if rng.random() < 0.5:
                conds.append(f"data.duration_s: {{gt: {rng.choice([60, 300, 900])}}}")
            if rng.random() < 0.4:
                conds.append(f"subject: {{glob: {q(rng.choice(['*-canary', 'oca-*', '*prod*']))}}}")
        elif roll < 0.95:
            events = rng.choice(["['*.failed']", "['deploy.*']", "['k8s.*']", "['alertmanager.*']"])
            source = rng.choice(["^http://prometheus-(ams|fra)", "prometheus-iad", "k8s", "lab"])
            conds.append(f"source: {{regex: {q(source)}}}")
            conds.append(f"data.attempts: {{ge: {rng.randint(3, 6)}}}")
        else:
            events = "['alertmanager.alert.firing']"
            conds.append(f"labels.team: {rng.choice(TEAMS)}")
            conds.append(f"labels.severity: {rng.choice(['critical', 'page'])}")
            conds.append(
                f"any:\n      - time: {{time_of_day: {{between: ['22:00', '07:00'], "
                f"tz: {rng.choice(['Europe/Amsterdam', 'America/Los_Angeles'])}}}}}\n"
                f"      - time: {{older_than: {rng.choice(['15m', '1h'])}}}"
            )
        mode = rng.choice(["enforce"] * 18 + ["monitor", "off"])
        throttle = ""
        if roll < 0.55 and rng.random() < 0.3:
            throttle = "\n  throttle: {key: '{{ labels.instance }}', window: 10m}"
        body = "\n".join(f"    {c}" for c in conds)
        docs.append(
            f"- name: rule-{i:04d}\n  events: {events}\n  mode: {mode}\n"
            f"  priority: {rng.randint(0, 3)}\n  conditions:\n{body}{throttle}\n"
            f"  actions:\n    - type: runbook\n      params: {{runbook: rb-{i % 40}, "
            f"target: '{{{{ labels.instance | default(subject) }}}}'}}\n"
        )
    return "".join(docs)


def generate_events(n: int, rng: random.Random) -> list[Event]:
    events = []
    for i in range(n):
        when = NOW - timedelta(minutes=rng.randint(0, 180))
        if rng.random() < 0.75:
            site = rng.choice(SITES)
            status = "firing" if rng.random() < 0.8 else "resolved"
            labels = {
                "alertname": rng.choice(ALERTNAMES),
                "severity": rng.choice(SEVERITIES),
                "site": site,
                "instance": f"oca-{site}-{rng.randint(1, 400):03d}:9100",
                "job": rng.choice(["node", "nginx", "envoy"]),
                "team": rng.choice(TEAMS),
                "env": rng.choice(ENVS),
                "service": rng.choice(SERVICES),
            }
            data = {
                "status": status,
                "annotations": {
                    "summary": rng.choice(
                        ["Disk almost full", "p99 latency high", "Target down", "5xx error rate"]
                    )
                },
                "attempts": rng.randint(0, 6),
            }
            events.append(
                Event(
                    id=f"e{i}",
                    type=f"alertmanager.alert.{status}",
                    source=f"http://prometheus-{site[:3]}:9090",
                    subject=labels["alertname"],
                    time=when,
                    labels=labels,
                    data=data,
                )
            )
        else:
            ev_type = rng.choice(OTHER_TYPES)
            labels = {"service": rng.choice(SERVICES), "region": rng.choice(SITES)[:3]}
            data = {"duration_s": rng.randint(1, 2000), "attempts": rng.randint(0, 6)}
            subject = rng.choice(["api-gw-canary", "oca-lhr-001", "play-prod-7", "auth-store"])
            events.append(
                Event(
                    id=f"e{i}",
                    type=ev_type,
                    source=rng.choice(["spinnaker", "k8s://prod", "devicelab-7", "popcorn"]),
                    subject=subject,
                    time=when,
                    labels=labels,
                    data=data,
                )
            )
    return events


# --- the naive engine: interpret the rule documents on every event -------------------------


_FIELDS = frozenset({"id", "type", "source", "subject", "time", "labels", "data"})


def _lookup(event: Event, path: str) -> Any:
    head, _, rest = path.partition(".")
    if head not in _FIELDS:
        return MISSING
    value = getattr(event, head)
    if head == "labels" and rest:
        return value.get(rest, MISSING)
    for part in rest.split(".") if rest else []:
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return MISSING if value is None else value


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    """The baseline caches compiled patterns too, so only interpretation is compared."""
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


def _op(op: str, operand: Any, actual: Any, now: datetime) -> bool:
    if op == "exists":
        return (actual is not MISSING) is operand
    if op == "ne":
        return actual != operand
    if op == "not_in":
        return actual not in operand
    if actual is MISSING:
        return False
    if op == "eq":
        return bool(actual == operand)
    if op == "in":
        return actual in operand
    if op == "regex":
        return isinstance(actual, str) and _regex(operand).search(actual) is not None
    if op == "glob":
        return isinstance(actual, str) and fnmatch.fnmatchcase(actual, operand)
    if op == "prefix":
        return isinstance(actual, str) and actual.startswith(operand)
    if op in ("gt", "ge", "lt", "le"):
        a, b = _num(actual), float(operand)
        if a is None:
            return False
        return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
    if op == "older_than":
        unit = {"m": 60, "h": 3600}[operand[-1]]
        return (now - actual).total_seconds() > int(operand[:-1]) * unit
    if op == "time_of_day":
        local = actual.astimezone(ZoneInfo(operand.get("tz", "UTC")))
        start, end = ((int(t[:2]) * 60 + int(t[3:])) for t in operand["between"])
        minute = local.hour * 60 + local.minute
        return start <= minute < end if start < end else (minute >= start or minute < end)
    raise ValueError(op)


def _evaluate(node: Any, event: Event, now: datetime) -> bool:
    if isinstance(node, list):
        return all(_evaluate(item, event, now) for item in node)
    for key, value in node.items():
        if key == "all":
            ok = all(_evaluate(item, event, now) for item in value)
        elif key == "any":
            ok = any(_evaluate(item, event, now) for item in value)
        elif key == "not":
            ok = not _evaluate(value, event, now)
        else:
            actual = _lookup(event, key)
            if isinstance(value, dict):
                ok = all(_op(op, operand, actual, now) for op, operand in value.items())
            elif isinstance(value, list):
                ok = _op("in", value, actual, now)
            else:
                ok = _op("eq", value, actual, now)
        if not ok:
            return False
    return True


def naive_match(documents: list[dict[str, Any]], event: Event, now: datetime) -> list[str]:
    out = []
    for doc in documents:
        if doc.get("mode") in ("off", False):  # safe_load reads a bare `off` as false
            continue
        if not any(fnmatch.fnmatchcase(event.type, p) for p in doc["events"]):
            continue
        if _evaluate(doc.get("conditions") or {}, event, now):
            out.append(doc["name"])
    return out


_GLOB = frozenset("*?[")


class ByType:
    """The StackStorm approach: look up the rules of the event's type, then interpret them.

    StackStorm fetches the enabled rules of an event's trigger type from its database
    before evaluating any criteria; here that lookup is a dict (exact types) plus the
    few rules whose type is a glob, in the rules' priority order.
    """

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.documents = documents
        self.exact: dict[str, list[int]] = {}
        self.globbed: list[tuple[int, list[str]]] = []
        for i, doc in enumerate(documents):
            if doc.get("mode") in ("off", False):
                continue
            patterns = list(doc["events"])
            if any(_GLOB & set(p) for p in patterns):
                self.globbed.append((i, patterns))
            else:
                for pattern in patterns:
                    self.exact.setdefault(pattern, []).append(i)

    def match(self, event: Event, now: datetime) -> list[str]:
        found = list(self.exact.get(event.type, ()))
        found += [
            i for i, pats in self.globbed if any(fnmatch.fnmatchcase(event.type, p) for p in pats)
        ]
        out = []
        for i in sorted(set(found)):
            doc = self.documents[i]
            if _evaluate(doc.get("conditions") or {}, event, now):
                out.append(doc["name"])
        return out


# --- run ----------------------------------------------------------------------------------


def best_rate(run: Any, count: int, repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--naive-events", type=int, default=2_000)
    parser.add_argument("--baseline-events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    watch = LoadWatch()
    rng = random.Random(args.seed)
    text = generate_rules(args.rules, rng)
    events = generate_events(args.events, rng)

    start = time.perf_counter()
    rules = RuleSet(parse_rules(text, "generated.yaml"))
    compile_s = time.perf_counter() - start
    documents = sorted(
        yaml.safe_load(text), key=lambda d: -d.get("priority", 0)
    )  # same priority order as RuleSet (a stable sort keeps file order)

    by_type = ByType(documents)
    # Same answers first: every event of the baseline sample, rule by rule.
    sample = events[: args.naive_events]
    baseline_sample = events[: args.baseline_events]
    total_matches = 0
    for event in baseline_sample:
        ours = [m.rule.name for m in rules.match(event, NOW)]
        assert ours == by_type.match(event, NOW), (event, ours)
        total_matches += len(ours)
    for event in sample:
        assert naive_match(documents, event, NOW) == [m.rule.name for m in rules.match(event, NOW)]

    # The same compiled conditions without the index: what the index alone buys.
    compiled = [(r, compile_test(r.condition)) for r in rules if r.mode != "off"]

    def unindexed(event: Event) -> list[str]:
        return [r.name for r, test in compiled if r.matches_type(event.type) and test(event, NOW)]

    for event in sample:
        assert unindexed(event) == [m.rule.name for m in rules.match(event, NOW)]

    candidates = statistics.mean(len(rules.candidates(e)) for e in events)
    ours_rate = best_rate(lambda: [rules.match(e, NOW) for e in events], len(events), args.repeat)
    base_rate = best_rate(
        lambda: [by_type.match(e, NOW) for e in baseline_sample],
        len(baseline_sample),
        args.repeat,
    )
    naive_rate = best_rate(
        lambda: [naive_match(documents, e, NOW) for e in sample], len(sample), args.repeat
    )
    unindexed_rate = best_rate(lambda: [unindexed(e) for e in sample], len(sample), args.repeat)
    watch.stop()
    ratio = ours_rate / base_rate
    explain_rate = best_rate(lambda: [rules.explain(e, NOW) for e in sample[:300]], 300, 1)

    lines = [
        "## Rules (events/s, one core)",
        "",
        f"{args.rules} generated rules (alert routing by alertname and severity, regexes on "
        "sites and summaries, any/not groups, broad glob-typed rules, time-of-day rules, "
        f"~5% off, ~5% monitor); {args.events} events (75% Alertmanager alerts, 25% "
        "deploy/k8s/inventory/security events). Same `now`; matches checked identical on "
        f"{len(baseline_sample)} events ({total_matches} matches). Baseline: the StackStorm "
        "approach (the rules of the event's type first, then each one's criteria interpreted "
        "from the parsed rule document).",
        "",
        "| engine | events/s | relative to the baseline |",
        "|---|---:|---:|",
        f"| Popcorn `RuleSet.match` (compiled conditions, type + equality index) | "
        f"{ours_rate:,.0f} | {ratio:,.1f}x |",
        f"| Popcorn compiled conditions, no index (every rule tested) | {unindexed_rate:,.0f} | "
        f"{unindexed_rate / base_rate:,.1f}x |",
        f"| **baseline**, the StackStorm approach: rules of the event's type, then criteria "
        f"interpreted | {base_rate:,.0f} | 1.0x |",
        f"| weaker, not a baseline: every rule document interpreted on every event (no type "
        f"lookup) | {naive_rate:,.0f} | {naive_rate / base_rate:,.2f}x |",
        f"| Popcorn `RuleSet.explain` (every rule, full trace) | {explain_rate:,.0f} | |",
        "",
        f"- rules tested per event after indexing: {candidates:.1f} of {len(rules)} on average",
        f"- loading and compiling {args.rules} rules from YAML: {compile_s * 1000:.0f} ms",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; pinned to one core; {watch.note()}; best of "
        f"{args.repeat} runs",
        "- rule regexes run on RE2 (linear time); the baselines use Python's `re` (cached)",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    print(f"ratio: {ratio:.1f}x faster than the StackStorm approach")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)


if __name__ == "__main__":
    main()
