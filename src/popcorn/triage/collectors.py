"""Triage collectors: read-only Bolt actions that return a host's state as tables.

Load them on an agent by listing this module in its config
(`action_modules: [popcorn.triage.collectors]`). Every collector reads under one root
directory, `/` unless `POPCORN_TRIAGE_ROOT` says otherwise in the agent's environment,
so one machine can host many agents over different file trees. Nothing here writes,
runs a shell, or follows a caller-given path: the caller only picks tables and limits.

`triage.collect` returns every requested table in one answer, capped at the agent's
`output_cap_bytes` (rows past the cap are dropped and the table marked truncated);
`triage.<table>` returns one table. When `osqueryi` is installed and the root is `/`,
the tables osquery knows come from it instead, in the same shape. Packages come from
dpkg's status file and the rpm database (`popcorn.triage.rpmdb`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from popcorn.remediation.agent import ActionArgs, ActionContext, ActionFailed, action
from popcorn.triage import rpmdb
from popcorn.triage.tables import TABLE_NAMES, TableName

ROOT_ENV = "POPCORN_TRIAGE_ROOT"
HASH_BLOCK = 1024 * 1024
SUID_PATHS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
              "/usr/lib", "/usr/libexec", "/opt")  # fmt: skip
RECENT_PATHS = ("/etc", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin",
                "/usr/local/sbin", "/usr/lib/systemd", "/lib/systemd", "/root/.ssh")  # fmt: skip
TIMER_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


class CollectOptions(ActionArgs):
    recent_days: float = Field(default=7.0, gt=0, le=365)
    hash_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)
    max_files: int = Field(default=200_000, ge=1, le=5_000_000)
    use_osquery: bool = True


class CollectArgs(CollectOptions):
    tables: list[TableName] | None = Field(default=None, max_length=len(TABLE_NAMES))


Row = dict[str, Any]
Reader = Callable[[ActionContext, "Host", CollectOptions], Iterator[Row]]


class Host:
    """The file tree being read: paths are given as on the host and read under the root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._hashes: dict[tuple[int, int, int, int], str | None] = {}
        self._users: dict[int, str] | None = None

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def shown(self, path: Path | str) -> str:
        """A path as the host sees it (without the root prefix)."""
        text = str(path)
        base = str(self.root)
        if base != "/" and (text == base or text.startswith(base + "/")):
            return "/" + text[len(base) :].lstrip("/")
        return text

    def read(self, host_path: str) -> str | None:
        try:
            return self.path(host_path).read_text(errors="replace")
        except OSError:
            return None

    def user(self, uid: int | None) -> str | None:
        if uid is None:
            return None
        if self._users is None:
            self._users = {}
            for fields in _colon_file(self.read("/etc/passwd")):
                if len(fields) >= 7 and fields[2].isdecimal():
                    self._users.setdefault(int(fields[2]), fields[0])
        return self._users.get(uid, str(uid))

    def sha256(self, path: Path, limit: int) -> str | None:
        """SHA-256 of a file's content (None when unreadable or over `limit` bytes)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        cache = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if cache not in self._hashes:
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as handle:
                    while block := handle.read(HASH_BLOCK):
                        digest.update(block)
                self._hashes[cache] = digest.hexdigest()
            except OSError:
                self._hashes[cache] = None
        return self._hashes[cache]


def collector_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/")


def _colon_file(text: str | None) -> Iterator[list[str]]:
    for line in (text or "").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield line.rstrip("\n").split(":")


# --- processes and sockets --------------------------------------------------------------------


def _pids(host: Host) -> list[str]:
    try:
        return sorted((e for e in os.listdir(host.path("/proc")) if e.isdecimal()), key=int)
    except OSError:
        return []


def _stat(host: Host, pid: str) -> tuple[str, int] | None:
    raw = host.read(f"/proc/{pid}/stat")
    if not raw or "(" not in raw:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, int(fields[1]) if len(fields) > 1 and fields[1].isdecimal() else 0


def _uid(host: Host, pid: str) -> int | None:
    for line in (host.read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("Uid:") and len(line.split()) > 1:
            return int(line.split()[1])
    return None


def read_processes(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    found: dict[int, Row] = {}
    for pid in _pids(host):
        ctx.check()
        parsed = _stat(host, pid)
        if parsed is None:
            continue
        name, ppid = parsed
        if int(pid) == 2 or ppid == 2:  # kernel threads: no executable to speak of
            continue
        link = host.path(f"/proc/{pid}/exe")
        try:
            exe: str | None = host.shown(os.readlink(link)).removesuffix(" (deleted)")
        except OSError:
            exe = None
        try:
            raw = host.path(f"/proc/{pid}/cmdline").read_bytes()[:1024]
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmdline = ""
        found[int(pid)] = {
            "pid": int(pid),
            "ppid": ppid,
            "name": name,
            "exe": exe,
            "sha256": host.sha256(link, opts.hash_max_bytes) if exe else None,
            "user": host.user(_uid(host, pid)),
            "cmdline": cmdline,
        }
    for row in found.values():
        parent = found.get(row["ppid"])
        row["parent"] = parent["name"] if parent else None
        yield row


def _hex_address(raw: str) -> str:
    import ipaddress

    data = bytes.fromhex(raw)
    if len(data) == 4:
        return str(ipaddress.IPv4Address(data[::-1]))
    address = ipaddress.IPv6Address(b"".join(data[i : i + 4][::-1] for i in range(0, 16, 4)))
    mapped = address.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else str(address)


def parse_proc_net(text: str, protocol: str) -> list[Row]:
    """Listening TCP (state 0A) and unconnected UDP (state 07) sockets of /proc/net/*."""
    wanted = "07" if protocol.startswith("udp") else "0A"
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != wanted or ":" not in fields[1]:
            continue
        addr, port = fields[1].split(":")
        try:
            rows.append(
                {
                    "protocol": protocol,
                    "address": _hex_address(addr),
                    "port": int(port, 16),
                    "uid": int(fields[7]),
                    "inode": int(fields[9]),
                }
            )
        except ValueError:
            continue
    return rows


def read_sockets(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    sockets: list[Row] = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        sockets += parse_proc_net(host.read(f"/proc/net/{protocol}") or "", protocol)
    inodes = {s["inode"] for s in sockets}
    owners: dict[int, str] = {}
    for pid in _pids(host):
        ctx.check()
        fd_dir = host.path(f"/proc/{pid}/fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1].isdecimal():
                inode = int(target[8:-1])
                if inode in inodes:
                    owners.setdefault(inode, pid)
    for sock in sorted(sockets, key=lambda s: (s["port"], s["protocol"], s["address"])):
        owner = owners.get(sock["inode"])
        name: str | None = None
        exe: str | None = None
        if owner is not None:
            parsed = _stat(host, owner)
            name = parsed[0] if parsed else None
            try:
                exe = host.shown(os.readlink(host.path(f"/proc/{owner}/exe")))
            except OSError:
                exe = None
        yield {
            "protocol": sock["protocol"],
            "address": sock["address"],
            "port": sock["port"],
            "inode": sock["inode"],
            "pid": int(owner) if owner is not None else None,
            "process": name,
            "exe": exe,
            "user": host.user(sock["uid"]),
        }


# --- accounts ---------------------------------------------------------------------------------


def read_users(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    for f in _colon_file(host.read("/etc/passwd")):
        if len(f) >= 7:
            uid = int(f[2]) if f[2].isdecimal() else None
            gid = int(f[3]) if f[3].isdecimal() else None
            yield {"name": f[0], "uid": uid, "gid": gid, "home": f[5], "shell": f[6]}


def read_groups(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    for f in _colon_file(host.read("/etc/group")):
        if len(f) >= 4:
            members = sorted(m for m in f[3].split(",") if m)
            gid = int(f[2]) if f[2].isdecimal() else None
            yield {"name": f[0], "gid": gid, "members": members}


def _fingerprint(blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def parse_authorized_key(line: str) -> Row | None:
    """One authorized_keys line: [options] type base64 [comment]; None for anything else."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    options = ""
    if not text.startswith(KEY_TYPES):
        # Options end at the first space outside double quotes.
        quoted, cut = False, -1
        for index, char in enumerate(text):
            if char == '"':
                quoted = not quoted
            elif char == " " and not quoted:
                cut = index
                break
        if cut < 0:
            return None
        options, text = text[:cut], text[cut + 1 :].lstrip()
    parts = text.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(KEY_TYPES):
        return None
    return {
        "options": options,
        "key_type": parts[0],
        "fingerprint": _fingerprint(parts[1]),
        "comment": parts[2].strip() if len(parts) > 2 else "",
    }


def read_authorized_keys(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    seen: set[str] = set()
    for user in read_users(ctx, host, opts):
        home = user["home"] or ""
        if not home.startswith("/"):
            continue
        for name in ("authorized_keys", "authorized_keys2"):
            shown = f"{home.rstrip('/')}/.ssh/{name}"
            if shown in seen:
                continue
            seen.add(shown)
            for line in (host.read(shown) or "").splitlines()[:10_000]:
                entry = parse_authorized_key(line)
                if entry is not None:
                    yield {"user": user["name"], "path": shown, **entry}


# --- scheduled work ---------------------------------------------------------------------------


def parse_crontab(text: str, source: str, user: str | None) -> list[Row]:
    """Entries of a crontab; system crontabs (user None) carry the user as sixth field."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split(None, 1)[0]
        if "=" in head and not head.startswith("@"):
            continue  # an environment assignment
        fields = line.split()
        width = 1 if line.startswith("@") else 5
        need = width + (1 if user is None else 0) + 1
        if len(fields) < need:
            continue
        owner = fields[width] if user is None else user
        command = " ".join(fields[width + (1 if user is None else 0) :])
        rows.append(
            {
                "source": source,
                "user": owner,
                "schedule": " ".join(fields[:width]),
                "command": command,
            }
        )
    return rows


def _files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return []


def read_crontabs(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    yield from parse_crontab(host.read("/etc/crontab") or "", "/etc/crontab", None)
    for path in _files(host.path("/etc/cron.d")):
        yield from parse_crontab(host.read(host.shown(path)) or "", host.shown(path), None)
    for spool in ("/var/spool/cron/crontabs", "/var/spool/cron"):
        for path in _files(host.path(spool)):
            text = host.read(host.shown(path)) or ""
            yield from parse_crontab(text, host.shown(path), path.name)


def parse_timer(text: str) -> tuple[str, str | None]:
    schedule, unit, section = [], None, ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Timer]" and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            if key.startswith("On"):
                schedule.append(f"{key}={value}")
            elif key == "Unit":
                unit = value
    return "; ".join(schedule), unit


def read_timers(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    seen: set[str] = set()
    for directory in TIMER_DIRS:
        for path in _files(host.path(directory)):
            if path.suffix != ".timer" or path.name in seen:
                continue
            seen.add(path.name)
            schedule, unit = parse_timer(host.read(host.shown(path)) or "")
            yield {
                "path": host.shown(path),
                "unit": path.name,
                "schedule": schedule,
                "activates": unit or path.name.removesuffix(".timer") + ".service",
            }


# --- kernel and packages ----------------------------------------------------------------------


def read_modules(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    for line in (host.read("/proc/modules") or "").splitlines():
        f = line.split()
        if len(f) >= 5:
            used_by = sorted(u for u in f[3].split(",") if u and u != "-")
            size = int(f[1]) if f[1].isdecimal() else None
            refcount = int(f[2]) if f[2].isdecimal() else None
            yield {"name": f[0], "size": size, "refcount": refcount, "used_by": used_by,
                   "state": f[4]}  # fmt: skip


def parse_dpkg_status(text: str) -> Iterator[Row]:
    """Installed packages from a dpkg status file (paragraphs of `Field: value`)."""
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            yield {
                "name": fields["Package"],
                "version": fields.get("Version"),
                "arch": fields.get("Architecture"),
                "status": fields["Status"],
            }


def read_packages(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    """dpkg's status file, then the rpm database (through `rpm` when installed, else the
    sqlite rpmdb directly); a host with both lists both, each row naming its manager."""
    for row in parse_dpkg_status(host.read("/var/lib/dpkg/status") or ""):
        yield {**row, "manager": "dpkg"}
    found = rpmdb.find_dbpath(host.root)
    if found is None:
        return
    dbpath, kind = found
    binary = shutil.which("rpm")
    if binary is not None:
        argv = [binary, "--root", str(host.root), "--dbpath", dbpath, "-qa",
                "--queryformat", rpmdb.QUERY_FORMAT]  # fmt: skip
        done = ctx.run_process(argv, capture=True, timeout=min(60.0, ctx.remaining()))
        if done.exit_code == 0 and not done.truncated:
            yield from rpmdb.parse_query_output(done.stdout)
            return
        if kind != "sqlite":
            raise rpmdb.RpmDbError(
                f"rpm could not read the {kind} database in {dbpath}: {done.stderr.strip()[:200]}"
            )
    if kind != "sqlite":
        raise rpmdb.RpmDbError(f"the rpm database in {dbpath} is {kind}: reading it needs rpm")
    yield from rpmdb.read_sqlite(host.path(dbpath) / rpmdb.SQLITE_NAME)


# --- file system walks ------------------------------------------------------------------------


def _walk(ctx: ActionContext, host: Host, tops: tuple[str, ...], limit: int) -> Iterator[Path]:
    """Regular files under the given system paths: no symlinks followed, one filesystem each."""
    done: set[str] = set()
    seen = 0
    for top in tops:
        start = host.path(top)
        real = os.path.realpath(start)
        if real in done or not start.is_dir():
            continue
        done.add(real)
        device = os.stat(start).st_dev
        for directory, subdirs, files in os.walk(start):
            ctx.check()
            kept = []
            for sub in subdirs:
                try:
                    if os.lstat(os.path.join(directory, sub)).st_dev == device:
                        kept.append(sub)
                except OSError:
                    continue
            subdirs[:] = sorted(kept)
            for name in sorted(files):
                seen += 1
                if seen > limit:
                    return
                yield Path(directory) / name


def read_suid(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    for path in _walk(ctx, host, SUID_PATHS, opts.max_files):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            yield {
                "path": host.shown(path),
                "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                "uid": st.st_uid,
                "gid": st.st_gid,
                "size": st.st_size,
                "sha256": host.sha256(path, opts.hash_max_bytes),
            }


def read_recent(ctx: ActionContext, host: Host, opts: CollectOptions) -> Iterator[Row]:
    since = time.time() - opts.recent_days * 86400
    for path in _walk(ctx, host, RECENT_PATHS, opts.max_files):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_mtime >= since and not stat.S_ISLNK(st.st_mode):
            yield {
                "path": host.shown(path),
                "mtime": round(st.st_mtime, 3),
                "size": st.st_size,
                "uid": st.st_uid,
                "mode": f"{stat.S_IMODE(st.st_mode):04o}",
            }


READERS: dict[str, Reader] = {
    "listening_sockets": read_sockets,
    "processes": read_processes,
    "users": read_users,
    "groups": read_groups,
    "authorized_keys": read_authorized_keys,
    "crontabs": read_crontabs,
    "systemd_timers": read_timers,
    "kernel_modules": read_modules,
    "packages": read_packages,
    "suid_files": read_suid,
    "recent_files": read_recent,
}

# --- osquery ----------------------------------------------------------------------------------

OSQUERY: dict[str, str] = {
    "processes": (
        "SELECT p.pid, p.parent AS ppid, p.name, p.path AS exe, h.sha256, pp.name AS parent, "
        "u.username AS user, p.cmdline FROM processes p LEFT JOIN processes pp "
        "ON pp.pid = p.parent LEFT JOIN users u ON u.uid = p.uid "
        "LEFT JOIN hash h ON h.path = p.path WHERE p.parent != 2 AND p.pid != 2"
    ),
    "listening_sockets": (
        "SELECT CASE l.protocol WHEN 6 THEN 'tcp' ELSE 'udp' END || "
        "CASE l.family WHEN 10 THEN '6' ELSE '' END AS protocol, l.address, l.port, "
        "l.socket AS inode, l.pid, p.name AS process, p.path AS exe, u.username AS user "
        "FROM listening_ports l LEFT JOIN processes p ON p.pid = l.pid "
        "LEFT JOIN users u ON u.uid = p.uid"
    ),
    "users": "SELECT username AS name, uid, gid, directory AS home, shell FROM users",
    "kernel_modules": (
        "SELECT name, size, NULL AS refcount, used_by, status AS state FROM kernel_modules"
    ),
    "packages": (
        "SELECT name, version, arch, status, 'dpkg' AS manager FROM deb_packages "
        "WHERE status LIKE '%installed' UNION ALL SELECT name, "
        "CASE WHEN CAST(epoch AS INTEGER) > 0 THEN epoch || ':' ELSE '' END || version || '-' "
        "|| release AS version, arch, 'installed' AS status, 'rpm' AS manager FROM rpm_packages"
    ),
}
INT_COLUMNS = {"pid", "ppid", "port", "inode", "uid", "gid", "size", "refcount"}


def parse_osquery(table: str, stdout: str) -> list[Row] | None:
    """`osqueryi --json` output in the collectors' shape, None when it is not a row list.

    osquery prints every value as a string and SQL NULL as "": integer columns become
    ints (or None), a module's `used_by` ("-" or "a,b,") a sorted list.
    """
    try:
        rows = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return None
    for row in rows:
        for column in INT_COLUMNS & row.keys():
            value = row[column]
            row[column] = int(value) if isinstance(value, str) and value.lstrip("-").isdecimal() \
                else value if isinstance(value, int) else None  # fmt: skip
        if table == "kernel_modules":
            used = str(row.get("used_by") or "")
            row["used_by"] = sorted(u for u in used.split(",") if u.strip() and u != "-")
        for column, value in row.items():
            if value == "":
                row[column] = None
    return rows


def _osquery(ctx: ActionContext, binary: str, table: str) -> list[Row] | None:
    """A table through osqueryi, in the collectors' shape; None when osquery cannot answer."""
    done = ctx.run_process(
        [binary, "--json", OSQUERY[table]], capture=True, timeout=min(30.0, ctx.remaining())
    )
    if done.exit_code != 0 or done.truncated:
        return None
    return parse_osquery(table, done.stdout)


# --- the actions ------------------------------------------------------------------------------


def collect_tables(
    ctx: ActionContext, tables: list[str], opts: CollectOptions, *, root: Path | None = None
) -> dict[str, Any]:
    """Read each table within the output cap; a reader that fails is reported, not fatal."""
    host = Host(root or collector_root())
    if not host.path("/").is_dir():
        raise ActionFailed(f"the collector root {host.root} is not a directory")
    osquery = shutil.which("osqueryi") if opts.use_osquery and str(host.root) == "/" else None
    budget = ctx.config.output_cap_bytes - 4096
    out: dict[str, Any] = {}
    sources: set[str] = set()
    for table in tables:
        started = time.monotonic()
        entry: dict[str, Any] = {"rows": [], "truncated": False, "error": None}
        try:
            rows: Any = None
            if osquery is not None and table in OSQUERY:
                rows = _osquery(ctx, osquery, table)
                if rows is not None:
                    entry["source"] = "osquery"
            if rows is None:
                rows, entry["source"] = READERS[table](ctx, host, opts), "files"
            sources.add(entry["source"])
            for row in rows:
                size = len(json.dumps(row, default=str)) + 2
                if size > budget:
                    entry["truncated"] = True
                    ctx.mark_truncated()
                    break
                budget -= size
                entry["rows"].append(row)
        except (OSError, ValueError, UnicodeError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
        entry["duration_s"] = round(time.monotonic() - started, 3)
        out[table] = entry
    return {
        "root": str(host.root),
        "hostname": os.uname().nodename,
        "source": "+".join(sorted(sources)) or "files",
        "collected_at": time.time(),
        "tables": out,
    }


@action("triage.collect", args=CollectArgs, timeout=300)
def collect(ctx: ActionContext, args: CollectArgs) -> dict[str, Any]:
    """Host state for triage: the requested tables (all by default), output-capped."""
    return collect_tables(ctx, list(args.tables or TABLE_NAMES), args)


def _single(table: str) -> None:
    def run(ctx: ActionContext, args: CollectOptions) -> dict[str, Any]:
        return collect_tables(ctx, [table], args)

    run.__doc__ = f"Triage table {table}."
    action(f"triage.{table}", args=CollectOptions, timeout=300)(run)


for _table in TABLE_NAMES:
    _single(_table)
