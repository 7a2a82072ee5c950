"""One run of `popcorn demo`: build the world, start everything, play the story, clean up.

Whatever was started is stopped on the way out (success, failure, Ctrl-C or SIGTERM),
in reverse order: the Bolt agent, the platform's processes, the AWS endpoint, the
embedded Redis. With `serve`, the way out is Ctrl-C or SIGTERM after the story.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from rich.console import Console

from popcorn.demo import build, platform
from popcorn.demo import devicelab as devicelab_demo
from popcorn.demo import ml as ml_demo
from popcorn.demo import notebooks as notebooks_demo
from popcorn.demo import security as security_demo
from popcorn.demo import studio as studio_demo
from popcorn.demo import triage as triage_demo
from popcorn.demo.overlap import Track
from popcorn.demo.platform import AwsSandbox, BoltAgent, DemoError, Platform
from popcorn.demo.story import Narrator, Story, iso, poll
from popcorn.demo.world import World, generate

# General workers beside the alerts one: the Spark job and the two ML runs each hold one
# for many seconds, and the incident's runbooks, approval and drill need one at once.
JOB_WORKERS = 4


@dataclass
class Options:
    host: str
    port: int
    seed: int
    fast: bool
    serve: bool
    force: bool
    timeout: float


@dataclass
class DemoRun:
    options: Options
    console: Console
    narrator: Narrator = field(init=False)
    platform: Platform | None = None
    aws: AwsSandbox | None = None
    agent: BoltAgent | None = None
    redis_pid: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    agent_token: str = ""
    prepared: bool = False
    tls: tuple[Path, Path, Path] | None = None
    triage: triage_demo.TriageFleet | None = None
    devicelab: devicelab_demo.DeviceLab | None = None
    notebook_runs: dict[str, int] = field(default_factory=dict)
    ml_runs: list[int] = field(default_factory=list)
    lab_seed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.narrator = Narrator(self.console)

    def run(self, on_ready: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Play the demo, hand the summary to `on_ready`, serve if asked, then stop it all.

        The summary is kept in `self.summary` even when a step fails.
        """
        started = time.monotonic()
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            world = self._run(started)
            if self.options.serve:
                on_ready(self.summary)
                self._serve(world)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleaning up is not interruptible
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                self.stop()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, previous)
        if not self.options.serve:
            on_ready(self.summary)
        return self.summary

    def _run(self, started: float) -> World:
        o, n = self.options, self.narrator
        url = f"http://{o.host}:{o.port}"
        if platform.port_in_use(o.host, o.port):
            raise DemoError("platform", f"{o.host}:{o.port} is in use; pick another with --port")
        size = "small world (--fast)" if o.fast else "full world"
        n.say(f"[bold]Popcorn demo[/bold] — seed {o.seed}, {size}, in {platform.home()}")
        with n.step("home", "Prepare the installation (migrations)") as notes:
            found = platform.prepare_home(force=o.force, seed=o.seed, fast=o.fast)
            self.prepared = True
            self.aws = AwsSandbox()
            self.aws.launch()  # it starts while the world is built (see AwsSandbox)
            _log_to_file()
            from popcorn.db import upgrade

            upgrade()
            notes.append(
                {
                    "new": "a new installation",
                    "demo": "the previous demo world was wiped",
                    "forced": "the installation's data was wiped (--force)",
                }[found]
            )
        world = self._build(url)
        title = f"Start the platform: API (Gunicorn), {JOB_WORKERS} workers, scheduler"
        with n.step("platform", title) as notes:
            assert self.platform is not None
            self.platform.wait_ready(o.timeout)
            pids = ", ".join(f"{name} {pid}" for name, pid in self.platform.pids().items())
            notes.append(f"{url}  (pids: {pids}); started while the world's last parts were built")
        self._launch_agents(world, url)
        from popcorn.client import Client

        with Client(url, self.summary["admin_token"], timeout=120) as client:
            title = "Queue two ML training runs; start the device lab's agents"
            with n.step("beside", title) as notes:
                failure_model = ml_demo.submit(client, "test-failure", {"source": "lab"})
                recommendations = ml_demo.start(client, fast=o.fast)
                self.ml_runs = [int(failure_model["id"]), int(recommendations["id"])]
                self.devicelab = devicelab_demo.launch(
                    url=url, agent_token=self.agent_token, fast=o.fast
                )
                notes.append("they train and register while the incident plays")
            tracks = {
                "ml": self._track_ml(url, recommendations),
                "notebooks": self._track_notebooks(),
            }
            self._start_agent(world, url)
            story = Story(
                client=client,
                world=world,
                agent=self._agent(),
                aws_endpoint=self._aws().endpoint,
                narrator=n,
                timeout=o.timeout,
                triage=self.triage,
            )
            tracks["devicelab"] = self._track_devicelab(url, failure_model)
            story.diagnose()
            self.summary.update(story.respond())
        self._tell_tracks(tracks)
        self.summary["timings"] = {
            **n.timings,
            "total": round(time.monotonic() - started, 2),
        }
        self.summary["links"] = _links(url, self.summary)
        self.summary["processes"] = self._pids()
        self.summary["ok"] = True
        self.summary["serving"] = o.serve
        return world

    # The parts that play beside the incident (see `overlap`): the ML runs were submitted
    # and the lab's agents launched when the platform came up; the notebook runs were queued
    # while the world was built.

    def _track_ml(self, url: str, run: dict[str, Any]) -> Track[dict[str, Any]]:
        from popcorn.client import Client

        timeout, token = max(self.options.timeout, 300), self.summary["admin_token"]

        def play() -> dict[str, Any]:
            with Client(url, token, timeout=120) as client:
                return ml_demo.play(client, run, timeout=timeout)

        return Track("ml", play)

    def _track_notebooks(self) -> Track[dict[str, Any]]:
        runs, timeout = self.notebook_runs, max(self.options.timeout, 300)
        return Track("notebooks", lambda: notebooks_demo.wait(runs, timeout))

    def _track_devicelab(self, url: str, model_run: dict[str, Any]) -> Track[dict[str, Any]]:
        from popcorn.client import Client

        o, token, lab = self.options, self.summary["admin_token"], self.devicelab
        assert lab is not None

        def play() -> dict[str, Any]:
            with Client(url, token, timeout=120) as client:

                def train_model() -> dict[str, Any]:
                    run, _ = ml_demo.wait(
                        client, model_run, "test-failure", timeout=max(o.timeout, 300)
                    )
                    return {"run_id": run["id"]}

                devicelab_demo.play(
                    url=url,
                    admin_token=token,
                    agent_token=self.agent_token,
                    timeout=o.timeout,
                    fast=o.fast,
                    train_model=train_model,
                    lab=lab,
                    seeded=self.lab_seed,
                )
            return lab.summary

        return Track("devicelab", play)

    def _tell_tracks(self, tracks: dict[str, Track[Any]]) -> None:
        """Each part that played beside the incident, in the story's order, once it ended."""
        n = self.narrator
        title = "Train recommendations on Metaflow, promote it, predict through the API"
        with n.step("ml", title) as notes:
            self.summary["ml"] = tracks["ml"].result()
            notes.ran = tracks["ml"].seconds
            notes.append(ml_demo.describe(self.summary["ml"]))
        with n.step(
            "notebooks", "Notebook jobs: a scheduled report, a failing check, Spark"
        ) as notes:
            self.summary["notebooks"] = tracks["notebooks"].result()
            notes.ran = tracks["notebooks"].seconds
            notes.append(notebooks_demo.describe(self.summary["notebooks"]))
        with n.step(
            "devicelab", "Device lab: a pipeline hook runs a suite on device agents"
        ) as notes:
            self.summary["devicelab"] = lab = tracks["devicelab"].result()
            notes.ran = tracks["devicelab"].seconds
            notes.append(
                f"{lab['agents']} agents ran {lab['executions']} tests: {lab['stage_status']}, "
                f"{lab['failed']} failed ({lab['new_failures']} new, culprit {lab['culprit']}), "
                f"{lab['flaky']} flaky; selection by ML's {lab['model']} (run "
                f"{lab['model_run_id']}) ran {100 * (lab['selected_fraction'] or 0):.0f} %"
            )
        self.summary["beside_the_story"] = {k: round(t.seconds, 2) for k, t in tracks.items()}

    def _build(self, url: str) -> World:
        o, n = self.options, self.narrator
        world_dir = platform.home() / "demo"
        with n.step("generate", "Generate the world") as notes:
            world = generate(o.seed, fast=o.fast, now=time.time())
            c = world.counts
            notes.append(
                f"{c['regions']} cloud regions, {c['sites']} CDN sites, "
                f"{c['device_models']} device models, {c['devices']:,} devices, "
                f"{c['components']:,} components, "
                f"{c['links']:,} links"
            )
            notes.append(
                f"{c['signals']:,} signals with {c['samples']:,} one-minute samples; "
                f"{c['client_groups']} client groups with a week of demand"
            )
        with n.step("inventory", "Import the network into inventory") as notes:
            result = build.inventory(world, world_dir)
            notes.append(f"{result['totals']['create']:,} objects in one all-or-nothing import")
        with n.step("signals_store", "Store a day of signals and a week of demand") as notes:
            stored = build.signals(world, notes.track)
            notes.append(f"{stored:,} samples (the incident's last minutes arrive later)")
        with n.step("traffic", "Model traffic: cloud regions, CDN sites, client groups") as notes:
            model = build.traffic(world)
            notes.append(
                f"{len(model['synced']['created'])} CDN sites from inventory, "
                f"{model['costs']['pairs']} latencies"
            )
        with n.step(
            "rules", "Load the shipped rule packs (enforced); find the runbook packs"
        ) as notes:
            rules = build.rules()
            packs = build.packs()
            notes.append("rules: " + ", ".join(r["name"] for r in rules["rules"]))
            notes.append("runbook packs: " + ", ".join(packs))
        with n.step("certificates", "Create a certificate authority; issue Bolt certificates"):
            tls = build.certificates(world, world_dir)
        admin, agent_token = build.tokens()
        # The platform's processes start now and come up while the rest is built (their
        # start-up is CPU on the machine's other core); they may call the demo's AWS.
        security_demo.allow(self._aws().url)
        self.platform = Platform(o.host, o.port, job_workers=JOB_WORKERS)
        self.platform.start()
        # queued first, the notebook runs (the report's tick is due at once) are on the
        # workers as they come up, and mostly done when the incident needs them
        with n.step("notebooks_start", "Define notebook jobs; their runs queue for the workers"):
            self.notebook_runs = notebooks_demo.start(world_dir / "notebooks", o.seed)
        self.summary.update(
            {
                "ok": False,
                "seed": o.seed,
                "fast": o.fast,
                "home": str(platform.home()),
                "url": url,
                "admin_token": admin,
                "world": {**world.counts, "rules": len(rules["rules"]), "runbook_packs": packs},
                "incident": {
                    "site": world.incident.site,
                    "device": world.incident.device,
                    "disk": world.incident.disk,
                    "alert_time": iso(world.incident.alert_time),
                },
            }
        )
        with n.step(
            "studio", "Track a show in the studio: shots, tasks, a review playlist"
        ) as notes:
            self.summary["studio"] = studio_demo.build()
            notes.append(
                "{shots} shots, {tasks} tasks, {versions} versions".format(**self.summary["studio"])
            )
        title = "Plant hosts' file trees for triage; issue their agents' certificates"
        with n.step("triage_hosts", title) as notes:
            self.triage = triage_demo.build(world, world_dir / "triage", build.AUTHORITY)
            notes.append(self.triage.describe())
        with n.step("aws", "Start a local AWS endpoint; Auto Scaling groups and Route 53") as notes:
            endpoint = self._aws().start()
            bound = _bind_sandbox(endpoint)
            notes.append(f"{endpoint}: zone {bound['record_name']}, {len(bound['regions'])} groups")
        self.summary["aws_endpoint"] = endpoint
        title = "Watch a cloud account and a Git repository; repo a role from CloudTrail"
        with n.step("security", title) as notes:
            self.summary["security"] = security_demo.build(endpoint, world_dir / "security")
            notes.append(
                "{items} items, {open_issues} open issues, {fixed_issues} fixed; "
                "{repoed_role} repoed".format(**self.summary["security"])
            )
        title = "Seed the device lab: a test catalog with planted causes, past builds' results"
        with n.step("devicelab_seed", title) as notes:
            self.lab_seed = devicelab_demo.seed(fast=o.fast)
            notes.append(
                "{tests} tests on {families} device families, {history_builds} past builds".format(
                    **self.lab_seed
                )
            )
        platform.write_marker({"built": True, "incident": self.summary["incident"]})
        self.agent_token = agent_token
        self.tls = tls
        return world

    def _launch_agents(self, world: World, url: str) -> None:
        """Start every Bolt agent process at once; `_start_agent` waits for their heartbeats
        (their start-ups overlap each other and the steps in between)."""
        assert self.tls is not None
        self.agent = BoltAgent(
            device=world.incident.device,
            popcorn_url=url,
            token=self.agent_token,
            tls=self.tls,
            disks=world.incident.disks,
        )
        self.agent.start()
        if self.triage is not None:
            triage_demo.start(self.triage, popcorn_url=url, token=self.agent_token)

    def _start_agent(self, world: World, url: str) -> None:
        with self.narrator.step("agent", "Start the appliance's Bolt agent") as notes:
            agent = self._agent()
            from popcorn.client import Client

            with Client(url, self.summary["admin_token"]) as client:

                def registered() -> bool | None:
                    if not agent.alive():
                        raise DemoError("agent", "the Bolt agent exited; see logs/bolt-agent.log")
                    found = client.get(f"/api/v1/inventory/devices/{world.incident.device}")
                    return True if found.get("agent_url") == agent.url else None

                poll("the Bolt agent's first heartbeat", registered, self.options.timeout)
            notes.append(f"{agent.url}, mutual TLS, heartbeats to {url} registered it")
        fleet = self.triage
        if fleet is None:
            return
        with self.narrator.step("triage_agents", "Start the triage hosts' Bolt agents") as notes:
            with Client(url, self.summary["admin_token"]) as client:
                poll(
                    "the triage agents' first heartbeats",
                    lambda: triage_demo.registered(fleet, client),
                    self.options.timeout,
                    every=0.2,
                )
            notes.append(f"{len(fleet.agents)} agents with {triage_demo.COLLECTORS}, registered")

    def _agent(self) -> BoltAgent:
        assert self.agent is not None
        return self.agent

    def _aws(self) -> AwsSandbox:
        assert self.aws is not None
        return self.aws

    def _pids(self) -> dict[str, int]:
        pids = dict(self.platform.pids()) if self.platform else {}
        if self.agent is not None and self.agent.process is not None:
            pids["bolt-agent"] = self.agent.process.pid
        if self.triage is not None:
            pids.update(self.triage.pids())
        if self.aws is not None and self.aws.process is not None:
            pids["aws"] = self.aws.process.pid
        if self.devicelab is not None:
            pids.update(self.devicelab.pids())
        from popcorn.config import get_settings
        from popcorn.jobs import embedded_redis_server

        if not get_settings().redis_url:
            pids["redis"] = int(embedded_redis_server().pid)
        return pids

    def _serve(self, world: World) -> None:
        """Keep everything running until Ctrl-C or SIGTERM, client demand flowing in."""
        from popcorn.client import Client, PopcornAPIError
        from popcorn.signals.client import SignalsSection

        idle = threading.Event()
        last = int(world.demand.timestamps[-1])
        log = logging.getLogger("popcorn.demo")
        try:
            with Client(self.summary["url"], self.summary["admin_token"]) as client:
                signals = SignalsSection(client)
                while not idle.wait(1.0):
                    if self.agent is not None and not self.agent.alive():
                        self.agent.start()  # a host's agent comes back after a crash
                    for agent in self.triage.agents if self.triage else []:
                        if not agent.alive():
                            agent.start()
                    fed, payload = world.demand_after(last, time.time())
                    if payload is None:
                        continue
                    try:
                        signals.ingest(payload["series"])
                        last = fed
                    except PopcornAPIError as exc:
                        log.warning("client demand not stored (retried next minute): %s", exc)
        except KeyboardInterrupt:
            self.console.print()

    def stop(self) -> None:
        """Stop everything the demo started, all at once, and say so."""
        if not self.prepared:
            return
        with self.narrator.step("stop", "Stop everything the demo started"):
            if self.platform is not None and not self.summary.get("ok"):
                self._cancel_runs()
            parts: list[_Stoppable | None] = [
                self.triage, self.devicelab, self.agent, self.platform, self.aws
            ]  # fmt: skip
            running = [part for part in parts if part is not None]
            for part in running:  # all are asked at once; then each is waited for
                part.signal_stop()
            for part in running:
                part.stop()
            self.redis_pid = platform.stop_embedded_redis()
            from popcorn.db import dispose_engines

            dispose_engines()

    def _cancel_runs(self) -> None:
        """A demo stopped before its summary cancels the runs it queued: a worker's warm
        shutdown would otherwise wait for a training run or a Spark job no one will read."""
        from popcorn.client import Client, PopcornAPIError

        notebooks_demo.cancel(self.notebook_runs)
        if not self.ml_runs:
            return
        with Client(self.summary["url"], self.summary["admin_token"], timeout=5) as client:
            for run_id in self.ml_runs:
                with contextlib.suppress(PopcornAPIError):  # ended already, or the API is gone
                    client.post(f"/api/v1/ml/runs/{run_id}/cancel")


