"""The host readers behind the built-in actions, fed with recorded /proc, /sys and smartctl data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from popcorn.remediation.agent.builtin import (
    DiskRecord,
    SmartInfo,
    assess,
    check_log_path,
    parse_mounts,
    parse_proc_net_tcp,
    parse_smartctl,
    tail_bytes,
)
from popcorn.remediation.agent.config import load_config
from popcorn.remediation.agent.errors import ConfigError

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:6448 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 5865 1
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1216 1
   2: 0100007F:B0A2 0100007F:6448 01 00000000:00000000 00:00000000 00000000  1000        0 9911 1
"""

PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000001000000:1111 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 6743 1
   1: 0000000000000000FFFF00000F02000A:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7001 1
"""  # noqa: E501


def test_listening_sockets_are_decoded_from_proc_net_tcp() -> None:
    assert parse_proc_net_tcp(PROC_NET_TCP, "tcp") == [
        {"protocol": "tcp", "address": "127.0.0.1", "port": 25672, "uid": 106, "inode": 5865},
        {"protocol": "tcp", "address": "0.0.0.0", "port": 2024, "uid": 0, "inode": 1216},
    ]


def test_ipv6_addresses_are_decoded_word_by_word() -> None:
    sockets = parse_proc_net_tcp(PROC_NET_TCP6, "tcp6")
    assert [(s["address"], s["port"]) for s in sockets] == [
        ("::1", 4369),
        ("::ffff:10.0.2.15", 443),
    ]


def test_mounts_unescape_spaces_and_keep_the_visible_mount() -> None:
    mounts = parse_mounts(
        "/dev/vda / ext4 rw,relatime 0 0\n"
        "tmpfs /mnt/media\\040library tmpfs rw 0 0\n"
        "/dev/vdb /srv xfs rw 0 0\n"
        "/dev/vdc /srv ext4 ro 0 0\n"
    )
    by_point = {m["mountpoint"]: m for m in mounts}
    assert "/mnt/media library" in by_point
    assert (by_point["/srv"]["device"], by_point["/srv"]["options"]) == ("/dev/vdc", "ro")


@pytest.mark.parametrize(
    ("content", "lines", "expected"),
    [
        (b"a\nb\nc\n", 2, ["b", "c"]),
        (b"a\nb\nc", 2, ["b", "c"]),
        (b"a\nb\n", 10, ["a", "b"]),
        (b"", 5, []),
        (b"only\n", 1, ["only"]),
    ],
)
def test_tail_returns_whole_last_lines(
    tmp_path: Path, content: bytes, lines: int, expected: list[str]
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(content)
    assert tail_bytes(str(path), lines, 1 << 20)[:2] == (expected, False)


def test_tail_stops_at_the_cap_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"".join(b"line %06d\n" % i for i in range(100_000)))
    lines, truncated, size = tail_bytes(str(path), 10_000, 1024)
    assert truncated is True
    assert lines[-1] == "line 099999"
    assert all(line.startswith("line ") and len(line) == 11 for line in lines)
    assert sum(len(line) + 1 for line in lines) <= 1024
    assert size == path.stat().st_size


def test_log_paths_match_exactly_or_per_segment(tmp_path: Path) -> None:
    allowed = ["/var/log/syslog", f"{tmp_path}/*.log"]
    (tmp_path / "app.log").write_text("x")
    assert check_log_path("/var/log/syslog", allowed) == "/var/log/syslog"
    assert check_log_path(f"{tmp_path}/app.log", allowed) == f"{tmp_path}/app.log"
    for bad in (
        f"{tmp_path}/sub/deeper.log",  # '*' does not cross directories
        f"{tmp_path}/../etc/x.log",
        f"{tmp_path}//app.log",
        "var/log/syslog",
        "/var/log/syslog\0",
    ):
        with pytest.raises(ValueError):
            check_log_path(bad, allowed)
    with pytest.raises(ValueError, match="no log files"):
        check_log_path("/var/log/syslog", [])


ATA_REPORT = {
    "smart_status": {"passed": True},
    "ata_smart_attributes": {
        "table": [
            {"id": 5, "name": "Reallocated_Sector_Ct", "raw": {"value": 24}},
            {"id": 197, "name": "Current_Pending_Sector", "raw": {"value": 0}},
            {"id": 9, "name": "Power_On_Hours", "raw": {"value": 31000}},
        ]
    },
    "temperature": {"current": 38},
    "power_on_time": {"hours": 31000},
}

NVME_REPORT = {
    "smart_status": {"passed": False},
    "nvme_smart_health_information_log": {
        "critical_warning": 4,
        "media_errors": 12,
        "percentage_used": 103,
    },
}


def test_smartctl_reports_become_health() -> None:
    ata = parse_smartctl(ATA_REPORT)
    assert ata == SmartInfo(
        passed=True, reallocated_sectors=24, pending_sectors=0, temperature_c=38,
        power_on_hours=31000,
    )  # fmt: skip
    disk = assess(DiskRecord(name="sda", smart=ata))
    assert (disk.status, disk.reasons) == ("degraded", ["24 reallocated sectors"])
    nvme = assess(DiskRecord(name="nvme0n1", smart=parse_smartctl(NVME_REPORT)))
    assert nvme.status == "failing"
    assert "NVMe critical warning 0x4" in nvme.reasons
    assert assess(DiskRecord(name="vda")).status == "unknown"
    stated = assess(DiskRecord(name="sdc", status="failing", reasons=["replaced by DC ops"]))
    assert stated.reasons == ["replaced by DC ops"]


def test_config_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "bolt.yaml"
    path.parent.mkdir()
    path.write_text(
        "cert_file: tls/agent.crt\nkey_file: tls/agent.key\nca_file: /etc/popcorn/ca.pem\n"
        "scripts_dir: actions\nservice_pidfiles: {nginx: run/nginx.pid}\n"
        "host: 0.0.0.0\nport: 9443\n"
    )
    config = load_config(path)
    assert config.cert_file == path.parent / "tls" / "agent.crt"
    assert config.ca_file == Path("/etc/popcorn/ca.pem")
    assert config.scripts_dir == path.parent / "actions"
    assert config.service_pidfiles["nginx"] == path.parent / "run" / "nginx.pid"
    assert config.url == f"https://{os.uname().nodename}:9443"


def test_config_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bolt.yaml"
    path.write_text("cert_file: a\nkey_file: b\nca_file: c\nallowed_services: ['nginx; reboot']\n")
    with pytest.raises(ConfigError, match=r"bolt\.yaml: allowed_services: .*not a valid service"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
