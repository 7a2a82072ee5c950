"""CLI start-up: `popcorn --help`, `popcorn <group> --help` and a list command, beside a bare
click program doing the same work, in the same run (hyperfine-style: repeated runs, median).

The bare program is the floor a user would compare with: click and rich for `--help`, plus
SQLAlchemy Core reading the same rows from the same SQLite file for the list. When another
checkout is given (`--before /path/to/src`), its CLI is measured too, interleaved.

Run: .venv/bin/python benchmarks/bench_cli.py [--runs 15] [--before /work/main/src]
(figures go to results/cli.md)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

BARE = '''
import sys
import click

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """A bare click program with the same command names."""

for name in NAMES:
    cli.add_command(click.Group(name, help=f"The {name} commands."))

@cli.command("devices")
@click.option("--json", "as_json", is_flag=True)
def devices(as_json):
    """The devices, as a table (or JSON)."""
    import sqlalchemy as sa

    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, name, role, status, serial FROM inventory_devices ORDER BY id LIMIT 50"
        )).all()
    if as_json:
        import json

        print(json.dumps({"items": [dict(row._mapping) for row in rows]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("id", "name", "role", "status", "serial"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)

cli()
'''


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def world(count: int) -> str:
    """An inventory of `count` appliances at one site, in the import format."""
    lines = [
        "regions: [{slug: europe, name: Europe}]",
        "sites: [{code: ams1, name: Amsterdam 1, region: europe, kind: cdn-ix, country: NL}]",
        "device_models: [{manufacturer: Netflix, model: OCA Gen4, slug: oca-gen4, u_height: 2}]",
        "devices:",
    ]
    lines += [
        f"  - {{name: oca-{i:04d}, role: storage-appliance, model: oca-gen4, site: ams1, "
        f"serial: NFX-{i:05d}}}"
        for i in range(count)
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", help="src directory of another checkout to compare with")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-cli-"))
    # Bytecode is cached (outside the tree) as for an installed package: with
    # PYTHONDONTWRITEBYTECODE set, every run would compile each popcorn module it imports.
    env = {
        **os.environ,
        "POPCORN_HOME": str(home),
        "POPCORN_LOG_LEVEL": "WARNING",
        "PYTHONPYCACHEPREFIX": str(home / "pycache"),
    }
    for name in ("POPCORN_DATABASE_URL", "POPCORN_REDIS_URL", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT / "src")
    subprocess.run([PY, "-m", "popcorn", "db", "upgrade"], env=env, check=True, capture_output=True)
    (home / "world.yaml").write_text(world(200))
    subprocess.run(
        [PY, "-m", "popcorn", "inventory", "import", str(home / "world.yaml")],
        env=env,
        check=True,
        capture_output=True,
    )
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{(home / 'popcorn.db').resolve()}"
    names = subprocess.run(
        [PY, "-c", "from popcorn.cli import cli; print(' '.join(cli.specs()))"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    bare = home / "bare.py"
    bare.write_text(f"NAMES = {names!r}\nURL = {url!r}\n" + BARE)
    with create_engine(url).connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM inventory_devices")).scalar_one()

    cases = {
        "`--help`": (["--help"], [str(bare), "--help"]),
        "`inventory --help`": (["inventory", "--help"], [str(bare), "inventory", "--help"]),
        "`traffic --help`": (["traffic", "--help"], [str(bare), "traffic", "--help"]),
        "`inventory devices` (list)": (["inventory", "devices"], [str(bare), "devices"]),
        "`inventory devices --json`": (
            ["inventory", "devices", "--json"],
            [str(bare), "devices", "--json"],
        ),
        "`inventory list sites` (list)": (["inventory", "list", "sites"], [str(bare), "devices"]),
        "`jobs list` (list)": (["jobs", "list"], [str(bare), "devices"]),
        "`events list` (list)": (["events", "list"], [str(bare), "devices"]),
        "`devicelab devices` (list)": (["devicelab", "devices"], [str(bare), "devices"]),
        "`signals series` (list)": (["signals", "series"], [str(bare), "devices"]),
        "`traffic plans` (list)": (["traffic", "plans"], [str(bare), "devices"]),
        "`certs list` (list)": (["certs", "list"], [str(bare), "devices"]),
        "API app start (`import popcorn.wsgi`; bare: a Flask app)": (
            ["-c", "import popcorn.wsgi"],
            ["-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); import hello_app"],
        ),
    }
    variants = {"popcorn": env, "bare click": env}
    if args.before:
        variants["popcorn before"] = {**env, "PYTHONPATH": args.before}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loads = []
    for run in range(args.runs + 1):  # the first, untimed, fills the bytecode cache
        loads.append(os.getloadavg()[0])
        for label, (popcorn_args, bare_args) in cases.items():
            for variant, variant_env in variants.items():
                if variant == "bare click":
                    argv = [PY, *bare_args]
                elif popcorn_args[0] == "-c":
                    argv = [PY, *popcorn_args]
                else:
                    argv = [PY, "-m", "popcorn", *popcorn_args]
                measured = timed(argv, variant_env)
                if run:
                    samples.setdefault((label, variant), []).append(measured)
    shutil.rmtree(home, ignore_errors=True)

    def cell(label: str, variant: str) -> str:
        runs = samples[(label, variant)]
        wall = statistics.median(w for w, _ in runs) * 1000
        cpu = statistics.median(c for _, c in runs) * 1000
        return f"{wall:,.0f} ms ({cpu:,.0f} ms CPU)"

    header = "| command | Popcorn | bare click, same work |"
    rule = "|---|---|---|"
    if args.before:
        header += " Popcorn before |"
        rule += "---|"
    rows = []
    for label in cases:
        row = f"| {label} | {cell(label, 'popcorn')} | {cell(label, 'bare click')} |"
        if args.before:
            row += f" {cell(label, 'popcorn before')} |"
        rows.append(row)
    table = "\n".join([header, rule, *rows])
    before_note = (
        f' "Popcorn before" is the checkout at `{args.before}` (the code before the changes'
        " measured here), interleaved with the others."
        if args.before
        else ""
    )
    md = f"""## CLI start-up

