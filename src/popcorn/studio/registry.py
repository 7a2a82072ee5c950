"""The entity schema the API speaks: ShotGrid's entity types and field names over our tables.

Each entity type lists its fields with a data type (ShotGrid's: text, number, float,
date, date_time, checkbox, list, status_list, entity, multi_entity, names, url), the
column behind it and, for links, the entity types it may point at. The filter compiler,
the renderer and the writers all read this one table, so a field exists everywhere or
nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from popcorn.errors import InvalidInput
from popcorn.studio import models as m

LINKABLE = ("Shot", "Asset", "Sequence", "Episode", "Project")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    attr: str | None = None  # the model attribute (the id column for entity fields)
    targets: tuple[str, ...] = ()
    type_attr: str | None = None  # polymorphic entity links: the column holding the type
    link: str | None = None  # multi_entity: the studio_links kind
    reverse: bool = False  # multi_entity read from the target side
    editable: bool = True
    values: tuple[str, ...] = ()  # list fields: the allowed values

    @property
    def filterable(self) -> bool:
        return self.kind not in {"names", "url_list"}


@dataclass(frozen=True)
class Entity:
    name: str
    model: Any
    display: str
    fields: dict[str, Field] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    object_type: str = ""

    def field(self, name: str) -> Field:
        found = self.fields.get(name)
        if found is None:
            raise InvalidInput(
                f"{self.name} has no field {name!r}",
                details={"field": name, "entity_type": self.name, "known": sorted(self.fields)},
            )
        return found


def _common(display: str, with_project: bool = True) -> list[Field]:
    out = [
        Field("id", "number", "id", editable=False),
        Field("created_at", "date_time", "created_at", editable=False),
        Field("updated_at", "date_time", "updated_at", editable=False),
        Field("created_by", "text", "created_by", editable=False),
    ]
    if with_project:
        out.append(Field("project", "entity", "project_id", targets=("Project",)))
    return out


def _entity(
    name: str,
    model: Any,
    display: str,
    fields: list[Field],
    *,
    required: tuple[str, ...] = (),
    with_project: bool = True,
) -> Entity:
    all_fields = {f.name: f for f in [*_common(display, with_project), *fields]}
    return Entity(
        name=name,
        model=model,
        display=display,
        fields=all_fields,
        required=required,
        object_type=f"studio_{name.lower()}",
    )


ASSET_TYPES = ("Character", "Prop", "Environment", "Vehicle", "FX", "Matte Painting", "Set")
POLY = dict(type_attr="entity_type", targets=LINKABLE)

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in [
        _entity(
            "HumanUser",
            m.StudioUser,
            "name",
            [
                Field("login", "text", "login"),
                Field("name", "text", "name"),
                Field("email", "text", "email"),
                Field("sg_status_list", "list", "status", values=("act", "dis")),
                Field(
                    "tasks", "multi_entity", targets=("Task",), link="task_assignee", reverse=True
                ),
            ],
            required=("login",),
            with_project=False,
        ),
        _entity(
            "Project",
            m.StudioProject,
            "name",
            [
                Field("name", "text", "name"),
                Field("tank_name", "text", "tank_name"),
                Field("sg_description", "text", "description"),
                Field("sg_status", "status_list", "status"),
                Field("archived", "checkbox", "archived"),
            ],
            required=("name",),
            with_project=False,
        ),
        _entity(
            "Episode",
            m.StudioEpisode,
            "code",
            [
                Field("code", "text", "code"),
                Field("description", "text", "description"),
                Field("sg_status_list", "status_list", "status"),
            ],
            required=("project", "code"),
        ),
        _entity(
            "Sequence",
            m.StudioSequence,
            "code",
            [
                Field("code", "text", "code"),
                Field("episode", "entity", "episode_id", targets=("Episode",)),
                Field("description", "text", "description"),
                Field("sg_status_list", "status_list", "status"),
            ],
            required=("project", "code"),
        ),
        _entity(
            "Shot",
            m.StudioShot,
            "code",
            [
                Field("code", "text", "code"),
                Field("sg_sequence", "entity", "sequence_id", targets=("Sequence",)),
                Field("description", "text", "description"),
                Field("sg_status_list", "status_list", "status"),
                Field("sg_cut_in", "number", "cut_in"),
                Field("sg_cut_out", "number", "cut_out"),
                Field("sg_head_in", "number", "head_in"),
                Field("sg_tail_out", "number", "tail_out"),
                Field("sg_cut_duration", "number", "cut_duration", editable=False),
                Field("assets", "multi_entity", targets=("Asset",), link="casting"),
            ],
            required=("project", "code"),
        ),
        _entity(
            "Asset",
            m.StudioAsset,
            "code",
            [
                Field("code", "text", "code"),
                Field("sg_asset_type", "list", "asset_type", values=ASSET_TYPES),
                Field("description", "text", "description"),
                Field("sg_status_list", "status_list", "status"),
                Field("shots", "multi_entity", targets=("Shot",), link="casting", reverse=True),
            ],
            required=("project", "code"),
        ),
        _entity(
            "Step",
            m.StudioStep,
            "code",
            [
                Field("code", "text", "code"),
                Field("short_name", "text", "short_name"),
                Field("entity_type", "text", "entity_type"),
                Field("list_order", "number", "list_order"),
                Field("color", "text", "color"),
            ],
            required=("code",),
            with_project=False,
        ),
        _entity(
            "Task",
            m.StudioTask,
            "content",
            [
                Field("content", "text", "content"),
                Field("step", "entity", "step_id", targets=("Step",)),
                Field("entity", "entity", "entity_id", **POLY),  # type: ignore[arg-type]
                Field("sg_status_list", "status_list", "status"),
                Field(
                    "task_assignees", "multi_entity", targets=("HumanUser",), link="task_assignee"
                ),
                Field("start_date", "date", "start_date"),
                Field("due_date", "date", "due_date"),
                Field("est_in_mins", "number", "est_in_mins"),
                Field("time_logs_sum", "number", "time_logs_sum"),
                Field("upstream_tasks", "multi_entity", targets=("Task",), link="task_dependency"),
                Field(
                    "downstream_tasks",
                    "multi_entity",
                    targets=("Task",),
                    link="task_dependency",
                    reverse=True,
                ),
            ],
            required=("project", "content"),
        ),
        _entity(
            "Version",
            m.StudioVersion,
            "code",
            [
                Field("code", "text", "code"),
                Field("entity", "entity", "entity_id", **POLY),  # type: ignore[arg-type]
                Field("sg_task", "entity", "task_id", targets=("Task",)),
                Field("sg_first_frame", "number", "first_frame"),
                Field("sg_last_frame", "number", "last_frame"),
                Field("frame_range", "text", "frame_range", editable=False),
                Field("sg_path_to_movie", "text", "path_to_movie"),
                Field("sg_path_to_frames", "text", "path_to_frames"),
                Field("image", "text", "image"),
                Field("user", "text", "user"),
                Field("sg_status_list", "status_list", "status"),
                Field("description", "text", "description"),
                Field(
                    "playlists",
                    "multi_entity",
                    targets=("Playlist",),
                    link="playlist_version",
                    reverse=True,
                ),
            ],
            required=("project", "code"),
        ),
        _entity(
            "PublishedFile",
            m.StudioPublishedFile,
            "code",
            [
                Field("code", "text", "code"),
                Field("name", "text", "name"),
                Field("path", "text", "path"),
                Field("published_file_type", "text", "published_file_type"),
                Field("version_number", "number", "version_number"),
                Field("entity", "entity", "entity_id", **POLY),  # type: ignore[arg-type]
                Field("task", "entity", "task_id", targets=("Task",)),
                Field("version", "entity", "version_id", targets=("Version",)),
                Field("sg_status_list", "status_list", "status"),
                Field("description", "text", "description"),
                Field(
                    "upstream_published_files",
                    "multi_entity",
                    targets=("PublishedFile",),
                    link="publish_dependency",
                ),
                Field(
                    "downstream_published_files",
                    "multi_entity",
                    targets=("PublishedFile",),
                    link="publish_dependency",
                    reverse=True,
                ),
            ],
            required=("project", "code", "path"),
        ),
        _entity(
            "Playlist",
            m.StudioPlaylist,
            "code",
            [
                Field("code", "text", "code"),
                Field("description", "text", "description"),
                Field("locked", "checkbox", "locked"),
                Field("versions", "multi_entity", targets=("Version",), link="playlist_version"),
            ],
            required=("project", "code"),
        ),
        _entity(
            "Note",
            m.StudioNote,
            "subject",
            [
                Field("subject", "text", "subject"),
                Field("content", "text", "content"),
                Field("user", "text", "user"),
                Field("reply_to", "entity", "reply_to_id", targets=("Note",)),
                Field(
                    "addressings_to",
                    "multi_entity",
                    targets=("HumanUser",),
                    link="note_addressing",
                ),
                Field("sg_status_list", "status_list", "status"),
                Field(
                    "note_links",
                    "multi_entity",
                    targets=("Shot", "Asset", "Version", "Sequence", "Task", "Playlist"),
                    link="note_link",
                ),
            ],
            required=("project", "content"),
        ),
        _entity(
            "Attachment",
            m.StudioAttachment,
            "filename",
            [
                Field("filename", "text", "filename", editable=False),
                Field("display_name", "text", "display_name"),
                Field("content_type", "text", "content_type", editable=False),
                Field("file_size", "number", "file_size", editable=False),
                Field("field_name", "text", "field_name", editable=False),
                Field("tag_list", "names", "tag_list"),
                Field(
                    "attachment_links",
                    "entity",
                    "entity_id",
                    type_attr="entity_type",
                    targets=(*LINKABLE, "Version", "Note", "Task", "Playlist", "PublishedFile"),
                    editable=False,
                ),
            ],
            with_project=False,
        ),
    ]
}

# The link kinds and the entity type on their source side.
LINK_SOURCES = {
    "casting": "Shot",
    "task_dependency": "Task",
    "playlist_version": "Playlist",
    "publish_dependency": "PublishedFile",
    "note_link": "Note",
    "task_assignee": "Task",
    "note_addressing": "Note",
}

OPERATORS: dict[str, set[str]] = {
    "text": {
        "is",
        "is_not",
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "in",
        "not_in",
    },
    "number": {
        "is",
        "is_not",
        "less_than",
        "greater_than",
        "between",
        "not_between",
        "in",
        "not_in",
    },
    "date": {"is", "is_not", "less_than", "greater_than", "between", "in"},
    "checkbox": {"is", "is_not"},
    "list": {"is", "is_not", "in", "not_in"},
    "entity": {"is", "is_not", "in", "not_in", "type_is", "type_is_not"},
    "multi_entity": {"is", "is_not", "in", "not_in"},
}
OPERATORS["float"] = OPERATORS["number"]
OPERATORS["date_time"] = OPERATORS["date"]
OPERATORS["status_list"] = OPERATORS["list"]


def entity(name: Any) -> Entity:
    """The entity type named `name`; a 422 naming `entity_type` otherwise."""
    found = ENTITIES.get(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidInput(
            f"unknown entity type {name!r}",
            details={"field": "entity_type", "known": sorted(ENTITIES)},
        )
    return found


def by_model(model: Any) -> Entity:
    return next(e for e in ENTITIES.values() if e.model is model)


def schema_summary() -> dict[str, Any]:
    """What `schema_read` in shotgun_api3 returns, reduced to types and links."""
    return {
        name: {
            fname: {
                "data_type": f.kind,
                "editable": f.editable,
                **({"valid_types": list(f.targets)} if f.targets else {}),
                **({"valid_values": list(f.values)} if f.values else {}),
            }
            for fname, f in e.fields.items()
        }
        for name, e in ENTITIES.items()
    }
