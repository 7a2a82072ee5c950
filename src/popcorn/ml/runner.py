"""Running a flow file as a subprocess with Metaflow's local runtime, and watching it.

Metaflow's datastore, metadata and cards live under `<POPCORN_HOME>/metaflow` (the
subprocess runs in that folder, so nothing lands in anyone's working directory). With an
S3 object store (`storage_url = "s3://..."`) the datastore (artifacts and cards) goes to
`<storage_url>/metaflow` instead; Metaflow's local metadata stays on the machine. The
subprocess gets the installation's settings (home, database, Redis) so a flow can read
platform data through the domain facades. It runs in its own session: cancelling a run
kills the whole process group, Metaflow's task processes included.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from popcorn.config import PRIVATE_DIR, get_settings

# "[<run>/<step>/<task> (pid N)] Task is starting." as Metaflow's runtime prints it.
TASK_LINE = re.compile(r"\[(\d+)/([A-Za-z0-9_]+)/(\d+) \(pid \d+\)\] Task (is starting|finished)")
RUN_ID_LINE = re.compile(r"run-id (\d+)")
TAIL_CHARS = 32_000
KILL_GRACE_SECONDS = 5.0


def metaflow_root() -> Path:
    root = get_settings().home.resolve() / "metaflow"
    root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    return root


def metaflow_env() -> dict[str, str]:
    """Metaflow's local datastore and metadata under the home; an admin's own METAFLOW_*
    settings (an S3 datastore for Kubernetes or Batch) win over these defaults."""
    settings = get_settings()
    root = str(metaflow_root())
    defaults = {
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": root,
        "METAFLOW_DEFAULT_METADATA": "local",
        "USERNAME": os.environ.get("USERNAME") or "popcorn",
    }
    if settings.storage_url.startswith("s3://"):
        defaults["METAFLOW_DEFAULT_DATASTORE"] = "s3"
        defaults["METAFLOW_DATASTORE_SYSROOT_S3"] = settings.storage_url.rstrip("/") + "/metaflow"
        if settings.storage_endpoint_url:
            defaults["METAFLOW_S3_ENDPOINT_URL"] = settings.storage_endpoint_url
        if settings.storage_profile:
            defaults["AWS_PROFILE"] = settings.storage_profile
    return {k: os.environ.get(k) or v for k, v in defaults.items()}


def use_metaflow() -> None:
    """Point this process's Metaflow client at the installation's datastore.

    Metaflow reads its configuration once, when first imported, and any code may import it
    before Popcorn does; so besides the environment (for a first import), the client is
    told its metadata root explicitly, every time: the runs' artifacts and cards are then
    read from where the metadata recorded them, whatever this process imported first."""
    env = metaflow_env()
    for key, value in env.items():
        os.environ.setdefault(key, value)
    from metaflow import metadata

    if env["METAFLOW_DEFAULT_METADATA"] == "local":
        root = Path(env["METAFLOW_DATASTORE_SYSROOT_LOCAL"])
        (root / ".metaflow").mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        metadata(f"local@{root}")
    endpoint = env.get("METAFLOW_S3_ENDPOINT_URL")
    if endpoint:
        from metaflow import metaflow_config

        # The S3 client's parameters were settled at import; this dict is the one it reads.
        metaflow_config.DATATOOLS_CLIENT_PARAMS.setdefault("endpoint_url", endpoint)


def subprocess_env() -> dict[str, str]:
    settings = get_settings()
    env = dict(os.environ)
    env.update(metaflow_env())
    env["POPCORN_HOME"] = str(settings.home.resolve())
    env["POPCORN_DATABASE_URL"] = settings.effective_database_url
    if settings.redis_url:
        env["POPCORN_REDIS_URL"] = settings.redis_url
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([package_root, *[p for p in paths if p != package_root]])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(
    path: Path,
    *,
    parameters: dict[str, str],
    decorators: list[str],
    run_id_file: Path,
    resume_from: str = "",
) -> list[str]:
    """The argument list for `python <flow> run ...` (or `resume --origin-run-id ...`)."""
    args = [sys.executable, str(path), "--no-pylint"]
    for deco in decorators:
        args += ["--with", deco]
    if resume_from:
        args += ["resume", "--origin-run-id", resume_from]
    else:
        args += ["run"]
        for key, value in parameters.items():
            args.append(f"--{key}={value}")  # one argument: a value never reads as an option
    return [*args, "--run-id-file", str(run_id_file)]


@dataclass
class Watch:
    """What a running flow has shown so far."""

    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    run_id: str = ""
    lines: list[str] = field(default_factory=list)
    chars: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
            self.chars += len(line)
            while self.chars > TAIL_CHARS * 2 and len(self.lines) > 1:
                self.chars -= len(self.lines.pop(0))
            found = TASK_LINE.search(line)
            if found:
                target = self.started if found.group(4) == "is starting" else self.finished
                target.append(found.group(2))
            elif not self.run_id and (rid := RUN_ID_LINE.search(line)):
                self.run_id = rid.group(1)

    def tail(self) -> str:
        with self.lock:
            return "".join(self.lines)[-TAIL_CHARS:]


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends SIGTERM when the worker that started the flow
    dies, so a lost job leaves no flow running on (its retry resumes the Metaflow run)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the flow's process group, SIGKILL to what is left after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_subprocess(
    args: list[str],
    *,
    log_path: Path,
    on_tick: Callable[[Watch], bool],
    tick_seconds: float = 0.5,
) -> tuple[int, Watch, bool]:
    """Run a flow, calling `on_tick` twice a second; when it answers True, kill the run.

    Returns (exit code, what was seen, whether it was killed)."""
    watch = Watch()
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    process = subprocess.Popen(
        args,
        cwd=metaflow_root(),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )

    def pump() -> None:
        assert process.stdout is not None
        with log_path.open("a") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                watch.feed(line)

    reader = threading.Thread(target=pump, name="popcorn-ml-log", daemon=True)
    reader.start()
    killed = False
    try:
        while process.poll() is None:
            if on_tick(watch):
                killed = True
                kill_tree(process)
                break
            time.sleep(tick_seconds)
    except BaseException:
        kill_tree(process)
        raise
    reader.join(timeout=10)
    return process.wait(), watch, killed
