"""Helpers for the device lab tests: a catalog, devices, and an in-process agent that
speaks the signed protocol through the test client."""

from __future__ import annotations

import json
from typing import Any

from popcorn.devicelab.protocol import SIGNATURE_HEADER, canonical, sign, verify

FAMILIES = {"tv-a": "tv", "tv-b": "tv", "console-a": "console"}


def catalog() -> list[dict[str, Any]]:
    return [
        {
            "name": "playback.start",
            "suite": "smoke",
            "components": ["playback"],
            "tags": ["smoke"],
            "requires": {"platform": ["tv", "console"]},
            "expected_duration_s": 60,
            "owners": ["player-team"],
        },
        {
            "name": "playback.hdr",
            "suite": "smoke",
            "components": ["playback", "hdr"],
            "tags": ["hdr"],
            "requires": {"platform": "tv", "hdr": "dolby_vision"},
            "expected_duration_s": 120,
        },
        {
            "name": "ui.browse",
            "suite": "smoke",
            "components": ["ui"],
            "tags": ["flaky"],
            "requires": {},
            "expected_duration_s": 30,
            "behaviour": {"flaky_rate": 0.5},
        },
        {
            "name": "login.long",
            "suite": "full",
            "components": ["login"],
            "tags": [],
            "requires": {"platform": "console"},
            "expected_duration_s": 900,
        },
    ]


def device(name: str, family: str, **extra: Any) -> dict[str, Any]:
    spec = {"name": name, "platform": FAMILIES[family], "family": family, "pool": "lab-1"}
    spec.update(extra)
    return spec


class FakeAgent:
    """Registers and polls through the Flask test client, signing like the real agent."""

    def __init__(self, api: Any, spec: dict[str, Any]) -> None:
        self.api = api
        self.name = spec["name"]
        answer = api.post("/api/v1/devicelab/agents/register", json={"device": spec})
        assert answer.status_code == 200, answer.json
        self.key = answer.json["agent_key"]
        self.platform = answer.json["platform_id"]

    def call(self, path: str, body: dict[str, Any], key: str | None = None) -> Any:
        data = canonical(body)
        return self.api.client.post(
            f"/api/v1/devicelab/agents/{self.name}/{path}",
            data=data,
            headers={
                "Authorization": f"Bearer {self.api.tokens['operator']}",
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(key or self.key, data),
            },
        )

    def poll(
        self, running: list[int] | None = None, results: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        response = self.call("poll", {"running": running or [], "results": results or []})
        assert response.status_code == 200, response.json
        assert verify(self.key, response.data, response.headers.get(SIGNATURE_HEADER))
        return dict(json.loads(response.data))

    def result(self, execution: int, status: str, kind: str = "", duration: float = 1.0) -> Any:
        return self.call(
            "results",
            {
                "execution": execution,
                "status": status,
                "duration_s": duration,
                "message": f"{status} {kind}".strip(),
                "failure_kind": kind,
            },
        )
