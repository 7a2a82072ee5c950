"""Starting a child process as another OS user, for code the platform does not trust with its
own rights (an operator's notebook kernel or Spark driver).

The worker (root, or holding CAP_SETUID, CAP_SETGID and CAP_CHOWN) starts the child with
Popen's `user`, `group` and `extra_groups`, which the child switches to before it execs; its
working folder is a fresh one it owns, inside a folder of the worker's that it can only pass
through. `problem` says in one line why that cannot work on this machine, so a worker refuses
to start instead of running operators' code with its own rights.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from popcorn.config import config_file_path, get_settings

# capability bits (linux/capability.h) the worker needs to start a child as another user
NEEDED_CAPS = {"CAP_CHOWN": 0, "CAP_SETGID": 6, "CAP_SETUID": 7}
WORK_MODE = 0o700
PASS_THROUGH = 0o711  # the run's folder: the child may reach its own folder inside, no more


@dataclass(frozen=True)
class Account:
    """An unprivileged OS user children run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def popen(self) -> dict[str, Any]:
        """Popen arguments that start the child as this user (switched before exec)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def lookup(name: str) -> Account:
    """The OS user `name`; LookupError when the machine has none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LookupError(f"no OS user named {name!r} on this machine") from None
    groups = tuple(g for g in os.getgrouplist(name, entry.pw_gid) if g != entry.pw_gid)
    return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


def missing_capabilities() -> list[str]:
    """The capabilities this process lacks to start children as another user."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # no procfs: only root can
        return [] if os.geteuid() == 0 else list(NEEDED_CAPS)
    line = next((x for x in status.splitlines() if x.startswith("CapEff:")), "CapEff: 0")
    effective = int(line.split()[1], 16)
    return [name for name, bit in NEEDED_CAPS.items() if not effective >> bit & 1]


def private_paths() -> list[Path]:
    """What children must not reach: POPCORN_HOME (the embedded database, the generated
    secret key, the embedded Redis's files), the configuration file, a local object store."""
    settings = get_settings()
    paths = [settings.home.resolve()]
    config = config_file_path()
    if config is not None:
        paths.append(config.resolve())
    url = settings.storage_url
    if url and not url.startswith("s3://"):
        paths.append(Path(url.removeprefix("file://")).resolve())
    return paths


def reachable(account: Account, path: Path) -> bool:
    """Whether `account` can enter the folder (or read the file) `path`: asked of the kernel
    by a child running as that user, so ACLs and group rights count too."""
    probe = shutil.which("test") or "/usr/bin/test"
    flag = "-x" if path.is_dir() else "-r"
    done = subprocess.run([probe, flag, str(path)], env={}, cwd="/", check=False, **account.popen())
    return done.returncode == 0


def runs_python(account: Account) -> str:
    """Why `account` cannot run this interpreter ('' when it can): default kernels and
    PySpark's workers are started with it."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", ""],
            env={},
            cwd="/",
            check=False,
            capture_output=True,
            **account.popen(),
        )
    except OSError as exc:
        return exc.strerror or str(exc)
    return "" if done.returncode == 0 else done.stderr.decode(errors="replace").strip()[-200:]


def problem(name: str, private: list[Path] | None = None) -> str:
    """Why children cannot run as `name` here ('' when they can): the user is unknown or
    root, this process may not switch users, the user can reach a private path or cannot
    run this Python."""
    try:
        account = lookup(name)
    except LookupError as exc:
        return f"notebooks_run_as: {exc}"
    if account.uid == 0:
        return f"notebooks_run_as: {name!r} is root; name an unprivileged user"
    missing = missing_capabilities()
    if missing:
        return (
            f"notebooks_run_as={name} needs this worker to run as root or with "
            f"{', '.join(missing)}; start it so, or unset notebooks_run_as"
        )
    for path in private_paths() if private is None else private:
        if path.exists() and reachable(account, path):
            return (
                f"notebooks_run_as={name}: {name} can read {path}, which holds the platform's "
                f"secrets; make it readable by the worker's user only (chmod 700)"
            )
    why = runs_python(account)
    if why:
        return (
            f"notebooks_run_as={name}: {name} cannot run {sys.executable} ({why}); install "
            f"Python where that user can run it"
        )
    return ""


def work_folder(parent: Path, account: Account | None) -> Path:
    """A working folder for a child inside the worker's `parent`: owned by `account` (when
    given), which may pass through `parent` to it but not read or change `parent`'s files."""
    work = parent / "work"
    work.mkdir(mode=WORK_MODE)
    if account is not None:
        os.chown(work, account.uid, account.gid)
        parent.chmod(PASS_THROUGH)
    return work


def hand_over(path: Path, account: Account | None) -> None:
    """Give a file the worker wrote for the child (a script, a connection file) to `account`.
    The file must be in the worker's folder, never the child's: there the child (or one it
    left running) could have put a link for the worker to write through."""
    if account is not None:
        os.chown(path, account.uid, account.gid, follow_symlinks=False)
