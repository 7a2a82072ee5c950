"""Pipeline helpers: versioned publishes from a path template, version up, review submissions.

They only use the client's public calls, so they work the same against any Popcorn.
"""

import os
import re
from typing import Any, Dict, List, Optional  # noqa: F401  (type comments)

VERSION_IN_PATH = re.compile(r"([._-]v)(\d+)(?!.*[._-]v\d+)", re.IGNORECASE)


def version_up(path):
    # type: (str) -> str
    """`shot_comp.v003.nk` -> `shot_comp.v004.nk` (the last `v<digits>`, padding kept)."""
    match = VERSION_IN_PATH.search(path)
    if match is None:
        raise ValueError("no version number (like .v001) in %r" % path)
    digits = match.group(2)
    bumped = str(int(digits) + 1).zfill(len(digits))
    return path[: match.start(2)] + bumped + path[match.end(2) :]


def _ref(entity):
    # type: (Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]
    return {"type": entity["type"], "id": entity["id"]} if entity else None


def publish_file(
    sg,
    project,
    entity,
    template,
    fields,
    published_file_type,
    name,
    task=None,
    version=None,
    upstream=None,
    description="",
):
    # type: (Any, Dict[str, Any], Dict[str, Any], str, Dict[str, Any], str, str, Optional[Dict[str, Any]], Optional[Dict[str, Any]], Optional[List[Dict[str, Any]]], str) -> Dict[str, Any]
    """Publish the next version of `name` for `entity`: its path from `template`.

    `template` is a str.format pattern with `{version}` (e.g.
    "/show/{sequence}/{shot}/comp/{name}.v{version:03d}.nk"); the version number is one
    more than the highest already published for this entity, name and type.
    """
    latest = sg.find_one(
        "PublishedFile",
        [
            ["project", "is", _ref(project)],
            ["entity", "is", _ref(entity)],
            ["name", "is", name],
            ["published_file_type", "is", published_file_type],
        ],
        ["version_number"],
        order=[{"field_name": "version_number", "direction": "desc"}],
    )
    number = (latest["version_number"] if latest else 0) + 1
    values = dict(fields)
    values.update(version=number, name=name)
    path = template.format(**values)
    data = {
        "project": _ref(project),
        "entity": _ref(entity),
        "code": os.path.basename(path),
        "name": name,
        "path": path,
        "published_file_type": published_file_type,
        "version_number": number,
        "description": description,
    }  # type: Dict[str, Any]
    if task:
        data["task"] = _ref(task)
    if version:
        data["version"] = _ref(version)
    if upstream:
        data["upstream_published_files"] = [_ref(u) for u in upstream]
    return sg.create("PublishedFile", data, return_fields=["path", "version_number"])


def register_version(
    sg,
    project,
    entity,
    code,
    task=None,
    first_frame=None,
    last_frame=None,
    path_to_movie=None,
    path_to_frames=None,
    user=None,
    thumbnail=None,
    playlist=None,
    published_files=None,
    description="",
):
    # type: (Any, Dict[str, Any], Dict[str, Any], str, Optional[Dict[str, Any]], Optional[int], Optional[int], Optional[str], Optional[str], Optional[str], Optional[str], Optional[Dict[str, Any]], Optional[List[Dict[str, Any]]], str) -> Dict[str, Any]
    """Submit a Version for review: create it, attach its thumbnail, add it to a playlist
    and point the published files it shows at it."""
    data = {
        "project": _ref(project),
        "entity": _ref(entity),
        "code": code,
        "description": description,
    }  # type: Dict[str, Any]
    optional = (
        ("sg_task", _ref(task)),
        ("sg_first_frame", first_frame),
        ("sg_last_frame", last_frame),
        ("sg_path_to_movie", path_to_movie),
        ("sg_path_to_frames", path_to_frames),
        ("user", user),
    )
    for key, value in optional:
        if value is not None:
            data[key] = value
    version = sg.create("Version", data, return_fields=["sg_status_list", "frame_range"])
    ref = {"type": "Version", "id": version["id"]}
    requests = []
    if playlist:
        requests.append(
            {
                "request_type": "update",
                "entity_type": "Playlist",
                "entity_id": playlist["id"],
                "data": {"versions": [ref]},
                "multi_entity_update_modes": {"versions": "add"},
            }
        )
    for published in published_files or []:
        requests.append(
            {
                "request_type": "update",
                "entity_type": "PublishedFile",
                "entity_id": published["id"],
                "data": {"version": ref},
            }
        )
    if requests:
        sg.batch(requests)
    if thumbnail:
        sg.upload_thumbnail("Version", version["id"], thumbnail)
    return version
