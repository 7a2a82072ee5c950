"""A fleet for triage tests: planted file trees, each served by a real Bolt agent process."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from popcorn_testing import free_port
from remediation_kit import Agent, Pki, start_agent

from popcorn.db import session_scope
from popcorn.triage.planting import ROGUE_CRON, plant

__all__ = ["ROGUE_CRON", "Fleet", "plant"]


@dataclass
class Fleet:
    agents: dict[str, Agent] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    stops: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        for stop in self.stops:
            stop()


def start_host(fleet: Fleet, base: Path, pki: Pki, name: str, index: int, **settings: Any) -> None:
    """A real agent (its own process) reading the planted tree `base/name/root`."""
    planted = {k: settings.pop(k) for k in ("suid", "rogue_key", "cron") if k in settings}
    root = plant(base / name / "root", name, index, **planted)
    previous = os.environ.get("POPCORN_TRIAGE_ROOT")
    os.environ["POPCORN_TRIAGE_ROOT"] = str(root)
    try:
        agent = start_agent(
            base / name / "agent", pki, agent_name=name,
            action_modules=["popcorn.triage.collectors"], **settings,
        )  # fmt: skip
    finally:
        if previous is None:
            os.environ.pop("POPCORN_TRIAGE_ROOT", None)
        else:
            os.environ["POPCORN_TRIAGE_ROOT"] = previous
    fleet.agents[name] = agent
    fleet.urls[name] = agent.url


def start_garbage(fleet: Fleet, pki: Pki, name: str) -> None:
    """A host whose agent speaks mutual TLS but answers with HTML instead of a run result."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = b"<html>\x00\xff definitely not json"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    fleet.urls[name] = f"https://127.0.0.1:{server.server_address[1]}"

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    fleet.stops.append(stop)


def down_url() -> str:
    return f"https://127.0.0.1:{free_port()}"


def register_devices(
    urls: dict[str, str | None], *, role: str = "server", site: str = "ams1"
) -> None:
    """Devices in inventory (through its service and facade), each with its agent URL."""
    from popcorn.errors import Conflict
    from popcorn.inventory import api as inventory_api
    from popcorn.inventory import service as inventory

    with session_scope() as session:
        for otype, data in (
            ("site", {"code": site, "name": site.upper()}),
            ("manufacturer", {"name": "Acme"}),
            ("device_model", {"manufacturer": "Acme", "model": "Edge 1", "slug": "edge-1"}),
        ):
            try:
                with session.begin_nested():
                    inventory.create_object(session=session, otype=otype, data=data)
            except Conflict:
                pass
        for name, url in urls.items():
            inventory.create_object(
                session=session,
                otype="device",
                data={"name": name, "role": role, "model": "edge-1", "site": site, "tags": ["web"]},
            )
            if url:
                inventory_api.record_agent_heartbeat(
                    session=session, device=name, url=url, version="test", actions=[]
                )


@contextmanager
def bolt_client(pki: Pki) -> Iterator[None]:
    """The platform's Bolt client certificate, where runbooks and triage look for it."""
    from popcorn.remediation import service

    service.install_bolt_credentials(
        cert=pki.client_cert.read_bytes(), key=pki.client_key.read_bytes(), ca=pki.ca.read_bytes()
    )
    yield