Machine: {machine()}. Load average while measuring: {min(loads):.1f} to {max(loads):.1f}
(above 2 on 2 cores means other work competed). {args.runs} runs of each command, interleaved,
median wall time and median CPU time (user + system) per run; embedded defaults (SQLite,
{count} devices in the list). The bare click program registers the same {len(names)} command
names for `--help` and, for the lists, reads 50 rows of the same table with SQLAlchemy Core
and prints them with rich: the floor for a Python CLI doing that work.{before_note}

{table}

`--help` reads the command names and help texts from the CLI modules' source and imports no
domain, nor SQLAlchemy or the settings (the first-use schema check is armed only when a
command runs), including commands a group takes from another module (`inventory`'s IPAM
commands) and groups that list by default. A command parses only the CLI modules whose text
can declare its name (none when a line declares it, `@click.group("name")`), then imports
its own domain's CLI and services only. A list imports no other domain, no Flask app, no
Redis or HTTP client, no scipy, pandas or matplotlib, no rich when it prints `--json`, and
on SQLite not SQLAlchemy's PostgreSQL dialect (its JSON columns pick JSONB when a PostgreSQL
engine uses them; tests/core/test_cli_startup.py holds this). An inventory list also leaves
out its own domain's write side: it reads through `inventory.filters`, so the inventory
service with the audit log and the outbox, the input schemas, file formats and YAML, the
device-type library, reports, cable traces, and IPAM's service, schemas and tables load in
the commands that use them. Pydantic schemas build their validators when first used
(`defer_build`), so a list builds the one or two it prints, not every schema of its domain;
the settings are a plain pydantic model that reads `POPCORN_*` and `popcorn.toml` itself
(pydantic-settings loaded a dozen settings sources). What a list still pays beyond the bare
program is SQLAlchemy's ORM (about 50 ms of import CPU on top of SQLAlchemy Core, and the
mappers' configuration), pydantic (about 40 ms), and its domain's models and read modules.
Signals, traffic and certificate lists read through light listing modules, without numpy,
pyarrow or `cryptography`; the inventory list maps its own nineteen tables (not IPAM's). A
table's cells go to rich as text, not markup to parse. Both Popcorn columns run with cached
bytecode, as an installed package does. The API app imports every domain's views (each
process of `popcorn up` does), but not scipy, pandas, matplotlib, boto3 or httpx, which load
in the functions that use them.
"""
    print(md)
    write_result("cli", md)


if __name__ == "__main__":
    main()
