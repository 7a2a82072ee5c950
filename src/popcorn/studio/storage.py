"""Attachments: files in the platform's object store, content-addressed, with a size limit.

An upload streams to a temporary file while it is hashed and counted, so a file over
the limit is refused (413 naming the `file` field) before anything is recorded; then it
goes to the object store (`studio/attachments/<sha256>`), which every machine shares.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from popcorn import audit, outbox
from popcorn.config import get_settings
from popcorn.context import current_actor
from popcorn.errors import InvalidInput, NotFound, PopcornError
from popcorn.storage import get_store
from popcorn.studio import models as m
from popcorn.studio import query
from popcorn.studio.registry import ENTITIES, entity
from popcorn.studio.service import get_row, snapshot

CHUNK = 1 << 16


class TooLarge(PopcornError):
    status = 413
    code = "payload_too_large"


def upload_limit() -> int:
    """POPCORN_STUDIO_UPLOAD_MAX_BYTES, never above the server's largest request body."""
    body = get_settings().max_body_bytes
    raw = os.environ.get("POPCORN_STUDIO_UPLOAD_MAX_BYTES", "")
    try:
        wanted = int(raw) if raw else body
    except ValueError:
        wanted = body
    return max(1, min(wanted, body))


PREFIX = "studio/attachments"


def _key(sha: str) -> str:
    return f"{PREFIX}/{sha[:2]}/{sha}"


def _store(stream: IO[bytes], limit: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile(prefix="popcorn-upload-") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(
                    f"file: the upload is over the {limit}-byte limit",
                    details={"field": "file", "max_upload_bytes": limit},
                )
            digest.update(chunk)
            out.write(chunk)
        sha = digest.hexdigest()
        out.seek(0)
        get_store().put(_key(sha), out.read(), immutable=True)  # same bytes, same object
    return sha, size


def upload(
    *,
    session: Session,
    entity_type: str,
    entity_id: Any,
    stream: IO[bytes],
    filename: str,
    content_type: str = "application/octet-stream",
    field_name: str | None = None,
    display_name: str | None = None,
    tag_list: str | list[str] | None = None,
) -> int:
    """Store a file and attach it to an entity (or to one of its fields); returns its id."""
    ent = entity(entity_type)
    row = get_row(session, ent, entity_id)
    fld = None
    if field_name:
        fld = ent.field(field_name)
        if fld.kind != "text" or not fld.editable:
            raise InvalidInput(
                f"{field_name}: files go in text fields", details={"field": "field_name"}
            )
    name = Path(filename or "upload.bin").name[:300] or "upload.bin"
    tags = tag_list.split(",") if isinstance(tag_list, str) else list(tag_list or [])
    sha, size = _store(stream, upload_limit())
    att = m.StudioAttachment(
        entity_type=ent.name,
        entity_id=row.id,
        field_name=field_name,
        filename=name,
        display_name=display_name or name,
        content_type=(content_type or "application/octet-stream")[:200],
        file_size=size,
        sha256=sha,
        tag_list=[t.strip() for t in tags if t.strip()],
        created_by=current_actor().name,
    )
    session.add(att)
    session.flush()
    att_ent = ENTITIES["Attachment"]
    audit.record_change(
        session, "create", att_ent.object_type, att.id, after=snapshot(att_ent, att)
    )
    ref = {"type": ent.name, "id": row.id}
    outbox.emit(
        session,
        "studio.attachment.created",
        att_ent.object_type,
        att.id,
        {"entity": ref, "field_name": field_name, "file_size": size},
    )
    if fld is not None:
        before = snapshot(ent, row)
        setattr(row, query.column(ent, fld).key, f"/api/v1/studio/attachments/{att.id}/download")
        session.flush()
        audit.record_change(
            session, "update", ent.object_type, row.id, before=before, after=snapshot(ent, row)
        )
    return att.id


def attachment_file(*, session: Session, attachment_id: Any) -> tuple[bytes, str, str]:
    """The stored file of an attachment: (content, filename, content type)."""
    att = get_row(session, ENTITIES["Attachment"], attachment_id)
    try:
        data = get_store().get(_key(att.sha256))
    except NotFound:
        raise NotFound(
            f"the file of attachment {att.id} is missing", details={"id": att.id}
        ) from None
    return data, att.filename, att.content_type
