"""Fixtures for the studio tests: a small show created through the API."""

from __future__ import annotations

from typing import Any

import pytest


class Studio:
    """shotgun_api3-shaped calls against the test app, as the operator."""

    def __init__(self, api: Any):
        self.api = api

    def call(
        self, route: str, body: dict[str, Any], role: str = "operator", status: int = 200
    ) -> Any:
        response = self.api.post(f"/api/v1/studio/{route}", json=body, role=role)
        assert response.status_code == status, response.json
        return response.json

    def create(self, entity_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return self.call("create", {"entity_type": entity_type, "data": data, **extra}, status=201)

    def find(
        self, entity_type: str, filters: list[Any], fields: list[str] | None = None, **extra: Any
    ) -> list[dict[str, Any]]:
        body = {"entity_type": entity_type, "filters": filters, "fields": fields, **extra}
        return list(self.call("find", body, role="viewer")["items"])


@pytest.fixture
def studio(api: Any) -> Studio:
    return Studio(api)


@pytest.fixture
def show(studio: Studio) -> dict[str, Any]:
    """A project with two sequences of three shots, an asset cast in two shots, steps and tasks."""
    ana = studio.create("HumanUser", {"login": "ana", "name": "Ana Lima"})
    project = studio.create("Project", {"name": "Popcorn Show"})
    proj = {"type": "Project", "id": project["id"]}
    seqs = [
        studio.create("Sequence", {"project": proj, "code": code}) for code in ("SEQ010", "SEQ020")
    ]
    shots = []
    for seq in seqs:
        for n in (10, 20, 30):
            shots.append(
                studio.create(
                    "Shot",
                    {
                        "project": proj,
                        "code": f"{seq['code']}_{n:04d}",
                        "sg_sequence": {"type": "Sequence", "id": seq["id"]},
                        "sg_cut_in": 1001,
                        "sg_cut_out": 1000 + n,
                        "sg_head_in": 993,
                        "sg_tail_out": 1008 + n,
                    },
                )
            )
    hero = studio.create("Asset", {"project": proj, "code": "hero", "sg_asset_type": "Character"})
    studio.call(
        "update",
        {
            "entity_type": "Asset",
            "entity_id": hero["id"],
            "data": {
                "shots": [
                    {"type": "Shot", "id": shots[0]["id"]},
                    {"type": "Shot", "id": shots[3]["id"]},
                ]
            },
        },
    )
    anim = studio.create("Step", {"code": "Animation", "short_name": "anim"})
    comp = studio.create("Step", {"code": "Comp", "short_name": "comp"})
    tasks = []
    for shot in shots:
        for step in (anim, comp):
            tasks.append(
                studio.create(
                    "Task",
                    {
                        "project": proj,
                        "content": step["code"],
                        "step": {"type": "Step", "id": step["id"]},
                        "entity": {"type": "Shot", "id": shot["id"]},
                        "task_assignees": ["ana"],
                    },
                )
            )
    return {
        "project": project,
        "proj": proj,
        "sequences": seqs,
        "shots": shots,
        "asset": hero,
        "steps": [anim, comp],
        "tasks": tasks,
        "ana": {"type": "HumanUser", "id": ana["id"]},
    }
