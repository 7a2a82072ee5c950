"""A DCC-style pipeline script run by the client tests under `python -I -S` (stdlib only).

argv: <client folder> <base url> <token> <work dir>. Prints one JSON line of results.
"""

import json
import os
import sys
import threading

sys.path.insert(0, sys.argv[1])

from popcorn_studio import (
    NotFound,
    Popcorn,
    ValidationFault,
    publish_file,
    register_version,
    version_up,
)

base_url, token, work = sys.argv[2], sys.argv[3], sys.argv[4]
sg = Popcorn(base_url, token, timeout=20, retries=2)
out = {"site_packages": [p for p in sys.path if "site-packages" in p]}

project = sg.create("Project", {"name": "Client Show"})
proj = {"type": "Project", "id": project["id"]}
seq = sg.create("Sequence", {"project": proj, "code": "SEQ010"})
seq_ref = {"type": "Sequence", "id": seq["id"]}
requests = [
    {
        "request_type": "create",
        "entity_type": "Shot",
        "data": {
            "project": proj,
            "code": f"SEQ010_{n:04d}",
            "sg_sequence": seq_ref,
            "sg_cut_in": 1001,
            "sg_cut_out": 1000 + n,
        },
    }
    for n in range(10, 60, 10)
]
shots = sg.batch(requests)
out["batch"] = [s["code"] for s in shots]
sg.update("Shot", shots[0]["id"], {"sg_status_list": "ip"})
found = sg.find(
    "Shot",
    [["sg_status_list", "is", "ip"], ["sg_sequence.Sequence.code", "starts_with", "SEQ010"]],
    ["code", "sg_sequence.Sequence.code", "sg_cut_duration"],
)
out["find"] = found
many = sg.find(
    "Shot",
    [
        {
            "filter_operator": "any",
            "filters": [["code", "ends_with", "0020"], ["sg_cut_duration", "greater_than", 40]],
        }
    ],
    ["code"],
    order=[{"field_name": "code", "direction": "asc"}],
)
out["any"] = [s["code"] for s in many]
out["find_one"] = sg.find_one("Shot", [["code", "is", "SEQ010_0030"]], ["sg_cut_out"])
out["limit"] = len(sg.find("Shot", [], limit=2))
out["page2"] = [s["id"] for s in sg.find("Shot", [], limit=2, page=2)]
out["summary"] = sg.summarize("Shot", [["project", "is", proj]], [{"field": "id", "type": "count"}])

try:
    sg.find("Shot", [["sg_cut_in", "contains", "10"]], ["code"])
except ValidationFault as exc:
    out["bad_operator"] = exc.field
try:
    sg.update("Shot", 987654, {"code": "x"})
except NotFound as exc:
    out["missing"] = exc.status

thumb = os.path.join(work, "thumb.jpg")
with open(thumb, "wb") as fh:
    fh.write(b"\xff\xd8 jpeg bytes")
task = sg.create(
    "Task", {"project": proj, "content": "comp", "entity": {"type": "Shot", "id": shots[0]["id"]}}
)
shot_ref = {"type": "Shot", "id": shots[0]["id"]}
template = work + "/{sequence}/{shot}/comp/{name}.v{version:03d}.nk"
first = publish_file(
    sg,
    proj,
    shot_ref,
    template,
    {"sequence": "SEQ010", "shot": "SEQ010_0010"},
    "Nuke Script",
    "comp",
    task=task,
)
second = publish_file(
    sg,
    proj,
    shot_ref,
    template,
    {"sequence": "SEQ010", "shot": "SEQ010_0010"},
    "Nuke Script",
    "comp",
    task=task,
    upstream=[first],
)
out["publishes"] = [first["path"], second["path"]]
out["version_up"] = version_up(second["path"])
playlist = sg.create("Playlist", {"project": proj, "code": "dailies"})
version = register_version(
    sg,
    proj,
    shot_ref,
    "SEQ010_0010_comp_v002",
    task=task,
    first_frame=1001,
    last_frame=1010,
    path_to_movie=work + "/review.mov",
    user="ana",
    thumbnail=thumb,
    playlist=playlist,
    published_files=[second],
)
out["version"] = version
sg.create("Version", {"project": proj, "code": "SEQ010_0010_comp_v003", "entity": shot_ref})
latest = [{"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}]
out["latest"] = [
    v["code"]
    for v in sg.find(
        "Version", [["entity", "is", shot_ref]], ["code"], additional_filter_presets=latest
    )
]
out["playlist"] = sg.find_one("Playlist", [["id", "is", playlist["id"]]], ["versions"])["versions"]
out["published_version"] = sg.find_one(
    "PublishedFile", [["id", "is", second["id"]]], ["version", "upstream_published_files"]
)
image = sg.find_one("Version", [["id", "is", version["id"]]], ["image"])["image"]
att_id = int(image.split("/attachments/")[1].split("/")[0])
out["download"] = sg.download_attachment({"type": "Attachment", "id": att_id}).decode("latin-1")
target = os.path.join(work, "copy.jpg")
out["download_path"] = sg.download_attachment(attachment_id=att_id, file_path=target) == target
out["deleted"] = [sg.delete("Shot", shots[-1]["id"]), sg.revive("Shot", shots[-1]["id"])]

errors = []


def worker(n):
    try:
        for _ in range(5):
            assert len(sg.find("Shot", [["sg_sequence", "is", seq_ref]], ["code"])) == 5
    except Exception as exc:  # reported to the test
        errors.append(repr(exc))


threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out["thread_errors"] = errors
print(json.dumps(out))
