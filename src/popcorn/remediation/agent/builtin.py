"""The actions every Bolt agent offers: read-only diagnostics plus a guarded service restart.

They read the host directly (/proc, /sys, statvfs) so the agent needs no extra
packages. Anything that touches a file or a service is limited to the lists in
the agent's config, checked while validating the arguments (a refusal is a 422
naming the field, before anything runs).
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import json
import os
import pwd
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from popcorn.remediation.agent.config import SERVICE_NAME, AgentConfig
from popcorn.remediation.agent.errors import ActionFailed
from popcorn.remediation.agent.registry import ActionArgs, NoArgs, default_registry
from popcorn.remediation.agent.runs import ActionContext

F = TypeVar("F", bound=Callable[..., Any])

PROC = Path("/proc")
SYS_BLOCK = Path("/sys/block")
READ_BLOCK = 64 * 1024

PSEUDO_FS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
        "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore",
        "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip


def _builtin(
    name: str, *, args: type[BaseModel] = NoArgs, timeout: float | None = None
) -> Callable[[F], F]:
    return default_registry.action(name, args=args, timeout=timeout, kind="builtin")


def _config(info: ValidationInfo) -> AgentConfig:
    config = (info.context or {}).get("config")
    if not isinstance(config, AgentConfig):
        raise ValueError("cannot be checked without the agent's configuration")
    return config


# --- disk usage -------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[dict[str, str]]:
    """Mounts from /proc/mounts; a mount point mounted twice keeps its last (visible) entry."""
    mounts: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mountpoint = _unescape(fields[1])
        mounts.pop(mountpoint, None)
        mounts[mountpoint] = {
            "device": _unescape(fields[0]),
            "mountpoint": mountpoint,
            "fstype": fields[2],
            "options": fields[3],
        }
    return list(mounts.values())


class DiskUsageArgs(ActionArgs):
    mounts: list[str] | None = Field(default=None, max_length=100)
    include_pseudo: bool = False


@_builtin("disk_usage", args=DiskUsageArgs)
def disk_usage(ctx: ActionContext, args: DiskUsageArgs) -> dict[str, Any]:
    """Space and inodes used on each mounted filesystem (like df)."""
    mounts = parse_mounts((PROC / "mounts").read_text())
    wanted = set(args.mounts) if args.mounts is not None else None
    filesystems = []
    for mount in mounts:
        if wanted is not None and mount["mountpoint"] not in wanted:
            continue
        if wanted is None and not args.include_pseudo and mount["fstype"] in PSEUDO_FS:
            continue
        try:
            st = os.statvfs(mount["mountpoint"])
        except OSError:
            continue
        total = st.f_blocks * st.f_frsize
        if total == 0 and wanted is None and not args.include_pseudo:
            continue
        free = st.f_bfree * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        used = total - free
        filesystems.append(
            {
                "mountpoint": mount["mountpoint"],
                "device": mount["device"],
                "fstype": mount["fstype"],
                "read_only": "ro" in mount["options"].split(","),
                "total_bytes": total,
                "used_bytes": used,
                "available_bytes": avail,
                "used_percent": round(100.0 * used / (used + avail), 1) if used + avail else 0.0,
                "inodes_total": st.f_files,
                "inodes_free": st.f_ffree,
                "inodes_used_percent": (
                    round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 1) if st.f_files else 0.0
                ),
            }
        )
    seen = {fs["mountpoint"] for fs in filesystems}
    return {
        "filesystems": filesystems,
        "not_mounted": sorted(wanted - seen) if wanted is not None else [],
    }


# --- top processes ----------------------------------------------------------------------------


def _proc_stat(pid: str) -> dict[str, Any] | None:
    try:
        raw = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return {
        "pid": int(pid),
        "name": name,
        "state": rest[0],
        "ppid": int(rest[1]),
        "cpu_ticks": int(rest[11]) + int(rest[12]),
        "threads": int(rest[17]),
        "rss_pages": int(rest[21]),
    }


def _pids() -> list[str]:
    return [entry for entry in os.listdir(PROC) if entry.isdigit()]


def _owner(pid: str) -> str | None:
    try:
        for line in (PROC / pid / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                try:
                    return pwd.getpwuid(uid).pw_name
                except KeyError:
                    return str(uid)
    except OSError:
        return None
    return None


def _command(pid: str, fallback: str) -> str:
    try:
        raw = (PROC / pid / "cmdline").read_bytes()
    except OSError:
        return fallback
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return (text or f"[{fallback}]")[:512]


def _mem_total() -> int:
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class TopProcessesArgs(ActionArgs):
    limit: int = Field(default=10, ge=1, le=500)
    sort_by: Literal["cpu", "memory"] = "cpu"
    interval: float = Field(default=0.5, ge=0, le=5)


@_builtin("top_processes", args=TopProcessesArgs)
def top_processes(ctx: ActionContext, args: TopProcessesArgs) -> dict[str, Any]:
    """The processes using the most CPU (sampled over `interval`) or memory."""
    before = {pid: s["cpu_ticks"] for pid in _pids() if (s := _proc_stat(pid))}
    interval = min(args.interval, ctx.remaining())
    if interval > 0:
        time.sleep(interval)
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    mem_total = _mem_total()
    rows = []
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat is None:
            continue
        delta = stat["cpu_ticks"] - before.get(pid, stat["cpu_ticks"])
        rss = stat["rss_pages"] * page
        rows.append(
            {
                "pid": stat["pid"],
                "ppid": stat["ppid"],
                "name": stat["name"],
                "state": stat["state"],
                "cpu_percent": round(100.0 * delta / ticks / interval, 1) if interval else None,
                "cpu_seconds": round(stat["cpu_ticks"] / ticks, 2),
                "rss_bytes": rss,
                "memory_percent": round(100.0 * rss / mem_total, 2) if mem_total else None,
                "threads": stat["threads"],
                "_pid": pid,
            }
        )
    if args.sort_by == "cpu":
        rows.sort(key=lambda r: (r["cpu_percent"] or 0.0, r["cpu_seconds"]), reverse=True)
    else:
        rows.sort(key=lambda r: r["rss_bytes"], reverse=True)
    top = rows[: args.limit]
    for row in top:
        pid = row.pop("_pid")
        row["user"] = _owner(pid)
        row["command"] = _command(pid, row["name"])
    return {"processes": top, "total_processes": len(rows), "interval_s": interval}


# --- service status ---------------------------------------------------------------------------


def systemd_running() -> bool:
    """True when this host was booted with systemd (the check sd_booted(3) makes)."""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


class ServiceArgs(ActionArgs):
    name: str = Field(pattern=SERVICE_NAME.pattern)


def _pid_alive(pid: int) -> bool:
    try:
        state = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def _processes_named(name: str) -> list[int]:
    found = []
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat is None or stat["state"] in ("Z", "X"):
            continue
        argv0 = ""
        with contextlib.suppress(OSError):
            argv0 = (PROC / pid / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        if stat["name"] == name[:15] or os.path.basename(argv0) == name:
            found.append(stat["pid"])
    return sorted(found)


@_builtin("service_status", args=ServiceArgs)
def service_status(ctx: ActionContext, args: ServiceArgs) -> dict[str, Any]:
    """Whether a service is running: systemd when the host runs it, else a pid file or process."""
    config = ctx.config
    has_systemd = systemd_running()
    report: dict[str, Any] = {"service": args.name, "systemd": has_systemd, "pids": []}
    mode = config.service_check
    if mode == "auto":
        if has_systemd:
            mode = "systemd"
        elif args.name in config.service_pidfiles:
            mode = "pidfile"
        else:
            mode = "process"
    report["method"] = mode
    no_systemd = "" if has_systemd else "systemd is not running on this host; "
    if mode == "systemd":
        if not has_systemd:
            return {
                **report,
                "state": "unknown",
                "active": False,
                "detail": "systemd is not running on this host (no /run/systemd/system)",
            }
        done = ctx.run_process(["systemctl", "is-active", args.name], capture=True, timeout=10)
        state = done.stdout.strip() or "unknown"
        return {
            **report,
            "state": state,
            "active": state == "active",
            "detail": f"systemctl is-active exited with status {done.exit_code}",
        }
    if mode == "pidfile":
        pidfile = config.service_pidfiles.get(args.name)
        if pidfile is None:
            raise ActionFailed(f"no pid file is configured for service {args.name!r}")
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return {
                **report,
                "state": "inactive",
                "active": False,
                "detail": f"{no_systemd}pid file {pidfile} is missing or unreadable",
            }
        alive = _pid_alive(pid)
        return {
            **report,
            "pids": [pid] if alive else [],
            "state": "active" if alive else "inactive",
            "active": alive,
            "detail": f"{no_systemd}pid {pid} from {pidfile} is {'running' if alive else 'gone'}",
        }
    process = config.service_processes.get(args.name, args.name.removesuffix(".service"))
    pids = _processes_named(process)
    return {
        **report,
        "pids": pids,
        "state": "active" if pids else "inactive",
        "active": bool(pids),
        "detail": f"{no_systemd}{len(pids)} process(es) named {process!r}",
    }


# --- listening ports --------------------------------------------------------------------------


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    address = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def parse_proc_net_tcp(text: str, protocol: str) -> list[dict[str, Any]]:
    """Listening sockets (state 0A) from /proc/net/tcp or /proc/net/tcp6."""
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":
            continue
        addr, port = fields[1].split(":")
        sockets.append(
            {
                "protocol": protocol,
                "address": _address(addr),
                "port": int(port, 16),
                "uid": int(fields[7]),
                "inode": int(fields[9]),
            }
        )
    return sockets


def _socket_owners(inodes: set[int]) -> dict[int, int]:
    owners: dict[int, int] = {}
    for pid in _pids():
        try:
            fds = os.listdir(PROC / pid / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(PROC / pid / "fd" / fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    owners.setdefault(inode, int(pid))
    return owners


class ListeningPortsArgs(ActionArgs):
    protocol: Literal["tcp", "tcp6", "all"] = "all"
    port: int | None = Field(default=None, ge=1, le=65535)


@_builtin("listening_ports", args=ListeningPortsArgs)
def listening_ports(ctx: ActionContext, args: ListeningPortsArgs) -> dict[str, Any]:
    """TCP sockets in LISTEN state, with the owning process when it is visible to the agent."""
    sockets: list[dict[str, Any]] = []
    for protocol in ("tcp", "tcp6"):
        if args.protocol in (protocol, "all"):
            try:
                text = (PROC / "net" / protocol).read_text()
            except OSError:
                continue
            sockets += parse_proc_net_tcp(text, protocol)
    if args.port is not None:
        sockets = [s for s in sockets if s["port"] == args.port]
    owners = _socket_owners({s["inode"] for s in sockets})
    for sock in sockets:
        pid = owners.get(sock["inode"])
        sock["pid"] = pid
        sock["process"] = (_proc_stat(str(pid)) or {}).get("name") if pid else None
    sockets.sort(key=lambda s: (s["port"], s["protocol"], s["address"]))
    return {"listening": sockets}


# --- tail of a log file -----------------------------------------------------------------------


def check_log_path(path: str, allowed: list[str]) -> str:
    """Refuse anything but a configured log file: exact paths, or globs that match per segment."""
    if "\0" in path or not os.path.isabs(path):
        raise ValueError("must be an absolute path")
    if ".." in Path(path).parts or os.path.normpath(path) != path:
        raise ValueError("must be a normalized path without '..'")
    if not allowed:
        raise ValueError("no log files are allowed on this agent")
    if path in allowed:
        return path
    parts = Path(path).parts
    for entry in allowed:
        entry_parts = Path(entry).parts
        if len(entry_parts) == len(parts) and all(
            fnmatch.fnmatchcase(part, pattern)
            for part, pattern in zip(parts, entry_parts, strict=True)
        ):
            if os.path.realpath(path) != path:
                raise ValueError("matches an allowed pattern but is a symbolic link")
            return path
    raise ValueError("is not one of the log files this agent allows")


class TailLogArgs(ActionArgs):
    path: str
    lines: int = Field(default=100, ge=1, le=10000)

    @field_validator("path")
    @classmethod
    def _allowed(cls, path: str, info: ValidationInfo) -> str:
        return check_log_path(path, _config(info).allowed_log_files)


def tail_bytes(path: str, lines: int, cap: int) -> tuple[list[str], bool, int]:
    """The last `lines` lines of a file, reading at most `cap` bytes from its end."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        pos, data = size, b""
        while pos > 0 and data.count(b"\n") <= lines and len(data) < cap:
            step = min(READ_BLOCK, pos, cap - len(data))
            pos -= step
            handle.seek(pos)
            data = handle.read(step) + data
    if not data:
        return [], False, size
    parts = (data[:-1] if data.endswith(b"\n") else data).split(b"\n")
    truncated = False
    if pos > 0 and len(parts) <= lines:
        parts, truncated = parts[1:], True
    return [p.decode(errors="replace") for p in parts[-lines:]], truncated, size


