"""IPAM, circuit and power routes under /api/v1/inventory: thin routes over `ipam.service`.

Each type gets the inventory's routes (list with filters and paging, one object by
id or natural key, create, partial update, delete, all-or-nothing bulk create) on
the inventory blueprint, so paths, roles and errors are the inventory's own.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import request

from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory.ipam import schemas as s
from popcorn.inventory.ipam import service
from popcorn.inventory.ipam.rules import Kind
from popcorn.inventory.routes import ObjectType, add_route, register_object_routes
from popcorn.schemas import Schema

LIST_HELP = (
    "Filters: `field=value` (repeat for OR) and lookups `__in __n __ic __isw __gt __gte __lt "
    "__lte __isnull`; references by id or name (`site=fra1`, `vrf=customers`); `q` searches; "
    "prefixes also `within=10.0.0.0/8`, addresses `device=NAME`; paging with `limit` and "
    "`cursor` or `offset`."
)


class BulkCreated(Schema):
    count: int
    ids: list[int]


BULK_HELP = (
    "Body: a JSON list; items with `id` update. `?mode=upsert` updates the object with the "
    "same natural key instead of refusing a duplicate. All or nothing: any bad item rejects "
    "the whole list with every error."
)


def _register_kind(bp: APIBlueprint, kind: Kind) -> None:
    otype, plural = kind.name, kind.path.replace("-", " ")
    spec = ObjectType(
        otype=otype,
        path=f"/{kind.path}",
        label=kind.label,
        plural=plural,
        schema=kind.schema,
        patch=service.patch_schema(kind),
        read=kind.read,
        page=s.PAGES[otype],
        list_help=LIST_HELP,
    )
    register_object_routes(bp, spec, service)

    def bulk_view() -> tuple[dict[str, Any], int]:
        body = request.get_json(silent=True)
        if not isinstance(body, list):
            raise InvalidInput("expected a JSON list")
        with session_scope() as session:
            mode = request.args.get("mode", "create")
            if mode not in ("create", "upsert"):
                raise InvalidInput("mode: create or upsert")
            return service.bulk_apply(session=session, otype=otype, items=body, mode=mode), 201

    add_route(
        bp,
        "POST",
        f"/{kind.path}/bulk",
        bulk_view,
        name=f"bulk_{otype}",
        summary=f"Create or update many {plural}",
        description=BULK_HELP,
        output=BulkCreated,
        status=201,
    )


def register(bp: APIBlueprint) -> None:
    """Add every IPAM, circuit and power route to the inventory blueprint."""
    for kind in service.KINDS.values():
        _register_kind(bp, kind)

    @bp.get("/prefixes/<ref>/available-prefixes")
    @bp.output(s.Available)
    @bp.doc(summary="Free prefixes of a length inside a prefix (`prefix_length`, `count`)")
    def available_prefixes(ref: str) -> Any:
        args = {k: v for k, v in request.args.items() if k in ("prefix_length", "count")}
        with session_scope(readonly=True) as session:
            return service.available_prefixes(session=session, ref=ref, data=args)

    @bp.post("/prefixes/<ref>/available-prefixes")
    @bp.input(s.NextPrefixIn, arg_name="body")
    @bp.output(s.Available, status_code=201)
    @bp.doc(summary="Allocate the next free prefixes of a length (set `create`)")
    def allocate_prefixes(ref: str, body: s.NextPrefixIn) -> Any:
        with session_scope() as session:
            return service.available_prefixes(
                session=session, ref=ref, data=body.model_dump(exclude_unset=True)
            )

    @bp.get("/prefixes/<ref>/available-ips")
    @bp.output(s.Available)
    @bp.doc(summary="Free addresses of a prefix, outside its ranges (`count`)")
    def available_ips(ref: str) -> Any:
        args = {k: v for k, v in request.args.items() if k == "count"}
        with session_scope(readonly=True) as session:
            return service.available_addresses(session=session, ref=ref, data=args)

    @bp.post("/prefixes/<ref>/available-ips")
    @bp.input(s.NextAddressIn, arg_name="body")
    @bp.output(s.Available, status_code=201)
    @bp.doc(summary="Allocate the next free addresses of a prefix (set `create`)")
    def allocate_ips(ref: str, body: s.NextAddressIn) -> Any:
        with session_scope() as session:
            return service.available_addresses(
                session=session, ref=ref, data=body.model_dump(exclude_unset=True)
            )

    @bp.post("/ip-addresses/<ref>/primary")
    @bp.output(s.IpAddressRead)
    @bp.doc(summary="Make an address its device's primary IPv4 or IPv6")
    def primary_ip(ref: str) -> Any:
        with session_scope() as session:
            return service.set_primary_ip(session=session, ref=ref)

    @bp.get("/devices/<ref>/ip-addresses")
    @bp.output(s.IpAddressPage)
    @bp.doc(summary="Every address on a device's interfaces")
    def device_ips(ref: str) -> Any:
        with session_scope(readonly=True) as session:
            items = service.device_addresses(session=session, device=ref)
        return {"items": items, "count": len(items), "next": None}

    for otype, read in (
        ("circuit_termination", s.CircuitTerminationRead),
        ("power_feed", s.PowerFeedRead),
    ):
        _register_cable(bp, otype, read)


def _register_cable(bp: APIBlueprint, otype: str, read: type[Schema] | Any) -> None:
    path = f"/{service.KINDS[otype].path}/<ref>/cable"
    what = "a device interface" if otype == "circuit_termination" else "a device power port"
    label = otype.replace("_", " ")

    def connect_view(ref: str, body: s.ConnectIn) -> Any:
        with session_scope() as session:
            return service.connect(
                session=session, otype=otype, ref=ref, data=body.model_dump(exclude_unset=True)
            )

    def disconnect_view(ref: str) -> Any:
        with session_scope() as session:
            return service.disconnect(session=session, otype=otype, ref=ref)

    add_route(
        bp,
        "POST",
        path,
        connect_view,
        name=f"connect_{otype}",
        summary=f"Cable a {label} to {what}",
        body=s.ConnectIn,
        output=read,
        status=201,
    )
    add_route(
        bp,
        "DELETE",
        path,
        disconnect_view,
        name=f"disconnect_{otype}",
        summary=f"Remove a {label}'s cable",
        output=read,
    )
