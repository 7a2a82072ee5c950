"""Studio pages: projects with their status board (tasks by step and status), a shot's
tasks and versions, and review playlists with their versions and the notes on each."""

from __future__ import annotations

from typing import Any

from flask import render_template, url_for
from sqlalchemy.orm import Session

from popcorn.db import session_scope
from popcorn.studio import service
from popcorn.web.views import OVERVIEW_PANELS, bp

SHOT_FIELDS = [
    "code",
    "sg_sequence",
    "sg_status_list",
    "sg_cut_in",
    "sg_cut_out",
    "sg_cut_duration",
]
VERSION_FIELDS = ["code", "entity", "frame_range", "sg_status_list", "user", "image", "created_at"]


def _find(
    session: Session,
    entity_type: str,
    filters: list[Any],
    fields: list[str],
    order: str,
    limit: int = 500,
) -> list[dict[str, Any]]:
    page = service.find(
        session=session,
        entity_type=entity_type,
        filters=filters,
        fields=fields,
        order=[{"field_name": order, "direction": "asc"}],
        limit=limit,
    )
    return list(page["items"])


def _one(session: Session, entity_type: str, ident: int, fields: list[str]) -> dict[str, Any]:
    row = service.get_row(session, service.entity(entity_type), ident)
    return _find(session, entity_type, [["id", "is", row.id]], fields, "id", 1)[0]


@bp.get("/studio")
def studio() -> str:
    with session_scope(readonly=True) as session:
        projects = _find(session, "Project", [], ["name", "sg_status", "archived"], "name")
        playlists = _find(session, "Playlist", [], ["code", "project", "created_at"], "id", 20)
    return render_template("studio/index.html", projects=projects, playlists=playlists)


@bp.get("/studio/projects/<int:project_id>")
def studio_project(project_id: int) -> str:
    with session_scope(readonly=True) as session:
        project = _one(session, "Project", project_id, ["name", "sg_status", "sg_description"])
        ref = {"type": "Project", "id": project["id"]}
        board = service.status_board(session=session, project_id=project["id"])
        shots = _find(session, "Shot", [["project", "is", ref]], SHOT_FIELDS, "code", 300)
        playlists = _find(
            session, "Playlist", [["project", "is", ref]], ["code", "description"], "code"
        )
    return render_template(
        "studio/project.html", project=project, board=board, shots=shots, playlists=playlists
    )


@bp.get("/studio/shots/<int:shot_id>")
def studio_shot(shot_id: int) -> str:
    with session_scope(readonly=True) as session:
        shot = _one(
            session,
            "Shot",
            shot_id,
            [*SHOT_FIELDS, "project", "sg_head_in", "sg_tail_out", "assets", "description"],
        )
        ref = {"type": "Shot", "id": shot["id"]}
        tasks = _find(
            session,
            "Task",
            [["entity", "is", ref]],
            [
                "content",
                "step",
                "sg_status_list",
                "task_assignees",
                "start_date",
                "due_date",
                "est_in_mins",
            ],
            "content",
        )
        versions = _find(session, "Version", [["entity", "is", ref]], VERSION_FIELDS, "id")
    return render_template("studio/shot.html", shot=shot, tasks=tasks, versions=versions)


@bp.get("/studio/playlists/<int:playlist_id>")
def studio_playlist(playlist_id: int) -> str:
    with session_scope(readonly=True) as session:
        playlist = _one(
            session, "Playlist", playlist_id, ["code", "description", "project", "versions"]
        )
        refs = playlist["versions"]
        by_id = {}
        if refs:
            ids = [r["id"] for r in refs]
            by_id = {
                v["id"]: v
                for v in _find(
                    session, "Version", [["id", "in", ids]], VERSION_FIELDS, "id", len(ids)
                )
            }
        notes = (
            _find(
                session,
                "Note",
                [["note_links", "in", refs]],
                ["subject", "content", "user", "addressings_to", "note_links", "created_at"],
                "id",
            )
            if refs
            else []
        )
        note_ids = [n["id"] for n in notes]
        replies = (
            _find(
                session,
                "Note",
                [["reply_to.Note.id", "in", note_ids]],
                ["content", "user", "reply_to", "created_at"],
                "id",
            )
            if note_ids
            else []
        )
    thread: dict[int, list[dict[str, Any]]] = {}
    for reply in replies:
        thread.setdefault(reply["reply_to"]["id"], []).append(reply)
    on_version: dict[int, list[dict[str, Any]]] = {}
    for note in notes:
        note["replies"] = thread.get(note["id"], [])
        for link in note["note_links"]:
            if link["type"] == "Version":
                on_version.setdefault(link["id"], []).append(note)
    versions = [
        {**by_id[r["id"]], "notes": on_version.get(r["id"], [])} for r in refs if r["id"] in by_id
    ]
    return render_template("studio/playlist.html", playlist=playlist, versions=versions)


def studio_panel(session: Session) -> dict[str, Any] | None:
    projects = _find(session, "Project", [["archived", "is", False]], ["name"], "name", 5)
    if not projects:
        return None
    rows = [
        (p["name"], "status board", url_for("web.studio_project", project_id=p["id"]))
        for p in projects
    ]
    return {"title": "Studio", "rows": rows, "link": url_for("web.studio")}


OVERVIEW_PANELS.append(studio_panel)
