"""The demo's show in the studio tracker: a project, sequences, shots with tasks, versions
in a review playlist with a note thread, written through the studio service in one batch."""

from __future__ import annotations

from typing import Any

from popcorn.context import acting_as
from popcorn.db import session_scope

ACTOR = "demo"
STEPS = [("Layout", "lay"), ("Animation", "anim"), ("Lighting", "lgt"), ("Comp", "comp")]
STATUSES = ["fin", "ip", "rev", "wtg"]


def build() -> dict[str, Any]:
    """The demo show; returns ids for the summary's links and counts for the narration."""
    from popcorn.studio import service

    def ref(kind: str, row: dict[str, Any]) -> dict[str, Any]:
        return {"type": kind, "id": row["id"]}

    with acting_as(ACTOR), session_scope() as session:

        def create(kind: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
            return service.create(session=session, entity_type=kind, data=data, **extra)

        project = create("Project", {"name": "Popcorn Originals: The Heist", "tank_name": "heist"})
        proj = ref("Project", project)
        steps = [
            create("Step", {"code": c, "short_name": s, "list_order": i})
            for i, (c, s) in enumerate(STEPS)
        ]
        for login, name in (("ana", "Ana Lima"), ("bo", "Bo Chen"), ("chen", "Chen Wu"),
                            ("dee", "Dee Okafor"), ("sup", "Sam Supervisor")):  # fmt: skip
            create("HumanUser", {"login": login, "name": name, "email": f"{login}@studio.test"})
        requests: list[dict[str, Any]] = []
        sequences = [
            create("Sequence", {"project": proj, "code": f"SEQ{n:03d}"}) for n in (10, 20, 30)
        ]
        for s, seq in enumerate(sequences):
            for k in range(1, 9):
                data = {
                    "project": proj,
                    "code": f"{seq['code']}_{k * 10:04d}",
                    "sg_sequence": ref("Sequence", seq),
                    "sg_cut_in": 1001,
                    "sg_cut_out": 1000 + 24 + 8 * k,
                    "sg_head_in": 993,
                    "sg_tail_out": 1008 + 24 + 8 * k,
                    "sg_status_list": "ip" if s == 0 else "wtg",
                }
                requests.append({"request_type": "create", "entity_type": "Shot", "data": data})
        shots = service.batch(session=session, requests=requests)
        tasks = []
        for n, shot in enumerate(shots):
            for i, step in enumerate(steps):
                status = STATUSES[min(3, max(0, i - (n % 4) + 1))] if n < 8 else "wtg"
                tasks.append(
                    {
                        "request_type": "create",
                        "entity_type": "Task",
                        "data": {
                            "project": proj,
                            "content": step["code"],
                            "step": ref("Step", step),
                            "entity": ref("Shot", shot),
                            "sg_status_list": status,
                            "task_assignees": [["ana", "bo", "chen", "dee"][i]],
                            "est_in_mins": 480,
                        },
                    }
                )
        service.batch(session=session, requests=tasks)
        versions = [
            create(
                "Version",
                {
                    "project": proj,
                    "code": f"{shot['code']}_anim_v00{v}",
                    "entity": ref("Shot", shot),
                    "sg_first_frame": 1001,
                    "sg_last_frame": 1024 + 8 * (n + 1),
                    "sg_path_to_movie": f"/show/heist/{shot['code']}/anim/review/v00{v}.mov",
                    "user": "bo",
                },
            )
            for n, shot in enumerate(shots[:4])
            for v in (1, 2)
        ]
        playlist = create(
            "Playlist",
            {
                "project": proj,
                "code": "anim-dailies",
                "description": "Animation dailies, SEQ010",
                "versions": [ref("Version", v) for v in versions if v["code"].endswith("v002")],
            },
        )
        note = create(
            "Note",
            {
                "project": proj,
                "subject": "arm pop",
                "content": "@bo the arm pops at frame 1012, please smooth the IK switch",
                "user": "sup",
                "addressings_to": ["bo"],
                "note_links": [ref("Version", versions[1])],
            },
        )
        create(
            "Note",
            {
                "project": proj,
                "content": "Fixed, v003 is rendering",
                "user": "bo",
                "reply_to": ref("Note", note),
            },
        )
    return {
        "project_id": project["id"],
        "playlist_id": playlist["id"],
        "shots": len(shots),
        "tasks": len(tasks),
        "versions": len(versions),
    }
