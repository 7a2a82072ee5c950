"""The agent takes work only from the platform it registered with."""

from __future__ import annotations

import httpx

from popcorn.devicelab import agent as device_agent
from popcorn.devicelab.protocol import SIGNATURE_HEADER, canonical, sign


def _agent() -> device_agent.Agent:
    args = device_agent.parser().parse_args(["--name", "tv-1", "--token", "t", "--url", "http://x"])
    found = device_agent.Agent(args)
    found.key, found.platform = "k" * 32, "platform-a"
    return found


def _answer(body: dict[str, object], key: str) -> httpx.Response:
    data = canonical(body)
    return httpx.Response(200, content=data, headers={SIGNATURE_HEADER: sign(key, data)})


def test_work_signed_by_its_platform_is_taken_anything_else_refused() -> None:
    agent = _agent()
    work = {"platform_id": "platform-a", "device": "tv-1", "cancel": [], "assignments": []}
    assert agent.trusted(_answer(work, "k" * 32)) == work
    assert agent.trusted(_answer(work, "another platform's key")) is None
    assert agent.trusted(httpx.Response(200, content=canonical(work))) is None  # unsigned
    elsewhere = dict(work, platform_id="platform-b")
    assert agent.trusted(_answer(elsewhere, "k" * 32)) is None
    other_device = dict(work, device="tv-2")
    assert agent.trusted(_answer(other_device, "k" * 32)) is None
    assert agent.refused == 4
    agent.client.close()
