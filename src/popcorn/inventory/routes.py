"""The routes every inventory object type shares, registered one way for DCIM and IPAM types.

`register_object_routes` gives a type its list (filters, paging), one object by
id or natural key, create, partial update, delete and change history, each a thin
call into the type's service; `add_route` is the one way the views name, document
and register a route made per type (bulk, journal, cable routes), so the paths,
roles and error envelope are the same for every type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from apiflask import APIBlueprint
from flask import request
from sqlalchemy.orm import Session

from popcorn.audit import AuditRead, AuditRecord
from popcorn.db import session_scope
from popcorn.listing import PageResult
from popcorn.schemas import Page, Schema


class HistoryPage(Page[AuditRead]):
    pass


class ObjectService(Protocol):
    """What the shared routes call: `inventory.service` and `inventory.ipam.service` both."""

    def list_objects(
        self, *, session: Session, otype: str, args: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def get_object(self, *, session: Session, otype: str, ref: int | str) -> Any: ...

    def read_one(self, *, session: Session, otype: str, obj: Any) -> dict[str, Any]: ...

    def create_object(
        self, *, session: Session, otype: str, data: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def update_object(
        self, *, session: Session, otype: str, ref: int | str, data: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def delete_object(self, *, session: Session, otype: str, ref: int | str) -> None: ...

    def history(self, *, session: Session, otype: str, ref: int | str) -> list[AuditRecord]: ...


@dataclass(frozen=True)
class ObjectType:
    """One type's routes: where they live and the schemas they take and give."""

    otype: str
    path: str  # "/devices", "/ip-addresses"
    label: str  # "device", "IP address"
    plural: str  # "devices", "IP addresses"
    schema: type[Schema]
    patch: type[Schema]
    read: Any
    page: Any
    list_help: str
    ref_help: str = ""


def add_route(
    bp: APIBlueprint,
    method: str,
    rule: str,
    view: Callable[..., Any],
    *,
    name: str,
    summary: str,
    description: str | None = None,
    body: Any = None,
    output: Any = None,
    status: int = 200,
) -> None:
    """Register `view` under a unique endpoint `name`, documented, with its input and output."""
    view.__name__ = name
    wrapped = bp.doc(summary=summary, description=description)(view)
    wrapped = bp.output(output if output is not None else {}, status_code=status)(wrapped)
    if body is not None:
        wrapped = bp.input(body, arg_name="body")(wrapped)
    bp.route(rule, methods=[method])(wrapped)


def register_object_routes(bp: APIBlueprint, spec: ObjectType, service: ObjectService) -> None:
    """List, show, create, update, delete and history routes of one object type."""
    otype, path, label = spec.otype, spec.path, spec.label

    def list_view() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            return service.list_objects(session=session, otype=otype, args=request.args)

    def show_view(ref: str) -> Any:
        with session_scope(readonly=True) as session:
            obj = service.get_object(session=session, otype=otype, ref=ref)
            return service.read_one(session=session, otype=otype, obj=obj)

    def create_view(body: Schema) -> Any:
        with session_scope() as session:
            data = body.model_dump(exclude_unset=True)
            return service.create_object(session=session, otype=otype, data=data)

    def update_view(ref: str, body: Schema) -> Any:
        with session_scope() as session:
            data = body.model_dump(exclude_unset=True)
            return service.update_object(session=session, otype=otype, ref=ref, data=data)

    def delete_view(ref: str) -> tuple[str, int]:
        with session_scope() as session:
            service.delete_object(session=session, otype=otype, ref=ref)
        return "", 204

    def history_view(ref: str) -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            records = service.history(session=session, otype=otype, ref=ref)
            return PageResult.whole(records).serialize(AuditRead)

    one = f"One {label} ({spec.ref_help})" if spec.ref_help else f"One {label}"
    add_route(
        bp,
        "GET",
        path,
        list_view,
        name=f"list_{otype}",
        summary=f"List {spec.plural}",
        description=spec.list_help,
        output=spec.page,
    )
    add_route(
        bp, "GET", f"{path}/<ref>", show_view, name=f"show_{otype}", summary=one, output=spec.read
    )
    add_route(
        bp,
        "POST",
        path,
        create_view,
        name=f"create_{otype}",
        summary=f"Create a {label}",
        body=spec.schema,
        output=spec.read,
        status=201,
    )
    add_route(
        bp,
        "PATCH",
        f"{path}/<ref>",
        update_view,
        name=f"update_{otype}",
        summary=f"Change fields of a {label}",
        body=spec.patch,
        output=spec.read,
    )
    add_route(
        bp,
        "DELETE",
        f"{path}/<ref>",
        delete_view,
        name=f"delete_{otype}",
        summary=f"Delete a {label}",
        status=204,
    )
    add_route(
        bp,
        "GET",
        f"{path}/<ref>/history",
        history_view,
        name=f"history_{otype}",
        summary=f"Change history of a {label}",
        output=HistoryPage,
    )