@_builtin("tail_log", args=TailLogArgs)
def tail_log(ctx: ActionContext, args: TailLogArgs) -> dict[str, Any]:
    """The last lines of one of the log files allowed in the agent's config."""
    try:
        lines, truncated, size = tail_bytes(args.path, args.lines, ctx.config.output_cap_bytes)
    except FileNotFoundError as exc:
        raise ActionFailed(f"{args.path} does not exist") from exc
    except OSError as exc:
        raise ActionFailed(f"cannot read {args.path}: {exc.strerror}") from exc
    if truncated:
        ctx.mark_truncated()
    return {"path": args.path, "lines": lines, "truncated": truncated, "size_bytes": size}


# --- restart a service ------------------------------------------------------------------------


class RestartServiceArgs(ActionArgs):
    name: str

    @field_validator("name")
    @classmethod
    def _allowed(cls, name: str, info: ValidationInfo) -> str:
        if name not in _config(info).allowed_services:
            raise ValueError("is not one of the services this agent may restart")
        return name


@_builtin("restart_service", args=RestartServiceArgs)
def restart_service(ctx: ActionContext, args: RestartServiceArgs) -> dict[str, Any]:
    """Restart an allowed service with the configured command (argv, never a shell)."""
    argv = [part.replace("{name}", args.name) for part in ctx.config.restart_command]
    done = ctx.run_process(argv)
    if done.exit_code != 0:
        raise ActionFailed(
            f"{argv[0]} exited with status {done.exit_code}",
            exit_code=done.exit_code,
            result={"service": args.name, "command": argv},
        )
    return {"service": args.name, "command": argv, "exit_code": 0}


