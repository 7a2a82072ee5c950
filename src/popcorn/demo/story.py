"""The incident, played through the same HTTP API a user (or Alertmanager) would call.

A disk fails on a storage appliance (its Bolt agent's disk health says so) and the site's
error rate rises (the signals are ingested as they arrive). Alertmanager posts the two
alerts it groups for the site; the shipped rules start the disk-failure runbook (Bolt
diagnosis, disk failed and device in maintenance in inventory, a request to traffic) and
the error-rate runbook (the signals ranked around the alert). Traffic planning answers
with a plan moving the site's load. Then a regional evacuation drill of one cloud region
is planned, executed on the local AWS endpoint, and returned.

Every check the demo makes is a fact read back from the API (or from AWS); a check that
does not hold stops the story with a `DemoError` naming the step.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from popcorn.client import Client, PopcornAPIError
from popcorn.demo.platform import BoltAgent, DemoError
from popcorn.demo.world import World
from popcorn.events.client import Events
from popcorn.numbers import number, percent, quantity
from popcorn.remediation.client import Remediation
from popcorn.signals.client import SignalsSection
from popcorn.traffic.client import DONE, Traffic

if TYPE_CHECKING:
    from popcorn.demo.triage import TriageFleet

T = TypeVar("T")
DISK_RUNBOOK = "storage.disk_failure"
REPLACEMENT_RUNBOOK = "field.disk_replacement"  # the demo's own pack (demo/field_pack.py)
RANK_RUNBOOK = "service.high_error_rate"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Narrator:
    """Numbered lines saying what happens, each with how long it took."""

    def __init__(self, console: Console):
        self.console = console
        self.timings: dict[str, float] = {}

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    @contextmanager
    def step(self, key: str, title: str) -> Iterator[StepNotes]:
        """Run one step; lines appended to the yielded list are printed under its title."""
        started = time.monotonic()
        bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            _Count(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        with bar:
            notes = StepNotes(bar, bar.add_task(title, total=None))
            try:
                yield notes
            except DemoError:
                raise
            except PopcornAPIError as exc:
                message = f"the API answered {exc.status} {exc.code}: {exc.message}"
                raise DemoError(key, message) from exc
            except (TimeoutError, OSError, ValueError, KeyError) as exc:
                raise DemoError(key, str(exc) or type(exc).__name__) from exc
        took = time.monotonic() - started
        self.timings[key] = round(took, 2)  # the narrative's time: the timings add up to it
        shown = f"{took:.1f} s" if notes.ran is None else f"ran {notes.ran:.1f} s beside the story"
        self.console.print(
            f"  [green]✓[/green] {escape(title)} [dim]({shown})[/dim]", highlight=False
        )
        for note in notes:  # data (host names, keys, file paths): never read as markup
            self.console.print(f"      {escape(str(note))}", highlight=False)


class _Count(ProgressColumn):
    """`done/total` for steps that go through items; nothing for the others."""

    def render(self, task: Task) -> Text:
        return Text("" if task.total is None else f"{task.completed:.0f}/{task.total:.0f}")


class StepNotes(list[str]):
    """A step's notes, and its progress bar for steps that go through many items. `ran` is
    set by a step that tells a part which played beside the story (see `overlap`): the
    seconds that part ran, shown instead of the step's wait for it."""

    def __init__(self, bar: Progress, task: TaskID):
        super().__init__()
        self.bar, self.task = bar, task
        self.ran: float | None = None

    def track(self, items: Iterable[T], total: int) -> Iterator[T]:
        self.bar.update(self.task, total=total, completed=0)
        for item in items:
            yield item
            self.bar.advance(self.task)


