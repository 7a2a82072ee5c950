"""`popcorn --help` and `popcorn <group> --help` stay instant: no numerical stack, same text.

The root group reads command names and help from the CLI modules' source
(`popcorn.clispec`); these tests hold the two promises that makes: help never
imports scipy, pandas, numpy or matplotlib, and it prints exactly what click
would print after importing the module.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from popcorn import clispec
from popcorn.cli import cli

HEAVY = ("scipy", "pandas", "numpy", "matplotlib")


def _imported(args: list[str], shows: str = "Usage: popcorn") -> set[str]:
    """The modules a `python -m popcorn ...` run imported (from `-X importtime`)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "popcorn", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shows in proc.stdout
    return {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _imported_roots(args: list[str]) -> set[str]:
    """Top-level packages a `python -m popcorn ...` run imported."""
    return {name.split(".")[0] for name in _imported(args)}


def _groups() -> list[str]:
    return sorted(name for name, spec in cli.specs().items() if spec.is_group)


def test_every_domain_group_is_known_without_importing_it() -> None:
    from popcorn.domains import DOMAINS

    names = set(cli.specs())
    assert {"inventory", "signals", "traffic", "certs", "jobs", "audit", "demo"} <= names
    # each installed domain with a CLI contributes its group
    modules = {spec.module for spec in cli.specs().values()}
    for domain in DOMAINS:
        if clispec._source(f"popcorn.{domain}.cli") is not None:
            assert f"popcorn.{domain}.cli" in modules


def test_help_does_not_import_the_numerical_stack() -> None:
    for args in [["--help"], *([name, "--help"] for name in _groups())]:
        heavy = _imported_roots(args) & set(HEAVY)
        assert not heavy, f"`popcorn {' '.join(args)}` imported {sorted(heavy)}"


def test_root_help_does_not_open_the_database() -> None:
    """`popcorn --help` needs neither SQLAlchemy nor the settings."""
    modules = _imported(["--help"])
    assert not {"sqlalchemy", "popcorn.db", "popcorn.config"} & modules


# What the inventory's list path never needs: imports, exports, the device-type
# library and its template schemas, reports, traces and the IPAM service with its rules
# and schemas.
INVENTORY_WRITE_SIDE = {
    "yaml",
    "popcorn.inventory.files",
    "popcorn.inventory.formats",
    "popcorn.inventory.library",
    "popcorn.inventory.devicetypes",
    "popcorn.inventory.reports",
    "popcorn.inventory.tracing",
    "popcorn.inventory.ipam.service",
    "popcorn.inventory.ipam.rules",
    "popcorn.inventory.ipam.schemas",
}

# Nor does it load what `inventory.service` brings for changes (the audit log, the outbox,
# the service itself), the input schemas a change validates against, or IPAM's tables: a
# DCIM list reads through `inventory.filters`, with or without `--json`.
INVENTORY_LIST_SKIPS = {
    "popcorn.inventory.service",
    "popcorn.audit",
    "popcorn.outbox",
    "popcorn.inventory.schemas.inputs",
    "popcorn.inventory.ipam.models",
    "popcorn.inventory.ipam.reads",
    "popcorn.inventory.bulk.batch",
    "popcorn.inventory.bulk.write",
}


# Listing series reads their catalog table: not the samples, their Parquet store or their
# parsers, and neither pyarrow nor the numerical stack.
SIGNALS_SAMPLES_SIDE = {
    "pyarrow",
    "popcorn.signals.store",
    "popcorn.signals.series",
    "popcorn.signals.ingest",
    "popcorn.signals.service",
}

# Listing plans and regions reads rows: the planning, forecasting and placement engines
# (and numpy with them) load only when a plan is made.
TRAFFIC_ENGINES = {
    "popcorn.traffic.optimize",
    "popcorn.traffic.evacuate",
    "popcorn.traffic.forecast",
    "popcorn.traffic.placement",
    "popcorn.traffic.plans",
    "popcorn.traffic.executions",
}

# Security's accounts hold sealed credentials, but listing them opens none: the cipher
# (cryptography) loads when a secret is sealed or read.
NO_SEALING = {"cryptography"}

# Listing certificates reads rows: the CA engine (on cryptography), the destinations (on
# botocore) and the issuing service load when a certificate is made, read or sent.
CERTIFICATE_ENGINES = {
    "cryptography",
    "botocore",
    "popcorn.certificates.ca",
    "popcorn.certificates.destinations",
    "popcorn.certificates.service",
}

# Listing events reads rows: the rule engine (with its YAML and Jinja templates) and the
# actions (jobs, outbound calls) load when an event is processed or an action replayed.
EVENT_PROCESSING = {
    "yaml",
    "jinja2",
    "popcorn.events.rules",
    "popcorn.events.rulebook",
    "popcorn.events.actions",
    "popcorn.events.service",
}


@pytest.mark.parametrize(
    ("args", "domain", "unneeded"),
    [
        (
            ["inventory", "devices", "--json"],
            "inventory",
            INVENTORY_WRITE_SIDE | INVENTORY_LIST_SKIPS,
        ),
        (
            ["inventory", "sites", "--json"],
            "inventory",
            INVENTORY_WRITE_SIDE | INVENTORY_LIST_SKIPS,
        ),
        (["jobs", "list", "--json"], None, set()),
        (["signals", "series", "--json"], "signals", SIGNALS_SAMPLES_SIDE),
        (["traffic", "plans", "--json"], "traffic", TRAFFIC_ENGINES),
        (["traffic", "regions", "list", "--json"], "traffic", TRAFFIC_ENGINES),
        (["security", "accounts", "--json"], "security", NO_SEALING),
        (["certs", "list", "--json"], "certificates", CERTIFICATE_ENGINES),
        (["events", "list", "--json"], "events", EVENT_PROCESSING),
    ],
    ids=[
        "inventory devices",
        "inventory sites",
        "jobs list",
        "signals series",
        "traffic plans",
        "traffic regions",
        "security accounts",
        "certs list",
        "events list",
    ],
)
def test_a_list_loads_only_its_own_domain(
    args: list[str], domain: str | None, unneeded: set[str]
) -> None:
    """A list reads the database: no numerical stack, no web app, no other domain, and
    none of its own domain's write-side modules."""
    from popcorn.domains import DOMAINS, EXTRAS

    modules = _imported(args, shows='"items"')
    roots = {name.split(".")[0] for name in modules}
    assert not roots & {*HEAVY, "flask", "rich"}, sorted(roots & {*HEAVY, "flask", "rich"})
    assert not modules & unneeded, sorted(modules & unneeded)
    others = {
        name
        for name in modules
        if name.split(".")[:2] in ([["popcorn", d] for d in DOMAINS + EXTRAS if d != domain])
    }
    assert not others, sorted(others)


@pytest.fixture
def one_device() -> None:
    """A site with one device, so the tables below have a row to print."""
    from popcorn.db import session_scope
    from popcorn.inventory import service

    with session_scope() as session:
        for otype, data in [
            ("manufacturer", {"name": "Netflix", "slug": "netflix"}),
            ("device_model", {"manufacturer": "netflix", "model": "OCA", "slug": "oca"}),
            ("site", {"code": "ams1", "name": "Amsterdam 1"}),
            (
                "device",
                {"name": "oca-1", "role": "storage-appliance", "model": "oca", "site": "ams1"},
            ),
        ]:
            service.create_object(session=session, otype=otype, data=data)


@pytest.mark.parametrize(
    ("args", "shows", "unneeded"),
    [
        (["inventory", "devices"], "oca-1", INVENTORY_WRITE_SIDE | INVENTORY_LIST_SKIPS),
        (
            ["inventory", "list", "sites"],
            "1 of 1 sites",
            INVENTORY_WRITE_SIDE | INVENTORY_LIST_SKIPS,
        ),
        # a device model's rows carry its templates: their schemas (`devicetypes`) load
        (["inventory", "models", "--json"], '"oca"', INVENTORY_LIST_SKIPS),
    ],
    ids=["inventory devices", "inventory list sites", "inventory models"],
)
def test_an_inventory_table_leaves_out_the_write_side(
    one_device: None, args: list[str], shows: str, unneeded: set[str]
) -> None:
    """As a table too (and by `list TYPE`, which asks IPAM only about names DCIM does not
    know): no write side, no IPAM service or tables."""
    modules = _imported(args, shows=shows)
    assert not modules & unneeded, sorted(modules & unneeded)


def test_inventory_types_load_their_input_schemas_when_asked() -> None:
    """The object types name their input schemas; a list never imports them, a change finds
    each by that name."""
    probe = (
        "import sys\n"
        "from popcorn.inventory.bulk import TYPES\n"
        "from popcorn.schemas import Schema\n"
        "assert 'popcorn.inventory.schemas.inputs' not in sys.modules\n"
        "for t in TYPES.values():\n"
        "    assert issubclass(t.schema, Schema) and t.schema.__name__ == t.schema_name, t\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("name", _groups())
def test_group_help_from_source_matches_clicks_own(name: str) -> None:
    spec = cli.specs()[name]
    real = cli.get_command(click.Context(cli), name)
    assert isinstance(real, click.Group)
    root = click.Context(cli, info_name="popcorn", help_option_names=["-h", "--help"])
    expected = real.get_help(click.Context(real, info_name=name, parent=root))
    if not (spec.exact and not spec.own_params):
        pytest.skip(f"`{name}` has options or dynamic commands: its help comes from click")
    shown = spec.help_group()
    assert shown.get_help(click.Context(shown, info_name=name, parent=root)) == expected


def test_root_help_lists_the_same_short_help_as_the_commands() -> None:
    root = click.Context(cli, info_name="popcorn")
    for name in cli.list_commands(root):
        real = cli.get_command(root, name)
        assert real is not None
        assert cli.specs()[name].short(60) == real.get_short_help_str(60)


def test_parser_finds_groups_extra_groups_and_added_commands() -> None:
    source = '''
import click

@click.group("things")
def group() -> None:
    """Things: the first line.\n\nMore."""

@group.command("list")
def things_list() -> None:
    """List things."""

@click.group()
def more_grp() -> None:
    """More things."""

@more_grp.command()
def show_command() -> None:
    """Show one."""

group.add_command(more_grp, "others")
extra_groups = [more_grp]
'''
    specs = {s.name: s for s in clispec.parse_module(source, "popcorn.example.cli")}
    assert set(specs) == {"things", "more"}
    assert set(specs["things"].children) == {"list", "others"}
    assert set(specs["more"].children) == {"show"}
    assert specs["things"].exact


def test_parser_defers_to_click_when_a_helper_is_given_the_group() -> None:
    source = '''
import click

from popcorn.example import more_cli

@click.group("things")
def group() -> None:
    """Things."""

more_cli.register(group)
'''
    (spec,) = clispec.parse_module(source, "popcorn.example.cli")
    assert not spec.exact


def test_parser_defers_to_click_when_commands_are_added_in_a_loop() -> None:
    source = '''
import click

@click.group("things")
def group() -> None:
    """Things."""

for name in ("a", "b"):
    group.add_command(click.Command(name))
'''
    (spec,) = clispec.parse_module(source, "popcorn.example.cli")
    assert not spec.exact


def _all_commands() -> list[tuple[str, click.Command]]:
    root = click.Context(cli)
    found: list[tuple[str, click.Command]] = []

    def walk(command: click.Command, path: str) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}")

    for name in cli.list_commands(root):
        command = cli.get_command(root, name)
        assert command is not None
        walk(command, name)
    return found


def test_every_command_says_what_it_does() -> None:
    missing = [
        path for path, command in _all_commands() if not (command.help or command.short_help)
    ]
    assert missing == []


def test_groups_with_a_list_command_list_when_given_no_subcommand() -> None:
    from click.testing import CliRunner

    groups = [
        path
        for path, command in _all_commands()
        if isinstance(command, click.Group)
        and "list" in command.commands
        and not any(p.required for p in command.commands["list"].params)
    ]
    assert {"traffic regions", "remediation agents", "events incidents", "jobs"} <= set(groups)
    for path, command in _all_commands():
        if path in groups:
            assert command.invoke_without_command, path
    bare = CliRunner().invoke(cli, ["token"], catch_exceptions=False)
    listed = CliRunner().invoke(cli, ["token", "list"], catch_exceptions=False)
    assert bare.exit_code == 0 and bare.output == listed.output


def test_a_command_is_found_reading_only_the_modules_that_can_declare_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Running `popcorn <name> …` parses the CLI modules whose text names it, not all of
    them, and finds the same module as reading them all."""
    from popcorn.cli import RootGroup

    everything = cli.specs()
    parsed: list[str] = []
    real = clispec.parse_module

    def counting(source: str, module: str) -> list[clispec.Spec]:
        parsed.append(module)
        return real(source, module)

    monkeypatch.setattr(clispec, "parse_module", counting)
    for name, spec in everything.items():
        parsed.clear()
        found = RootGroup(name="popcorn")._spec(name)
        assert found is not None and found.module == spec.module, name
        assert len(parsed) < len(clispec.cli_modules()) // 2, (name, parsed)


def test_running_a_plainly_declared_group_parses_no_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`popcorn inventory …` finds its module from a line `@click.group("inventory")`,
    without parsing the CLI modules; the module is the one parsing would find, for every
    command so declared, and other commands are still found by parsing."""
    from popcorn.cli import RootGroup

    everything = cli.specs()
    plain = {name: RootGroup(name="popcorn")._declared_group(name) for name in everything}
    assert plain["inventory"] == "popcorn.inventory.cli"
    for name, module in plain.items():
        assert module is None or module == everything[name].module, name
    parsed: list[str] = []
    real = clispec.parse_module

    def counting(source: str, module: str) -> list[clispec.Spec]:
        parsed.append(module)
        return real(source, module)

    monkeypatch.setattr(clispec, "parse_module", counting)
    root = RootGroup(name="popcorn")
    command = root.get_command(click.Context(root), "inventory")
    assert isinstance(command, click.Group) and parsed == []
    other = next(name for name, module in plain.items() if module is None)
    assert root.get_command(click.Context(root), other) is not None
    assert parsed


# What no list needs, whatever its domain: pydantic-settings' settings sources, an HTTP or
# Redis client, and (on the embedded SQLite database) SQLAlchemy's PostgreSQL dialect.
LIST_NEVER = {"pydantic_settings", "redis", "httpx", "sqlalchemy.dialects.postgresql"}


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "list", "--json"],
        ["audit", "--json"],
        ["events", "list", "--json"],
        ["devicelab", "devices", "--json"],
        ["inventory", "devices", "--json"],
    ],
    ids=lambda args: " ".join(args[:-1]),
)
def test_a_list_loads_no_client_and_no_other_database_dialect(args: list[str]) -> None:
    on_postgresql = os.environ.get("POPCORN_DATABASE_URL", "").startswith("postgres")
    never = LIST_NEVER - ({"sqlalchemy.dialects.postgresql"} if on_postgresql else set())
    modules = _imported(args, shows='"items"')
    assert not modules & never, sorted(modules & never)


def test_schemas_build_their_validators_when_first_used() -> None:
    """Importing a domain's schemas builds none of them: a list builds the one it prints."""
    probe = (
        "from popcorn.inventory import schemas as s\n"
        "from popcorn.schemas import ReadSchema, Schema\n"
        "built = [n for n, c in vars(s).items() if isinstance(c, type)\n"
        "         and issubclass(c, (ReadSchema, Schema)) and c.__pydantic_complete__]\n"
        "assert built == [], built\n"
        "s.SiteRead.model_json_schema()\n"
        "assert s.SiteRead.__pydantic_complete__\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