# --- disk health ------------------------------------------------------------------------------

STAT_FIELDS = (
    "reads_completed", "reads_merged", "sectors_read", "read_ms",
    "writes_completed", "writes_merged", "sectors_written", "write_ms",
    "in_flight", "io_ms", "weighted_io_ms",
    "discards_completed", "discards_merged", "sectors_discarded", "discard_ms",
    "flushes_completed", "flush_ms",
)  # fmt: skip
VIRTUAL_DISKS = ("loop", "ram", "zram", "sr", "fd", "nbd")


class SmartInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: bool | None = None
    reallocated_sectors: int | None = None
    pending_sectors: int | None = None
    offline_uncorrectable: int | None = None
    media_errors: int | None = None
    critical_warning: int | None = None
    percentage_used: int | None = None
    temperature_c: int | None = None
    power_on_hours: int | None = None


class DiskRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: str | None = None
    serial: str | None = None
    size_bytes: int | None = None
    rotational: bool | None = None
    stats: dict[str, int] = Field(default_factory=dict)
    smart: SmartInfo | None = None
    status: Literal["ok", "degraded", "failing", "unknown"] | None = None
    reasons: list[str] = Field(default_factory=list)


class DiskHealthFile(BaseModel):
    """The data file that stands in for probing (`disk_health_file`): a simulated host's disks."""

    model_config = ConfigDict(extra="forbid")

    disks: list[DiskRecord]


