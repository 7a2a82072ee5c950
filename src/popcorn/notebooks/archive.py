"""The notebook archive: a numbered, immutable version per save of a path, and the published
area, where a stable name (slug) points at one version and reads stay read-only.

Content lives in the object store (`notebooks/archive/<path>/<version>.ipynb`), the index
here; publishing never copies a notebook, it points the slug at a version.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.notebooks.models import NotebookDefinition, NotebookPublication, NotebookVersion
from popcorn.outbox import emit
from popcorn.storage import check_key, get_store

ARCHIVE = "notebooks/archive"
SLUG_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
VERSION_FILTERS = {"path": NotebookVersion.path, "created_at": NotebookVersion.created_at}


def check_path(path: str) -> str:
    """A notebook path as Jupyter names it: relative, no `..`, ending in .ipynb."""
    clean = path.strip().strip("/")
    if not clean.endswith(".ipynb"):
        raise InvalidInput(f"{path!r} is not a .ipynb path", details={"path": path})
    check_key(clean)
    return clean


def save_version(*, session: Session, path: str, notebook: dict[str, Any]) -> NotebookVersion:
    """Archive one save; saving the same content as the latest version adds nothing. A path
    that job definitions run (their latest version) takes a new version only from someone
    who may change those jobs."""
    from popcorn.notebooks.service import parse_notebook, require_definer

    path = check_path(path)
    for kind in set(
        session.scalars(
            select(NotebookDefinition.kind).where(NotebookDefinition.workspace_path == path)
        )
    ):
        require_definer(kind)
    parse_notebook(notebook)
    data = json.dumps(notebook, sort_keys=True, indent=1).encode()
    digest = hashlib.sha256(data).hexdigest()
    latest = session.scalar(
        select(NotebookVersion)
        .where(NotebookVersion.path == path)
        .order_by(NotebookVersion.version.desc())
        .limit(1)
    )
    if latest is not None and latest.sha256 == digest:
        return latest
    number = (latest.version if latest is not None else 0) + 1
    key = f"{ARCHIVE}/{path}/{number:06d}.ipynb"
    get_store().put(key, data, immutable=True)
    row = NotebookVersion(
        path=path,
        version=number,
        object_key=key,
        sha256=digest,
        size=len(data),
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"{path} was saved concurrently; save again", details={"path": path}
        ) from None
    record_change(
        session, "create", "notebook_version", row.id, after={"path": path, "version": number}
    )
    emit(
        session,
        "notebooks.version.archived",
        "notebook_version",
        row.id,
        {"path": path, "version": number},
    )
    return row


def list_versions(*, session: Session, params: ListParams, path: str | None = None) -> PageResult:
    stmt = select(NotebookVersion).where(*filter_clauses(params.filters, VERSION_FILTERS))
    if path is not None:
        stmt = stmt.where(NotebookVersion.path == path.strip().strip("/"))
    return paginate(session, stmt, params, key=NotebookVersion.id)


def get_version(*, session: Session, path: str, version: int | None = None) -> NotebookVersion:
    if version is None:
        return latest_version(session=session, path=path)
    row = session.scalar(
        select(NotebookVersion).where(
            NotebookVersion.path == path.strip().strip("/"), NotebookVersion.version == version
        )
    )
    if row is None:
        raise NotFound(
            f"no version {version} of {path}", details={"path": path, "version": version}
        )
    return row


def latest_version(*, session: Session, path: str) -> NotebookVersion:
    row = session.scalar(
        select(NotebookVersion)
        .where(NotebookVersion.path == path.strip().strip("/"))
        .order_by(NotebookVersion.version.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"no archived notebook at {path}", details={"path": path})
    return row


def version_content(row: NotebookVersion) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(get_store().get(row.object_key))
    return content


def publish(
    *, session: Session, path: str, version: int | None = None, slug: str | None = None
) -> NotebookPublication:
    """Point a stable name at a version (the path's name by default); republishing moves it."""
    found = get_version(session=session, path=path, version=version)
    name = slug or SLUG_CHARS.sub("-", found.path.removesuffix(".ipynb")).strip("-.")[:200]
    row = session.scalar(
        select(NotebookPublication).where(NotebookPublication.slug == name).with_for_update()
    )
    before = None
    if row is None:
        row = NotebookPublication(slug=name, version_id=found.id, created_by=current_actor().name)
        session.add(row)
    else:
        before = {"version_id": row.version_id}
        row.version_id = found.id
    row.updated_at = utcnow()
    session.flush()
    record_change(
        session,
        "publish",
        "notebook_publication",
        row.id,
        before=before,
        after={"slug": name, "path": found.path, "version": found.version},
    )
    emit(
        session,
        "notebooks.notebook.published",
        "notebook_publication",
        row.id,
        {"slug": name, "path": found.path, "version": found.version},
    )
    return row


def get_publication(*, session: Session, slug: str) -> NotebookPublication:
    row = session.scalar(select(NotebookPublication).where(NotebookPublication.slug == slug))
    if row is None:
        raise NotFound(f"nothing published as {slug!r}", details={"slug": slug})
    return row


def publication_read(session: Session, row: NotebookPublication) -> dict[str, Any]:
    version = session.get(NotebookVersion, row.version_id)
    assert version is not None
    return {
        "id": row.id,
        "slug": row.slug,
        "version_id": row.version_id,
        "path": version.path,
        "version": version.version,
        "link": f"/ui/notebooks/published/{row.slug}",
        "created_by": row.created_by,
        "updated_at": row.updated_at,
    }


def list_publications(*, session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(NotebookPublication).order_by(NotebookPublication.slug))
    return [publication_read(session, row) for row in rows]


def version_count(*, session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(NotebookVersion)) or 0)


def get_version_by_id(*, session: Session, version_id: int) -> NotebookVersion:
    row = session.get(NotebookVersion, version_id)
    if row is None:
        raise NotFound(f"no version {version_id}", details={"id": version_id})
    return row
