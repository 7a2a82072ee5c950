"""`popcorn inventory …` for IPAM, circuits and power: free space, cables, primary addresses.

`list`, `create`, `update` and `delete` take these types too (prefixes, ip-addresses,
vlans, circuits, power-feeds…); the commands here are the ones NetBox users reach
for beside them. Thin over `popcorn.inventory.ipam.service`; every listing has `--json`.
"""

from __future__ import annotations

from typing import Any

import click

from popcorn.cli import output, parse_kv, with_actor
from popcorn.db import session_scope
from popcorn.numbers import quantity

# The IPAM service (its rules and schemas) and IPAM's tables load inside the commands that
# use them, so `popcorn inventory devices` and the other DCIM commands never pay for them.

COLUMNS: dict[str, list[str]] = {
    "rir": ["id", "name", "slug", "is_private"],
    "asn": ["id", "asn", "rir", "description"],
    "vrf": ["id", "name", "rd", "enforce_unique"],
    "prefix": ["id", "prefix", "vrf", "site", "status", "depth", "children", "utilization"],
    "ip_range": ["id", "start_address", "end_address", "vrf", "status", "size"],
    "ip_address": ["id", "address", "vrf", "status", "role", "device", "interface", "primary"],
    "vlan_group": ["id", "slug", "name", "site", "min_vid", "max_vid"],
    "vlan": ["id", "vid", "name", "group", "site", "status"],
    "provider": ["id", "slug", "name", "asn"],
    "circuit_type": ["id", "slug", "name"],
    "circuit": ["id", "cid", "provider", "type", "status", "commit_rate", "a_site", "z_site"],
    "circuit_termination": ["id", "circuit", "term_side", "site", "connected_device"],
    "power_panel": ["id", "site", "name", "location", "location_note"],
    "power_feed": ["id", "power_panel", "name", "rack", "status", "available_power", "utilization"],
}


def handles(otype: str) -> bool:
    """Whether `otype` (a name or plural, e.g. "prefixes", "ip-addresses") is one of ours."""
    from popcorn.inventory.ipam import service

    return service.is_kind(otype)


def _human(kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Figures with units for people; `--json` keeps the raw numbers."""
    from popcorn.inventory.ipam.reads import human_rate

    shown = []
    for row in rows:
        row = dict(row)
        if kind == "power_feed":
            row["available_power"] = quantity(row["available_power"], "VA")
        if kind == "circuit":
            row["commit_rate"] = human_rate(row["commit_rate"])
        shown.append(row)
    return shown


def list_objects(otype: str, args: dict[str, Any], limit: int, as_json: bool) -> None:
    from popcorn.inventory.ipam import service

    kind = service.kind_of(otype)
    with session_scope(readonly=True) as session:
        page = service.list_objects(session=session, otype=kind.name, args={**args, "limit": limit})
    if as_json:
        output(page, as_json=True)
        return
    title = f"{len(page['items'])} of {page['count']} {kind.path.replace('-', ' ')}"
    output(_human(kind.name, page["items"]), as_json=False, columns=COLUMNS[kind.name], title=title)


def create(otype: str, data: dict[str, Any], as_json: bool) -> None:
    from popcorn.inventory.ipam import service

    with session_scope() as session:
        created = service.create_object(session=session, otype=otype, data=data)
    output(created, as_json=as_json)


def update(otype: str, ref: str, data: dict[str, Any], as_json: bool) -> None:
    from popcorn.inventory.ipam import service

    with session_scope() as session:
        changed = service.update_object(session=session, otype=otype, ref=ref, data=data)
    output(changed, as_json=as_json)


def delete(otype: str, refs: list[str]) -> None:
    from popcorn.inventory.ipam import service

    kind = service.kind_of(otype)
    with session_scope() as session:
        for ref in refs:
            service.delete_object(session=session, otype=kind.name, ref=ref)
    click.echo(f"deleted {len(refs)} {kind.path.replace('-', ' ')}")


def _free(result: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        output(result, as_json=True)
        return
    verb = "created" if result["created"] else "free"
    rows = [{what: item} for item in result["items"]]
    output(rows, as_json=False, columns=[what], title=f"{verb} in {result['parent']}")


@click.command("next-prefix")
@click.argument("prefix")
@click.option("--length", "length", type=int, required=True, help="Prefix length wanted.")
@click.option("--count", default=1, show_default=True, help="How many.")
@click.option("--create", is_flag=True, help="Create them (status active).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@with_actor
def next_prefix(prefix: str, length: int, count: int, create: bool, as_json: bool) -> None:
    """The next free prefixes of a length inside PREFIX (id or text, e.g. 10.0.0.0/16)."""
    from popcorn.inventory.ipam import service

    data = {"prefix_length": length, "count": count, "create": create}
    with session_scope(readonly=not create) as session:
        result = service.available_prefixes(session=session, ref=prefix, data=data)
    _free(result, as_json, "prefix")


@click.command("next-ip")
@click.argument("prefix")
@click.option("--count", default=1, show_default=True, help="How many.")
@click.option("--create", is_flag=True, help="Create them (status active).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@with_actor
def next_ip(prefix: str, count: int, create: bool, as_json: bool) -> None:
    """The next free addresses of PREFIX, outside its IP ranges."""
    from popcorn.inventory.ipam import service

    data = {"count": count, "create": create}
    with session_scope(readonly=not create) as session:
        result = service.available_addresses(session=session, ref=prefix, data=data)
    _free(result, as_json, "address")


@click.command("cable")
@click.argument("otype", type=click.Choice(["circuit-termination", "power-feed"]))
@click.argument("ref")
@click.argument("fields", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@with_actor
def cable(otype: str, ref: str, fields: tuple[str, ...], as_json: bool) -> None:
    """Cable a circuit termination (device=… interface=…) or a feed (device=… port=…)."""
    from popcorn.inventory.ipam import service

    with session_scope() as session:
        done = service.connect(session=session, otype=otype, ref=ref, data=parse_kv(fields))
    output(done, as_json=as_json)


@click.command("uncable")
@click.argument("otype", type=click.Choice(["circuit-termination", "power-feed"]))
@click.argument("ref")
@with_actor
def uncable(otype: str, ref: str) -> None:
    """Remove the cable of a circuit termination or power feed."""
    from popcorn.inventory.ipam import service

    with session_scope() as session:
        service.disconnect(session=session, otype=otype, ref=ref)
    click.echo(f"{otype} {ref}: cable removed")


@click.command("primary-ip")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@with_actor
def primary_ip(address: str, as_json: bool) -> None:
    """Make ADDRESS (id or text) its device's primary IPv4 or IPv6."""
    from popcorn.inventory.ipam import service

    with session_scope() as session:
        done = service.set_primary_ip(session=session, ref=address)
    output(done, as_json=as_json)