def assess(disk: DiskRecord) -> DiskRecord:
    """Derive status and reasons from SMART data, unless the record states them already."""
    if disk.status is not None:
        return disk
    smart, reasons = disk.smart, list(disk.reasons)
    if smart is None or smart.passed is None:
        reasons.append("no SMART data (smartctl missing, not permitted, or unsupported)")
        return disk.model_copy(update={"status": "unknown", "reasons": reasons})
    status = "ok"
    if smart.passed is False:
        status = "failing"
        reasons.append("SMART overall health self-assessment failed")
    if smart.critical_warning:
        status = "failing"
        reasons.append(f"NVMe critical warning {smart.critical_warning:#x}")
    for field, label in (
        ("reallocated_sectors", "reallocated sectors"),
        ("pending_sectors", "pending sectors"),
        ("offline_uncorrectable", "offline uncorrectable sectors"),
        ("media_errors", "media errors"),
    ):
        count = getattr(smart, field)
        if count:
            reasons.append(f"{count} {label}")
            if status == "ok":
                status = "degraded"
    return disk.model_copy(update={"status": status, "reasons": reasons})


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_smartctl(report: dict[str, Any]) -> SmartInfo:
    """The health fields Popcorn uses from `smartctl --json -H -A` (ATA and NVMe)."""
    info: dict[str, Any] = {}
    status = report.get("smart_status")
    if isinstance(status, dict) and isinstance(status.get("passed"), bool):
        info["passed"] = status["passed"]
    attributes = {
        row.get("id"): row.get("raw", {}).get("value")
        for row in (report.get("ata_smart_attributes") or {}).get("table", [])
        if isinstance(row, dict)
    }
    for attr, field in ((5, "reallocated_sectors"), (197, "pending_sectors"),
                        (198, "offline_uncorrectable")):  # fmt: skip
        if isinstance(attributes.get(attr), int):
            info[field] = attributes[attr]
    nvme = report.get("nvme_smart_health_information_log") or {}
    for field in ("critical_warning", "media_errors", "percentage_used"):
        if isinstance(nvme.get(field), int):
            info[field] = nvme[field]
    temperature = (report.get("temperature") or {}).get("current")
    if isinstance(temperature, int):
        info["temperature_c"] = temperature
    hours = (report.get("power_on_time") or {}).get("hours")
    if isinstance(hours, int):
        info["power_on_hours"] = hours
    return SmartInfo(**info)


