"""The Git watcher: one item per repository (a local path or a clone URL the machine can
reach), with its default branch, committers, files that look like secrets and, where the
account names the host's API (GitHub or GitLab, `githost.py`), default-branch protection
(without one it is reported as unknown: a plain Git remote does not expose it).

Everything runs the real `git` with argument lists; what is read is bounded (commits,
files, bytes per file) and the secret patterns are fixed, linear-time expressions.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from popcorn.errors import InvalidInput
from popcorn.outbound import check_url
from popcorn.security import githost
from popcorn.security.watchers import Observed

MAX_COMMITS = 2000
MAX_FILES = 5000
MAX_BYTES = 65536
SECRET_NAMES = {
    "id_rsa": "ssh private key",
    "id_dsa": "ssh private key",
    "id_ecdsa": "ssh private key",
    "id_ed25519": "ssh private key",
    ".env": "environment file",
    "credentials": "cloud credentials",
    ".npmrc": "package registry token",
    ".pypirc": "package registry token",
    ".htpasswd": "password file",
}
SECRET_SUFFIXES = {
    ".pem": "private key or certificate",
    ".key": "private key",
    ".p12": "PKCS#12 bundle",
    ".pfx": "PKCS#12 bundle",
    ".keystore": "Java keystore",
}
SECRET_CONTENT = (
    (re.compile(rb"AKIA[0-9A-Z]{16}"), "AWS access key id"),
    (re.compile(rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----"), "private key"),
    (re.compile(rb"xox[abprs]-[0-9A-Za-z-]{10,100}"), "Slack token"),
    (re.compile(rb"gh[pousr]_[0-9A-Za-z]{36}"), "GitHub token"),
)


def _git(args: list[str], cwd: str | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise InvalidInput(
            f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()[:300]}"
        )
    return done.stdout.decode(errors="replace")


def check_repository(spec: str) -> None:
    """A repository must be an existing local path or an allowed http(s) URL."""
    if spec.startswith(("http://", "https://")):
        check_url(spec, purpose="git repository")
    elif "://" in spec or spec.startswith("-"):
        raise InvalidInput(f"repository {spec!r}: give a local path or an http(s) URL")


def observe(spec: str, api: githost.HostApi | None = None) -> Observed:
    """Clone (bare, when remote) and describe one repository."""
    check_repository(spec)
    if spec.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory(prefix="popcorn-git-") as tmp:
            _git(["clone", "--bare", "--quiet", "--", spec, tmp])
            return _describe(spec, tmp, api, spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise InvalidInput(f"repository {spec!r} does not exist")
    return _describe(spec, str(path), api, _origin(str(path)))


def _origin(where: str) -> str:
    """The clone URL of a local checkout's `origin` remote ('' when it has none)."""
    try:
        return _git(["config", "--get", "remote.origin.url"], cwd=where).strip()
    except InvalidInput:
        return ""


def _describe(spec: str, where: str, api: githost.HostApi | None, remote: str) -> Observed:
    head = _git(["symbolic-ref", "--short", "HEAD"], cwd=where).strip()
    try:
        _git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=where)
    except InvalidInput:
        config: dict[str, Any] = {"default_branch": head, "empty": True}
        return Observed(spec, _name(spec), config)
    log = _git(["log", f"--max-count={MAX_COMMITS}", "--format=%an <%ae>", "HEAD"], cwd=where)
    files = _git(["ls-tree", "-r", "-z", "--name-only", "HEAD"], cwd=where).split("\0")
    files = [f for f in files if f][:MAX_FILES]
    config = {
        "default_branch": head,
        "head": _git(["rev-parse", "HEAD"], cwd=where).strip(),
        "committers": sorted(set(line for line in log.splitlines() if line)),
        "files": len(files),
        "secret_files": _secrets(files, where),
        # None: unknown (no host API named); False: not protected; else the rules
        "branch_protection": githost.protection(api, githost.project_path(remote), head)
        if api
        else None,
    }
    return Observed(spec, _name(spec), config)


def _secrets(files: list[str], where: str) -> list[dict[str, str]]:
    found = []
    for path in files:
        name = PurePosixPath(path).name
        kind = SECRET_NAMES.get(name) or SECRET_SUFFIXES.get(PurePosixPath(path).suffix)
        if kind is None:
            blob = subprocess.run(
                ["git", "cat-file", "-p", f"HEAD:{path}"],
                cwd=where,
                capture_output=True,
                timeout=30,
                check=False,
            ).stdout[:MAX_BYTES]
            kind = next((label for rx, label in SECRET_CONTENT if rx.search(blob)), None)
        if kind:
            found.append({"path": path, "kind": kind})
    return found


def _name(spec: str) -> str:
    tail = spec.rstrip("/").rsplit("/", 1)[-1]
    return tail.removesuffix(".git") or spec