class _Stoppable(Protocol):
    def signal_stop(self) -> None: ...

    def stop(self) -> None: ...


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _log_to_file() -> None:
    """The platform's and libraries' logs go to POPCORN_HOME/logs/demo.log, not the narrative."""
    logs = platform.home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(logs / "demo.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _bind_sandbox(endpoint: str) -> dict[str, Any]:
    from popcorn.context import acting_as
    from popcorn.db import session_scope
    from popcorn.traffic import executions as execution_service

    with acting_as(build.ACTOR), session_scope() as session:
        return execution_service.bind_sandbox(session=session, endpoint_url=endpoint, prefix="demo")


def _links(url: str, summary: dict[str, Any]) -> dict[str, str]:
    links = {"console": f"{url}/ui/", "api_docs": f"{url}/docs"}
    if "disk_failure" in summary:
        links["execution"] = (
            f"{url}/ui/runbooks/executions/{summary['disk_failure']['execution_id']}"
        )
    if "analysis" in summary:
        links["analysis"] = f"{url}/ui/signals/analyses/{summary['analysis']['id']}"
    if "inventory" in summary:
        links["device"] = f"{url}/ui/inventory/devices/{summary['inventory']['device']}"
    if "evacuation" in summary:
        links["evacuation_plan"] = f"{url}/ui/traffic/plans/{summary['evacuation']['plan_id']}"
    if "studio" in summary:
        links["studio_playlist"] = f"{url}/ui/studio/playlists/{summary['studio']['playlist_id']}"
    if "triage" in summary:
        links["triage"] = f"{url}/ui/triage/collections/{summary['triage']['collection_id']}"
    if "ml" in summary:
        links["ml_run"] = f"{url}/ui/ml/runs/{summary['ml']['run_id']}"
    if "security" in summary:
        links["security"] = f"{url}/ui/security/accounts/{summary['security']['account']}"
    for name, found in summary.get("notebooks", {}).items():
        links[f"notebook_{name}"] = f"{url}/ui/notebooks/runs/{found['run_id']}"
    if "devicelab" in summary:
        links["devicelab_run"] = f"{url}/ui/devicelab/runs/{summary['devicelab']['run_id']}"
        links["failure_model_run"] = f"{url}/ui/ml/runs/{summary['devicelab']['model_run_id']}"
    return links
