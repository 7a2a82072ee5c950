"""Registration with Popcorn: the agent announces itself and its actions on a fixed beat.

Popcorn may be down or unreachable; a failed beat is logged and retried sooner
(backing off up to the normal interval), and never stops the agent.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import httpx

from popcorn import __version__
from popcorn.remediation.agent.config import AgentConfig

log = logging.getLogger(__name__)

HEARTBEAT_PATH = "/api/v1/remediation/agents/heartbeat"
FIRST_RETRY = 1.0


def heartbeat_payload(config: AgentConfig, url: str, actions: list[str]) -> dict[str, Any]:
    return {
        "name": config.agent_name,
        "device": config.device,
        "url": url,
        "version": __version__,
        "actions": actions,
    }


class Heartbeat(threading.Thread):
    def __init__(self, config: AgentConfig, url: str, actions: Callable[[], list[str]]) -> None:
        super().__init__(name="bolt-heartbeat", daemon=True)
        if not config.popcorn_url:
            raise ValueError("popcorn_url is required to send heartbeats")
        self.config = config
        self.url = url
        self.actions = actions
        self.endpoint = config.popcorn_url.rstrip("/") + HEARTBEAT_PATH
        self._stop_event = threading.Event()
        self._verify: ssl.SSLContext | bool = True
        if config.popcorn_ca is not None:
            self._verify = ssl.create_default_context(cafile=str(config.popcorn_ca))

    def stop(self) -> None:
        self._stop_event.set()

    def beat(self, client: httpx.Client) -> bool:
        """Send one heartbeat; True when Popcorn accepted it."""
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        payload = heartbeat_payload(self.config, self.url, self.actions())
        try:
            response = client.post(self.endpoint, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("heartbeat to %s failed: %s", self.endpoint, exc)
            return False
        if response.status_code >= 300:
            log.warning(
                "heartbeat to %s refused: HTTP %s %s",
                self.endpoint,
                response.status_code,
                response.text[:200],
            )
            return False
        return True

    def run(self) -> None:
        retry = FIRST_RETRY
        with httpx.Client(timeout=10.0, verify=self._verify) as client:
            while not self._stop_event.is_set():
                try:
                    ok = self.beat(client)
                except Exception:
                    log.exception("heartbeat failed unexpectedly")
                    ok = False
                if ok:
                    retry = FIRST_RETRY
                    wait = self.config.heartbeat_interval
                else:
                    wait = min(retry, self.config.heartbeat_interval)
                    retry *= 2
                self._stop_event.wait(wait)