def _smartctl_says(report: Any) -> str:
    messages = ((report or {}).get("smartctl") or {}).get("messages") or []
    texts = [
        m["string"] for m in messages if isinstance(m, dict) and isinstance(m.get("string"), str)
    ]
    return f": {texts[0]}" if texts else ""


def _probe_disks(ctx: ActionContext) -> tuple[list[DiskRecord], bool]:
    smartctl = shutil.which(ctx.config.smartctl) if ctx.config.smartctl else None
    disks = []
    for block in sorted(SYS_BLOCK.iterdir()) if SYS_BLOCK.is_dir() else []:
        name = block.name
        sectors = _read(block / "size")
        if name.startswith(VIRTUAL_DISKS) or not sectors or sectors == "0":
            continue
        stat = (_read(block / "stat") or "").split()
        rotational = _read(block / "queue" / "rotational")
        record = DiskRecord(
            name=name,
            model=_read(block / "device" / "model"),
            serial=_read(block / "device" / "serial"),
            size_bytes=int(sectors) * 512,
            rotational=rotational == "1" if rotational is not None else None,
            stats={k: int(v) for k, v in zip(STAT_FIELDS, stat, strict=False)},
        )
        if smartctl is not None:
            done = ctx.run_process(
                [smartctl, "--json", "-H", "-A", f"/dev/{name}"],
                capture=True,
                timeout=min(15.0, ctx.remaining()),
            )
            try:
                report = json.loads(done.stdout)
            except ValueError:
                report = None
            if done.exit_code & 0b11 or not isinstance(report, dict):
                record.reasons.append(
                    f"smartctl could not read /dev/{name}{_smartctl_says(report)}"
                )
            else:
                record.smart = parse_smartctl(report)
        disks.append(record)
    return disks, smartctl is not None


def _disks_from_file(path: Path) -> list[DiskRecord]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return DiskHealthFile.model_validate(data).disks
    except OSError as exc:
        raise ActionFailed(f"cannot read disk health file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ActionFailed(f"disk health file {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ActionFailed(f"disk health file {path}: {field}: {first['msg']}") from exc


class DiskHealthArgs(ActionArgs):
    device: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")


@_builtin("disk_health", args=DiskHealthArgs)
def disk_health(ctx: ActionContext, args: DiskHealthArgs) -> dict[str, Any]:
    """Per-disk health from /sys/block and SMART (or from the configured disk health file)."""
    if ctx.config.disk_health_file is not None:
        disks, source, smart = _disks_from_file(ctx.config.disk_health_file), "file", None
    else:
        disks, smart = _probe_disks(ctx)
        source = "sysfs+smartctl" if smart else "sysfs"
    if args.device is not None:
        disks = [d for d in disks if d.name == args.device]
        if not disks:
            raise ActionFailed(f"no disk named {args.device!r} on this host")
    assessed = [assess(d) for d in disks]
    failing = [d.name for d in assessed if d.status == "failing"]
    return {
        "source": source,
        "smartctl": smart,
        "disks": [d.model_dump() for d in assessed],
        "failing": failing,
        "degraded": [d.name for d in assessed if d.status == "degraded"],
        "healthy": not failing,
    }
