"""IPAM, circuit and power routes under /api/v1/inventory: thin routes over `ipam.service`.

Each type gets the inventory's routes (list with filters and paging, one object by
id or natural key, create, partial update, delete, all-or-nothing bulk create) on
the inventory blueprint, so paths, roles and errors are the inventory's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiflask import APIBlueprint
from flask import request

from popcorn.audit import AuditRead
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory.ipam import schemas as s
from popcorn.inventory.ipam import service
from popcorn.inventory.ipam.rules import Kind
from popcorn.listing import PageResult
from popcorn.schemas import Page, Schema

LIST_HELP = (
    "Filters: `field=value` (repeat for OR) and lookups `__in __n __ic __isw __gt __gte __lt "
    "__lte __isnull`; references by id or name (`site=fra1`, `vrf=customers`); `q` searches; "
    "prefixes also `within=10.0.0.0/8`, addresses `device=NAME`; paging with `limit` and "
    "`cursor` or `offset`."
)


class HistoryPage(Page[AuditRead]):
    pass


class BulkCreated(Schema):
    count: int
    ids: list[int]


def _named(name: str, view: Callable[..., Any]) -> Callable[..., Any]:
    view.__name__ = name
    return view


def _register_kind(bp: APIBlueprint, kind: Kind) -> None:
    path, otype, label = f"/{kind.path}", kind.name, kind.label
    page = s.PAGES[otype]

    def list_view() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            return service.list_objects(session=session, otype=otype, args=request.args)

    bp.get(path)(
        bp.output(page)(
            bp.doc(summary=f"List {kind.path.replace('-', ' ')}", description=LIST_HELP)(
                _named(f"list_{otype}", list_view)
            )
        )
    )

    def show_view(ref: str) -> Any:
        with session_scope(readonly=True) as session:
            obj = service.get_object(session=session, otype=otype, ref=ref)
            return service.read_one(session=session, otype=otype, obj=obj)

    bp.get(f"{path}/<ref>")(
        bp.output(kind.read)(bp.doc(summary=f"One {label}")(_named(f"show_{otype}", show_view)))
    )

    def create_view(body: Schema) -> Any:
        with session_scope() as session:
            return service.create_object(
                session=session, otype=otype, data=body.model_dump(exclude_unset=True)
            )

    bp.post(path)(
        bp.input(kind.schema, arg_name="body")(
            bp.output(kind.read, status_code=201)(
                bp.doc(summary=f"Create a {label}")(_named(f"create_{otype}", create_view))
            )
        )
    )

    def update_view(ref: str, body: Schema) -> Any:
        with session_scope() as session:
            return service.update_object(
                session=session, otype=otype, ref=ref, data=body.model_dump(exclude_unset=True)
            )

    bp.patch(f"{path}/<ref>")(
        bp.input(service.patch_schema(kind), arg_name="body")(
            bp.output(kind.read)(
                bp.doc(summary=f"Change fields of a {label}")(
                    _named(f"update_{otype}", update_view)
                )
            )
        )
    )

    def delete_view(ref: str) -> tuple[str, int]:
        with session_scope() as session:
            service.delete_object(session=session, otype=otype, ref=ref)
        return "", 204

    bp.delete(f"{path}/<ref>")(
        bp.output({}, status_code=204)(
            bp.doc(summary=f"Delete a {label}")(_named(f"delete_{otype}", delete_view))
        )
    )

    def history_view(ref: str) -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            records = service.history(session=session, otype=otype, ref=ref)
            return PageResult.whole(records).serialize(AuditRead)

    bp.get(f"{path}/<ref>/history")(
        bp.output(HistoryPage)(
            bp.doc(summary=f"Change history of a {label}")(_named(f"history_{otype}", history_view))
        )
    )

    def bulk_view() -> tuple[dict[str, Any], int]:
        body = request.get_json(silent=True)
        if not isinstance(body, list):
            raise InvalidInput("expected a JSON list")
        with session_scope() as session:
            mode = request.args.get("mode", "create")
            if mode not in ("create", "upsert"):
                raise InvalidInput("mode: create or upsert")
            return service.bulk_apply(session=session, otype=otype, items=body, mode=mode), 201

    bp.post(f"{path}/bulk")(
        bp.output(BulkCreated, status_code=201)(
            bp.doc(
                summary=f"Create or update many {kind.path.replace('-', ' ')}",
                description="Body: a JSON list; items with `id` update. `?mode=upsert` updates "
                "the object with the same natural key instead of refusing a duplicate. All or "
                "nothing: any bad item rejects the whole list with every error.",
            )(_named(f"bulk_{otype}", bulk_view))
        )
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

    def connect_view(ref: str, body: s.ConnectIn) -> Any:
        with session_scope() as session:
            return service.connect(
                session=session, otype=otype, ref=ref, data=body.model_dump(exclude_unset=True)
            )

    bp.post(path)(
        bp.input(s.ConnectIn, arg_name="body")(
            bp.output(read, status_code=201)(
                bp.doc(summary=f"Cable a {otype.replace('_', ' ')} to {what}")(
                    _named(f"connect_{otype}", connect_view)
                )
            )
        )
    )

    def disconnect_view(ref: str) -> Any:
        with session_scope() as session:
            return service.disconnect(session=session, otype=otype, ref=ref)

    bp.delete(path)(
        bp.output(read)(
            bp.doc(summary=f"Remove a {otype.replace('_', ' ')}'s cable")(
                _named(f"disconnect_{otype}", disconnect_view)
            )
        )
    )
