"""The studio API under /api/v1/studio: shotgun_api3's calls as JSON routes.

`find` and `summarize` are reads (viewer) even though they are POSTs (filters are
JSON); changes need operator; workflows need admin.
"""

from __future__ import annotations

import io
import math
from typing import Any

from apiflask import APIBlueprint
from flask import Response, g, jsonify, send_file

from popcorn.app import role
from popcorn.db import session_scope
from popcorn.errors import envelope
from popcorn.studio import ratelimit, registry, service, storage, workflows
from popcorn.studio import schemas as s

bp = APIBlueprint("studio", __name__, tag="studio")


@bp.before_request
def rate_limit() -> Any:
    """One request from the caller's token bucket; 429 with Retry-After when empty."""
    principal = getattr(g, "principal", None)
    verdict = ratelimit.take(getattr(principal, "token_id", None))
    g.studio_rate = verdict
    if verdict is None or verdict.allowed:
        return None
    wait = max(1, math.ceil(verdict.retry_after_s))
    response = jsonify(
        envelope(
            "rate_limited",
            f"too many requests for this token: retry in {wait} s",
            {"retry_after_s": round(verdict.retry_after_s, 3), "limit": verdict.limit},
        )
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(wait)
    return response


@bp.after_request
def rate_headers(response: Response) -> Response:
    verdict = getattr(g, "studio_rate", None)
    if verdict is not None:
        response.headers["X-RateLimit-Limit"] = str(verdict.limit)
        response.headers["X-RateLimit-Remaining"] = str(verdict.remaining)
    return response


BINARY = {"schema": {"type": "string", "format": "binary"}}
DOWNLOAD_RESPONSES: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    200: {
        "description": "The file's bytes, with its content type and file name",
        "content": {"application/octet-stream": BINARY},
    },
    404: {"description": "No such attachment"},
}


@bp.post("/find")
@role("viewer")
@bp.input(s.FindIn, arg_name="body")
@bp.output(s.EntityPage)
@bp.doc(summary="Find entities with shotgun_api3 filters, one page at a time (cursor in `next`)")
def find(body: s.FindIn) -> Any:
    with session_scope(readonly=True) as session:
        return service.find(session=session, **body.model_dump())


@bp.post("/summarize")
@role("viewer")
@bp.input(s.SummarizeIn, arg_name="body")
@bp.output(s.SummaryOut)
@bp.doc(summary="Count, sum, minimum, maximum... over matching entities, optionally grouped")
def summarize(body: s.SummarizeIn) -> Any:
    with session_scope(readonly=True) as session:
        return service.summarize(session=session, **body.model_dump())


@bp.post("/create")
@bp.input(s.CreateIn, arg_name="body")
@bp.output(s.EntityOut, status_code=201)
@bp.doc(summary="Create an entity; answers the fields sent plus return_fields")
def create(body: s.CreateIn) -> Any:
    with session_scope() as session:
        return service.create(session=session, **body.model_dump())


@bp.post("/update")
@bp.input(s.UpdateIn, arg_name="body")
@bp.output(s.EntityOut)
@bp.doc(summary="Change an entity's fields (multi-entity fields: set, add or remove)")
def update(body: s.UpdateIn) -> Any:
    with session_scope() as session:
        return service.update(session=session, **body.model_dump())


@bp.post("/delete")
@bp.input(s.EntityRefIn, arg_name="body")
@bp.output(s.Done)
@bp.doc(summary="Retire an entity (revive brings it back); false if already retired")
def delete(body: s.EntityRefIn) -> Any:
    with session_scope() as session:
        return {"result": service.delete(session=session, **body.model_dump())}


@bp.post("/revive")
@bp.input(s.EntityRefIn, arg_name="body")
@bp.output(s.Done)
@bp.doc(summary="Bring a retired entity back; false if it was not retired")
def revive(body: s.EntityRefIn) -> Any:
    with session_scope() as session:
        return {"result": service.revive(session=session, **body.model_dump())}


@bp.post("/batch")
@bp.input(s.BatchIn, arg_name="body")
@bp.output(s.BatchOut)
@bp.doc(summary="Creates, updates, deletes and revives in one transaction: all or nothing")
def batch(body: s.BatchIn) -> Any:
    with session_scope() as session:
        return {"results": service.batch(session=session, requests=body.requests)}


@bp.post("/upload")
@bp.input(s.UploadForm, location="form_and_files", arg_name="form")
@bp.output(s.UploadOut, status_code=201)
@bp.doc(
    summary="Upload a file (multipart: entity_type, entity_id, file; optional field_name, "
    "display_name, tag_list); refused over the size limit (see /limits)"
)
def upload(form: s.UploadForm) -> Any:
    with session_scope() as session:
        att = storage.upload(
            session=session,
            entity_type=form.entity_type,
            entity_id=form.entity_id,
            stream=form.file.stream,
            filename=form.file.filename or "upload.bin",
            content_type=form.file.mimetype or "application/octet-stream",
            field_name=form.field_name or None,
            display_name=form.display_name or None,
            tag_list=form.tag_list or None,
        )
    return {"id": att, "type": "Attachment"}


@bp.get("/attachments/<int:attachment_id>/download")
@bp.doc(summary="The stored file of an attachment", responses=DOWNLOAD_RESPONSES)
def download(attachment_id: int) -> Response:
    with session_scope(readonly=True) as session:
        data, filename, content_type = storage.attachment_file(
            session=session, attachment_id=attachment_id
        )
    return send_file(
        io.BytesIO(data), mimetype=content_type, as_attachment=True, download_name=filename
    )


@bp.get("/schema")
@bp.output(s.SchemaOut)
@bp.doc(summary="Entity types, their fields, data types and link targets")
def schema() -> Any:
    return {"entities": registry.schema_summary()}


@bp.get("/limits")
@bp.output(s.LimitsOut)
@bp.doc(summary="The published limits: page size, batch size, upload size")
def limits() -> Any:
    return service.limits()


@bp.get("/workflows")
@bp.output(s.WorkflowList)
@bp.doc(summary="Status workflows per entity type")
def list_workflows() -> Any:
    with session_scope(readonly=True) as session:
        return {"items": workflows.all_workflows(session)}


@bp.put("/workflows/<entity_type>")
@role("admin")
@bp.input(s.WorkflowIn, arg_name="body")
@bp.output(s.WorkflowOut)
@bp.doc(summary="Replace an entity type's statuses, default and allowed transitions (admin)")
def put_workflow(entity_type: str, body: s.WorkflowIn) -> Any:
    with session_scope() as session:
        return workflows.put(session, entity_type=entity_type, **body.model_dump())
