"""`popcorn demo`: the first thing a new user runs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from popcorn.commands import host_port


def _print_summary(console: Console, summary: dict[str, Any], serve: bool) -> None:
    links = summary.get("links", {})
    timings = summary.get("timings", {})
    steps = [k for k in timings if k != "total"]
    split = steps.index("platform") if "platform" in steps else len(steps)
    # the steps before the platform is up build the world; those after it tell the story
    build = sum(timings[k] for k in steps[:split])
    story = sum(timings[k] for k in steps[split + 1 :])
    console.print()
    console.print("[bold]Summary[/bold]")
    rows = [
        ("console", links.get("console", "")),
        ("admin token", summary.get("admin_token", "")),
        ("runbook execution", links.get("execution", "")),
        ("signal analysis", links.get("analysis", "")),
        ("device", links.get("device", "")),
        ("evacuation plan", links.get("evacuation_plan", "")),
        ("review playlist", links.get("studio_playlist", "")),
        ("host triage", links.get("triage", "")),
        ("security account", links.get("security", "")),
        ("ML run", links.get("ml_run", "")),
        *(
            (f"notebook {key.removeprefix('notebook_')}", value)
            for key, value in links.items()
            if key.startswith("notebook_")
        ),
        ("device lab run", links.get("devicelab_run", "")),
        ("failure model run", links.get("failure_model_run", "")),
        ("API docs", links.get("api_docs", "")),
        (
            "timings",
            f"world {build:.1f} s, platform {timings.get('platform', 0):.1f} s, "
            f"story {story:.1f} s, total {timings.get('total', 0):.1f} s",
        ),
    ]
    for label, value in rows:
        console.print(f"  [cyan]{label:<18}[/cyan] {escape(str(value))}", highlight=False)
    console.print()
    if serve:
        console.print(
            "Popcorn keeps running with the demo world; sign in to the console with the "
            "admin token. Ctrl-C stops everything."
        )
    else:
        console.print(
            "The story is over and everything the demo started is stopped; the world stays in "
            "POPCORN_HOME. Run `popcorn demo --serve` to keep the platform running and explore "
            "the incident in the console."
        )


@click.command("demo")
@host_port
@click.option("--seed", default=1, show_default=True, help="The same seed builds the same world.")
@click.option("--fast", is_flag=True, help="A small world (4 sites, ~60 devices) for tests.")
@click.option("--serve", is_flag=True, help="Keep the platform running after the story.")
@click.option("--force", is_flag=True, help="Wipe an installation that holds non-demo data.")
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    help="Seconds each step may take (a runbook to finish, a plan to execute).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def command(
    host: str,
    port: int,
    seed: int,
    fast: bool,
    serve: bool,
    force: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Build a demo world and play one incident end to end on real processes.

    Migrations, then the API, workers and scheduler, a local AWS endpoint and a Bolt
    agent are started; a disk fails, Alertmanager alerts, runbooks diagnose and fix,
    traffic moves, a regional evacuation drill runs and returns, and a group of
    appliances with planted oddities is triaged through their agents. Works in
    POPCORN_HOME: a previous demo world there is rebuilt.
    """
    from popcorn.demo.platform import DemoError
    from popcorn.demo.run import DemoRun, Options

    console = Console(stderr=as_json, highlight=False, soft_wrap=True)
    options = Options(host, port, seed, fast, serve, force, timeout)
    demo = DemoRun(options, console)

    def ready(summary: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(summary, indent=2, default=str))
            sys.stdout.flush()
        else:
            _print_summary(console, summary, serve)

    try:
        demo.run(ready)
    except DemoError as exc:
        if as_json:
            failed = {**demo.summary, "ok": False, "stopped_at": exc.step, "error": exc.message}
            click.echo(json.dumps(failed, indent=2, default=str))
        raise click.ClickException(f"demo stopped at {exc.step}: {exc.message}") from exc
    except KeyboardInterrupt:
        console.print("interrupted; everything the demo started is stopped")
        sys.exit(130)


# `popcorn demo` is a top-level command; the core picks it up through domains.cli_groups().
extra_groups = [command]