def poll(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(every)


def alertmanager_payload(world: World) -> dict[str, Any]:
    """Version 4 of Alertmanager's webhook: the two alerts it groups for the failing site."""
    inc = world.incident
    starts = iso(inc.alert_time)
    common = {"site": inc.site, "severity": "critical"}
    alerts: list[dict[str, Any]] = [
        {
            "status": "firing",
            "labels": {
                **common,
                "alertname": "DiskFailing",
                "instance": f"{inc.device}:9100",
                "job": "node",
                "disk": inc.disk,
            },
            "annotations": {
                "summary": f"Disk {inc.disk} on {inc.device} is failing",
                "description": f"SMART health check failed for /dev/{inc.disk}; "
                "reallocated sectors are climbing.",
            },
            "expr": f'smart_device_healthy{{instance="{inc.device}:9100",disk="{inc.disk}"}} == 0',
        },
        {
            "status": "firing",
            "labels": {**common, "alertname": "HighErrorRate", "service": "open-connect"},
            "annotations": {
                "summary": f"Play errors are high at {inc.site}",
                "description": "cdn_play_errors_rate is above 4/s for 5 minutes.",
            },
            "expr": f'cdn_play_errors_rate{{site="{inc.site}"}} > 4',
        },
    ]
    out = []
    for alert in alerts:
        expr = alert.pop("expr")
        labels = alert["labels"]
        fingerprint = hashlib.sha256(
            ",".join(f"{k}={labels[k]}" for k in sorted(labels)).encode()
        ).hexdigest()[:16]
        out.append(
            {
                **alert,
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": f"http://prometheus.demo:9090/graph?g0.expr={expr}",
                "fingerprint": fingerprint,
            }
        )
    return {
        "version": "4",
        "groupKey": f'{{}}:{{site="{inc.site}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "popcorn",
        "groupLabels": {"site": inc.site},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.demo:9093",
        "alerts": out,
    }


class Story:
    def __init__(
        self,
        *,
        client: Client,
        world: World,
        agent: BoltAgent,
        aws_endpoint: str,
        narrator: Narrator,
        timeout: float,
        triage: TriageFleet | None = None,
    ):
        self.client = client
        self.events = Events(client)
        self.signals = SignalsSection(client)
        self.remediation = Remediation(client)
        self.traffic = Traffic(client)
        self.world = world
        self.agent = agent
        self.aws_endpoint = aws_endpoint
        self.n = narrator
        self.timeout = timeout
        self.triage = triage
        # each drill step's dwell (the time traffic is held before the next shift)
        self.dwell = 0.1 if world.fast else 1.0
        self.out: dict[str, Any] = {}

    # --- the incident ----------------------------------------------------------------------

    def diagnose(self) -> None:
        """The alert, the rules and the two runbooks, up to the appliance's diagnosis."""
        inc = self.world.incident
        self.n.say("")
        self.n.say(
            f"[bold]The incident[/bold] — {inc.device} at {inc.site}, "
            f"alert at {iso(inc.alert_time)}"
        )
        with self.n.step("disk", f"A disk fails: {inc.disk} on {inc.device}") as notes:
            self.agent.write_disks(failing=inc.disk)
            notes.append("its Bolt agent's disk health now reports SMART failure on " + inc.disk)
        title = "The site's error rate rises (signals ingested over the API)"
        with self.n.step("signals", title) as notes:
            samples = 0
            batches = list(self.world.signal_batches(tail=True, per_batch=500))
            for payload in notes.track(batches, len(batches)):
                samples += int(self.signals.ingest(payload["series"])["samples"])
            notes.append(f"{samples:,} samples of {len(self.world.signals.keys):,} signals")
        self.out["ingested_samples"] = samples
        with self.n.step("alert", "Alertmanager posts its alerts (webhook, version 4)") as notes:
            answer = self.events.alertmanager(alertmanager_payload(self.world))
            event_ids = [e["id"] for e in answer["events"]]
            notes.append(f"DiskFailing and HighErrorRate stored as events {event_ids}")
        self.out["events"] = event_ids
        with self.n.step("rules_match", "Rules match and start runbooks") as notes:
            started = poll(
                "the rules' runbook actions", lambda: self._runbooks(event_ids), self.timeout
            )
            for runbook, execution in sorted(started.items()):
                notes.append(f"{runbook} → execution {execution}")
        if set(started) != {DISK_RUNBOOK, RANK_RUNBOOK}:
            raise DemoError(
                "rules_match", f"expected {DISK_RUNBOOK} and {RANK_RUNBOOK}, got {started}"
            )
        with self.n.step("ranking", "The runbook ranks the signals around the alert") as notes:
            ranked = self._wait(started[RANK_RUNBOOK])
            notes += self._ranking(ranked)
        with self.n.step("bolt", "It diagnoses the appliance through its Bolt agent") as notes:
            fixed = self._wait(started[DISK_RUNBOOK])
            notes += self._diagnosis(fixed)

    def respond(self) -> dict[str, Any]:
        """What follows the diagnosis: inventory, the traffic shift, the approval, the drill
        and the triage; returns everything the story found (with `diagnose`'s part)."""
        with self.n.step(
            "inventory_check", "The disk is failed and the device in maintenance"
        ) as notes:
            notes += self._inventory()
        with self.n.step("shift", "Traffic planning moves the site's load away") as notes:
            notes += self._shift()
        with self.n.step(
            "approval", "An operator approves sending a technician (a change ticket)"
        ) as notes:
            notes += self._approval()
        self._drill()
        if self.triage is not None:
            from popcorn.demo import triage

            self.out["triage"] = triage.play(self.client, self.triage, self.n, self.timeout)
        return self.out

    def _runbooks(self, event_ids: list[int]) -> dict[str, int] | None:
        """Runbook executions the events' matching rules started, once every event is processed."""
        started: dict[str, int] = {}
        for event_id in event_ids:
            detail = self.events.get(event_id)
            if detail["status"] == "pending":
                return None
            if detail["status"] != "processed":
                raise DemoError("rules_match", f"event {event_id} is {detail['status']}")
            for match in detail.get("matches", []):
                for action in match.get("actions", []):
                    if action["type"] != "runbook":
                        continue
                    if action["status"] == "failed":
                        raise DemoError("rules_match", f"{action['rule_name']}: {action['error']}")
                    response = action.get("response") or {}
                    if action["status"] != "succeeded" or not response.get("execution_id"):
                        return None
                    started[str(response["runbook"])] = int(response["execution_id"])
        return started

    def _wait(self, execution_id: int) -> dict[str, Any]:
        found = self.remediation.wait(execution_id, timeout=self.timeout)
        if found["status"] == "waiting_approval":
            raise DemoError("runbook", f"execution {execution_id} waits for an approval")
        detail: dict[str, Any] = self.remediation.execution(execution_id)
        if detail["status"] != "succeeded":
            raise DemoError(
                "runbook",
                f"{detail['runbook']} execution {execution_id} ended {detail['status']}: "
                f"{detail.get('error') or 'no error recorded'}",
            )
        return detail

    def _ranking(self, execution: dict[str, Any]) -> list[str]:
        evidence = [e for e in execution["evidence"] if e.get("source") == "signals"]
        if not evidence:
            raise DemoError("ranking", f"execution {execution['id']} attached no signal evidence")
        analysis = self.signals.analysis(int(evidence[0]["analysis_id"]))
        findings = (analysis.get("result") or {}).get("findings") or []
        names = [f["name"] for f in findings]
        inc = self.world.incident
        ranks = {c: names.index(c) + 1 if c in names else None for c in inc.culprits}
        window = len(inc.planted)
        top = names[:window]
        first = bool(names) and names[0] in inc.planted
        within = all(r is not None and r <= window for r in ranks.values())
        self.out["analysis"] = {
            "id": analysis["id"],
            "execution_id": execution["id"],
            "signal_count": analysis["signal_count"],
            "top": names[:10],
            "culprits": inc.culprits,
            "culprit_ranks": ranks,
            "planted_in_top": sum(1 for n in top if n in inc.planted),
            "planted": len(inc.planted),
            "culprits_ranked_first": first and within,
        }
        if not (first and within):
            raise DemoError(
                "ranking",
                f"the planted culprits are not on top (ranks {list(ranks.values())} of "
                f"{len(names)}; first is {names[0] if names else 'nothing'})",
            )
        lines = [f"{analysis['signal_count']:,} signals ranked; top 5:"]
        for i, name in enumerate(names[:5], start=1):
            mark = " [yellow](planted culprit)[/yellow]" if name in inc.culprits else ""
            lines.append(f"  {i}. {name}{mark}")
        lines.append(
            f"culprits at ranks {', '.join(str(r) for r in ranks.values())}; "
            f"{self.out['analysis']['planted_in_top']} of the top {window} were planted"
        )
        return lines

    def _diagnosis(self, execution: dict[str, Any]) -> list[str]:
        steps = {s["name"]: s for s in execution["steps"]}
        report = (steps["check_disks"]["outputs"] or {}).get("devices") or [{}]
        failed = (steps["decide"]["outputs"] or {}).get("failed") or []
        disk = self.world.incident.disk
        self.out["disk_failure"] = {
            "execution_id": execution["id"],
            "status": execution["status"],
            "failing": report[0].get("failing"),
            "steps": {name: s["status"] for name, s in steps.items()},
        }
        if [f["disk"] for f in failed] != [disk]:
            raise DemoError("bolt", f"the runbook decided {failed}, not {disk}")
        reasons = "; ".join(failed[0].get("reasons") or [])
        return [
            f"Bolt (mutual TLS) reports {len(report[0].get('disks') or [])} disks, "
            f"failing: {', '.join(report[0].get('failing') or [])}",
            f"decided: {disk} failed ({reasons})",
        ]

    def _inventory(self) -> list[str]:
        inc = self.world.incident
        device = self.client.get(f"/api/v1/inventory/devices/{inc.device}")
        parts = self.client.get("/api/v1/inventory/components", device=inc.device, name=inc.disk)
        component = next((c for c in parts["items"] if c["name"] == inc.disk), None)
        status = component["status"] if component else None
        self.out["inventory"] = {
            "device": inc.device,
            "device_status": device["status"],
            "component": inc.disk,
            "component_status": status,
        }
        if device["status"] != "maintenance" or status != "failed":
            raise DemoError(
                "inventory_check",
                f"device is {device['status']!r} and disk {inc.disk} is {status!r}",
            )
        return [f"{inc.device}: {device['status']}; {inc.disk}: {status}"]

    def _approval(self) -> list[str]:
        """`field.disk_replacement` waits for a person; the demo's admin answers it."""
        inc = self.world.incident
        started = self.remediation.start(
            REPLACEMENT_RUNBOOK, {"device": inc.device, "disk": inc.disk}
        )
        waiting = self.remediation.wait(int(started["id"]), timeout=self.timeout)
        if waiting["status"] != "waiting_approval":
            raise DemoError("approval", f"execution {waiting['id']} is {waiting['status']}")
        (pending,) = [a for a in waiting["approvals"] if a["status"] == "pending"]
        ticket = f"CHG-{1000 + self.world.seed}"
        self.remediation.approve(
            int(pending["id"]), {"ticket": ticket}, comment="spare disk on site; visit at 09:00"
        )
        done = self.remediation.wait(int(started["id"]), timeout=self.timeout)
        answered = next(a for a in done["approvals"] if a["id"] == pending["id"])
        self.out["approval"] = {
            "execution_id": done["id"],
            "approval_id": answered["id"],
            "step": answered["step"],
            "status": answered["status"],
            "answered_by": answered["answered_by"],
            "ticket": (answered.get("payload") or {}).get("ticket"),
            "execution_status": done["status"],
        }
        if done["status"] != "succeeded":
            raise DemoError("approval", f"execution {done['id']} ended {done['status']}")
        return [
            f"execution {done['id']} ({REPLACEMENT_RUNBOOK}) asked: {answered['message']}",
            f"approval {answered['id']} {answered['status']} by {answered['answered_by']} "
            f"with {ticket}; the replacement is scheduled",
        ]

    def _shift(self) -> list[str]:
        site = self.world.incident.site

        def plan() -> dict[str, Any] | None:
            page = self.client.get("/api/v1/traffic/plans", kind="shift", limit=50)
            return next((p for p in page["items"] if p["evacuated"] == [site]), None)

        found = poll(f"a traffic plan moving {site}'s load", plan, self.timeout)
        summary = found["summary"]
        result = self.client.get(f"/api/v1/traffic/plans/{found['id']}")["result"]
        start = result.get("start_loads") or {}
        end = result["steps"][-1]["loads"] if result.get("steps") else start
        moved = {
            name: (start.get(name) or 0.0, end.get(name) or 0.0)
            for name in start
            if abs((end.get(name) or 0.0) - (start.get(name) or 0.0)) > 1e-6
        }
        self.out["shift_plan"] = {
            "id": found["id"],
            "feasible": found["feasible"],
            "site": site,
            "steps": summary.get("steps"),
            "max_utilisation": summary.get("max_utilisation"),
            "site_load_before": start.get(site, 0.0),
            "site_load_after": end.get(site, 0.0),
            "moved": {name: list(loads) for name, loads in moved.items()},
        }
        if not found["feasible"]:
            raise DemoError("shift", f"plan {found['id']} is infeasible: {summary.get('reasons')}")
        if not start.get(site):
            raise DemoError("shift", f"{site} serves no load in the demo world: nothing to move")
        peak = summary.get("max_utilisation")
        receivers = ", ".join(
            f"{name} {number(a)} → {quantity(b, 'Gbps')}"
            for name, (a, b) in sorted(moved.items())
            if name != site
        )
        return [
            f"plan {found['id']}: {site}'s {quantity(start[site], 'Gbps')} to the other CDN "
            f"sites in {summary.get('steps')} steps ({receivers}); the other sites unchanged",
            f"peak utilisation {percent(peak)} of usable capacity",
        ]

    # --- the drill -------------------------------------------------------------------------

    def _aws_state(self) -> dict[str, Any]:
        from popcorn.traffic.aws import (
            autoscaling_client,
            get_capacity,
            get_weights,
            route53_client,
        )

        regions = [r for r in self.traffic.regions(kind="cloud")]
        route53 = route53_client(endpoint_url=self.aws_endpoint)
        first = regions[0]
        records = get_weights(route53, first["route53_zone_id"], first["route53_record_name"])
        return {
            "weights": {k: int(v.weight) for k, v in sorted(records.items())},
            "instances": {
                r["name"]: get_capacity(
                    autoscaling_client(r["aws_region"], endpoint_url=self.aws_endpoint),
                    r["asg_name"],
                ).desired
                for r in regions
            },
        }

    def _run(self, plan_id: int, what: str) -> dict[str, Any]:
        execution = self.traffic.execute(plan_id, dwell_seconds=self.dwell, poll_seconds=0.2)

        def ended() -> dict[str, Any] | None:
            found = self.traffic.execution(int(execution["id"]))
            return found if found["status"] in DONE else None

        done = poll(f"execution {execution['id']}", ended, self.timeout)
        if done["status"] != "succeeded":
            raise DemoError(what, f"execution {done['id']} ended {done['status']}: {done['error']}")
        return done

    def _drill(self) -> None:
        names = sorted(r["name"] for r in self.world.cloud_regions)
        region = names[self.world.seed % len(names)]
        self.n.say("")
        self.n.say(
            f"[bold]Regional evacuation drill[/bold] — {escape(region)}, on the local AWS endpoint"
        )
        before = self._aws_state()
        with self.n.step("evacuation", f"Plan the evacuation of {region}") as notes:
            plan = self.traffic.evacuate(
                [region],
                kind="cloud",
                steps=4,
                dwell_seconds=self.dwell,
                reason=f"evacuation drill of {region}",
            )
            steps = plan["result"]["steps"]
            overloaded = [s["index"] for s in steps if s["overloaded"]]
            summary = plan["summary"]
            scale_up = ", ".join(
                f"{name} {a} → {b} instances"
                for name, (a, b) in sorted(summary["scale_up"].items())
            )
            notes.append(
                f"plan {plan['id']}: scale up {scale_up or 'nothing'}, then {len(steps)} steps"
            )
            notes.append(_headroom_note(plan))
        if not plan["feasible"] or overloaded:
            raise DemoError(
                "evacuation",
                f"plan {plan['id']} feasible={plan['feasible']} overloaded={overloaded}",
            )
        with self.n.step("execute", f"Execute it: scale up, then shift {region}'s weight") as notes:
            done = self._run(plan["id"], "execute")
            during = self._aws_state()
            notes.append(_aws_note(during))
        if during["weights"].get(region) != 0:
            raise DemoError("execute", f"{region} still has Route 53 weight {during['weights']}")
        with self.n.step("return", f"Traffic returns to {region}") as notes:
            back = self.traffic.plan_return(plan["id"], dwell_seconds=self.dwell)
            returned = self._run(back["id"], "return")
            after = self._aws_state()
            notes.append(_aws_note(after))
        restored = after["instances"] == before["instances"] and after["weights"].get(region, 0) > 0
        self.out["evacuation"] = {
            "region": region,
            "plan_id": plan["id"],
            "feasible": plan["feasible"],
            "steps": len(steps),
            "overloaded_steps": overloaded,
            "max_utilisation": plan["summary"]["max_utilisation"],
            "execution_id": done["id"],
            "status": done["status"],
            "return_plan_id": back["id"],
            "return_execution_id": returned["id"],
            "return_status": returned["status"],
            "aws": {"before": before, "during": during, "after": after},
            "traffic_returned": restored,
        }
        if not restored:
            raise DemoError("return", f"AWS did not come back: before {before}, after {after}")


def _aws_note(state: dict[str, Any]) -> str:
    """`Route 53 weights eu-west-1 74, us-east-1 0, …; instances eu-west-1 12, …`."""
    weights = ", ".join(f"{k} {v}" for k, v in sorted(state["weights"].items()))
    instances = ", ".join(f"{k} {v}" for k, v in sorted(state["instances"].items()))
    return f"Route 53 weights {weights}; instances {instances}"


def _headroom_note(plan: dict[str, Any]) -> str:
    """Peak utilisation read against the headroom target: 100% of usable capacity is the
    plan's goal (the headroom is kept spare on top of it), not an overload."""
    peak = float(plan["summary"]["max_utilisation"] or 0.0)
    headrooms = {float(r.get("headroom") or 0.0) for r in plan["inputs"].get("regions", [])}
    headroom = max(headrooms) if headrooms else 0.0
    raw = peak * (1 - headroom)
    return (
        f"peak utilisation {percent(peak)} of usable capacity, {percent(raw)} of raw capacity: "
        f"each region keeps {percent(headroom)} headroom spare, and the plan never goes past "
        "100% of what is left"
    )
