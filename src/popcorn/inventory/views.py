"""The inventory API under /api/v1/inventory: thin routes over `service`.

Every object type gets the same NetBox-like routes: list with filters and
lookups, one object by id (or natural key), create, partial update, delete,
all-or-nothing bulk create/update/delete at `/<type>/bulk`, its change history
and its journal. Devices add lifecycle, trace and agent routes; `/import`,
`/export` and `/reports/...` cover files and figures.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

from apiflask import APIBlueprint
from flask import Response, request
from pydantic import create_model

from popcorn import metrics
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory import schemas as s
from popcorn.inventory import service
from popcorn.inventory.bulk import TYPES
from popcorn.inventory.ipam import views as ipam_views
from popcorn.inventory.routes import ObjectType, add_route, register_object_routes
from popcorn.listing import PageResult
from popcorn.schemas import Schema

bp = APIBlueprint("inventory", __name__, tag="inventory")

PATHS = {
    "custom_field": "custom-fields",
    "region": "regions",
    "site_group": "site-groups",
    "manufacturer": "manufacturers",
    "site": "sites",
    "location": "locations",
    "rack": "racks",
    "device_model": "device-models",
    "module_type": "module-types",
    "device": "devices",
    "bay": "bays",
    "component": "components",
    "interface": "interfaces",
    "port": "ports",
    "link": "links",
}
REF_HELP = "id, or for top-level objects the natural key (site code, device name, model slug…)"


def _patch_schema(schema: type[Schema]) -> type[Schema]:
    """The same fields, all optional: a PATCH changes only what it names."""
    fields: dict[str, Any] = {
        name: (info.rebuild_annotation() | None, None)
        for name, info in schema.model_fields.items()
        if name != "id"
    }
    patch: type[Schema] = create_model(
        f"{schema.__name__.removesuffix('In')}Patch", __base__=Schema, **fields
    )
    return patch


def _body_list() -> list[Any]:
    body = request.get_json()
    if not isinstance(body, list):
        raise InvalidInput("expected a JSON list")
    return body


PAGES = {otype: s.list_page(service.READ_SCHEMAS[otype]) for otype in PATHS}
LIST_HELP = (
    "Filters: `field=value` (repeat for OR) and lookups `__in __n __ic __isw __gt __gte __lt "
    "__lte __isnull`; `q` searches; `tag`; `fields=a,b` or `brief=1`; paging with `limit` and "
    "`cursor` or `offset`."
)
BULK_HELP = (
    "Body: a JSON list. All or nothing: any bad item rejects the whole list with every "
    "error. PATCH items carry `id` or the natural key."
)


def _register(otype: str) -> None:
    path = f"/{PATHS[otype]}"
    plural, label = TYPES[otype].plural, TYPES[otype].label
    spec = ObjectType(
        otype=otype,
        path=path,
        label=label,
        plural=plural.replace("_", " "),
        schema=TYPES[otype].schema,  # type: ignore[arg-type]
        patch=_patch_schema(TYPES[otype].schema),  # type: ignore[arg-type]
        read=service.READ_SCHEMAS[otype],
        page=PAGES[otype],
        list_help=LIST_HELP,
        ref_help=REF_HELP,
    )
    register_object_routes(bp, spec, service)

    def bulk_create_view() -> tuple[dict[str, Any], int]:
        items = _body_list()
        with session_scope() as session:
            return service.bulk_change(
                session=session, otype=otype, items=items, mode="create"
            ), 201

    def bulk_update_view() -> dict[str, Any]:
        items = _body_list()
        with session_scope() as session:
            return service.bulk_change(session=session, otype=otype, items=items, mode="update")

    def bulk_delete_view() -> dict[str, Any]:
        items = _body_list()
        with session_scope() as session:
            return {"deleted": service.bulk_delete(session=session, otype=otype, items=items)}

    def journal_view(ref: str) -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            entries = service.journal(session=session, otype=otype, ref=ref)
            return PageResult.whole(entries).serialize(s.JournalRead)

    def add_journal_view(ref: str, body: s.JournalIn) -> Any:
        with session_scope() as session:
            return service.add_journal(
                session=session, otype=otype, ref=ref, comments=body.comments, kind=body.kind
            )

    bulk = f"{path}/bulk"
    add_route(
        bp,
        "POST",
        bulk,
        bulk_create_view,
        name=f"bulk_create_{otype}",
        summary=f"Create many {plural}",
        description=BULK_HELP,
        output=s.BulkResult,
        status=201,
    )
    add_route(
        bp,
        "PATCH",
        bulk,
        bulk_update_view,
        name=f"bulk_update_{otype}",
        summary=f"Update many {plural}",
        description=BULK_HELP,
        output=s.BulkResult,
    )
    add_route(
        bp,
        "DELETE",
        bulk,
        bulk_delete_view,
        name=f"bulk_delete_{otype}",
        summary=f"Delete many {plural}",
        output=s.BulkDeleted,
        description='Body: a JSON list of ids, natural keys or `{"id": …}` objects; '
        "all or nothing.",
    )
    add_route(
        bp,
        "GET",
        f"{path}/<ref>/journal",
        journal_view,
        name=f"journal_{otype}",
        summary=f"Journal of a {label}",
        output=s.JournalPage,
    )
    add_route(
        bp,
        "POST",
        f"{path}/<ref>/journal",
        add_journal_view,
        name=f"add_journal_{otype}",
        summary=f"Add a journal entry to a {label}",
        body=s.JournalIn,
        output=s.JournalRead,
        status=201,
    )


for _otype in PATHS:
    _register(_otype)


# --- devices and components -----------------------------------------------------


@bp.post("/devices/<ref>/status")
@bp.input(s.StatusChange, arg_name="body")
@bp.output(s.DeviceRead)
@bp.doc(summary="Move a device along its lifecycle (only valid transitions)")
def device_status(ref: str, body: s.StatusChange) -> Any:
    with session_scope() as session:
        device = service.set_device_status(
            session=session, ref=ref, status=body.status, reason=body.reason
        )
        return service.read_one(session=session, otype="device", obj=device)


@bp.get("/devices/<ref>/trace")
@bp.output(s.Trace)
@bp.doc(
    summary="Trace the cable path from one of a device's interfaces (or ports)",
    description="Query: `interface=<name>`, or `port=<name>&kind=front-port|rear-port|…`.",
)
def device_trace(ref: str) -> Any:
    name = request.args.get("interface") or request.args.get("port")
    if not name:
        raise InvalidInput("give interface=<name> (or port=<name>&kind=<kind>)")
    kind = "interface" if request.args.get("interface") else request.args.get("kind", "")
    if kind != "interface" and kind not in s.PORT_KINDS:
        raise InvalidInput(f"kind: one of {', '.join(s.PORT_KINDS)}")
    with session_scope(readonly=True) as session:
        return service.trace(session=session, device=ref, name=name, kind=kind)


@bp.get("/interfaces/<int:ident>/trace")
@bp.output(s.Trace)
@bp.doc(summary="Trace the cable path from an interface")
def interface_trace(ident: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.trace_from(session=session, end_type="interface", end_id=ident)


@bp.post("/components/<int:ident>/fail")
@bp.input(s.ComponentFailure, arg_name="body")
@bp.output(s.ComponentRead)
@bp.doc(summary="Mark a component failed (emits inventory.component.failed)")
def component_fail(ident: int, body: s.ComponentFailure) -> Any:
    with session_scope() as session:
        return service.fail_component_by_id(session=session, ident=ident, reason=body.reason)


@bp.get("/scope")
@bp.output(PAGES["device"])
@bp.doc(
    summary="Devices behind a site, region (with sub-regions), role, status or device names",
    description="The same answer other domains get from `devices_for_scope`; repeat a "
    "parameter for several values.",
)
def scope() -> dict[str, Any]:
    def values(name: str) -> list[str] | None:
        found = [v for raw in request.args.getlist(name) for v in raw.split(",") if v]
        return found or None

    with session_scope(readonly=True) as session:
        return service.scope_list(
            session=session,
            args=request.args,
            site=values("site"),
            region=values("region"),
            role=values("role"),
            device=values("device"),
            status=values("status"),
        )


# --- files ----------------------------------------------------------------------


@bp.post("/import")
@bp.output(s.ImportResult)
@bp.doc(
    summary="Import CSV, JSON or YAML files (all or nothing; idempotent on natural keys)",
    description="Send files as multipart (`file`, repeatable: e.g. a set of device-type "
    "library YAML files) or one file as the raw body. Query: `type` (for CSV or a bare "
    "list), `format` (else from the file name), `dry_run=1` for counts without writing. "
    "Every bad row is reported with its line and field (422).",
)
def import_files() -> Any:
    files = [(f.filename or "upload", f.read()) for f in request.files.getlist("file")]
    if not files:
        if not request.data:
            raise InvalidInput("send one or more files (multipart field 'file') or a body")
        files = [(request.args.get("filename", "upload"), request.get_data())]
    dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
    with session_scope() as session:
        result = service.import_files(
            session=session,
            files=files,
            fmt=request.args.get("format"),
            otype=request.args.get("type"),
            dry_run=dry_run,
        )
    return {**result.as_dict(), "seconds": result.seconds}


CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "yaml": "application/yaml"}


@bp.get("/export")
@bp.doc(
    responses={  # type: ignore[arg-type]  # an OpenAPI response object, which doc() accepts
        200: {
            "description": "The objects as a file, in the import format",
            "content": {
                kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in CONTENT_TYPES.values()
            },
        }
    },
    summary="Export objects in the import format (CSV, JSON or YAML)",
    description="Query: `type` (repeatable; default all, one for CSV), `format` (default "
    "yaml); with one type, the list filters apply.",
)
def export_objects() -> Response:
    fmt = request.args.get("format", "yaml")
    types = [t for raw in request.args.getlist("type") for t in raw.split(",") if t] or None
    args = {k: v for k, v in request.args.items() if k not in ("format", "type")}
    out = StringIO()
    with session_scope(readonly=True) as session:
        service.export(session=session, out=out, fmt=fmt, otypes=types, args=args)
    name = (types[0] if types and len(types) == 1 else "inventory") + "." + fmt.lower()
    return Response(
        out.getvalue(),
        content_type=CONTENT_TYPES.get(fmt.lower(), "text/plain"),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- reports --------------------------------------------------------------------


@bp.get("/reports/counts")
@bp.output(s.ReportPage)
@bp.doc(summary="Device counts by site, region, model, manufacturer, status or role")
def report_counts() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        items = service.device_counts(
            session=session, by=request.args.get("by", "site"), status=request.args.get("status")
        )
    return {"items": items, "count": len(items), "next": None}


@bp.get("/reports/capacity")
@bp.output(s.ReportPage)
@bp.doc(summary="Throughput and storage of active devices per site or region")
def report_capacity() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        items = service.capacity(
            session=session,
            by=request.args.get("by", "site"),
            status=request.args.get("status", "active"),
        )
    return {"items": items, "count": len(items), "next": None}


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", details={name: raw}) from None


@bp.get("/reports/end-of-life")
@bp.output(s.EndOfLifeReport)
@bp.doc(
    summary="Components at or near end of life",
    description="End of life is the EOL date when set, else install date plus the expected "
    "life of the component's kind. Query: `within_days` (default 180), `life=disk:4,fan:3`.",
)
def report_end_of_life() -> dict[str, Any]:
    life: dict[str, float] = {}
    for pair in filter(None, request.args.get("life", "").split(",")):
        kind, _, years = pair.partition(":")
        try:
            life[kind.strip()] = float(years)
        except ValueError:
            raise InvalidInput("life: use kind:years pairs, e.g. disk:4,fan:3") from None
    with session_scope(readonly=True) as session:
        result = service.end_of_life(
            session=session,
            within_days=_int_arg("within_days", 180),
            life_years=life,
            limit=min(max(_int_arg("limit", 1000), 1), 10000),
        )
    return {**result, "next": None}


@bp.get("/reports/failed-components")
@bp.output(s.ReportPage)
@bp.doc(summary="Devices with failed components")
def report_failed() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        items = service.failed_components(session=session)
    return {"items": items, "count": len(items), "next": None}


metrics.SCRAPE_COLLECTORS.append(service.collect_metrics)

# IPAM, circuits and power: the same conventions, on this blueprint.
ipam_views.register(bp)
