"""Running one attempt of a notebook run on a worker: papermill in a kernel process of its
own, `spark-submit` for a pyspark script, or an installed plugin's callable.

The kernel is started by jupyter_client in a new session (its own process group) and
watches its parent (ipykernel's parent poller), so a worker killed mid-run does not leave
it behind. A watcher thread here stops the kernel (or the Spark process group) when the
run is canceled or passes its timeout; a kernel that dies is noticed by nbclient, and the
run ends failed with the cell it was in, never hung. Every output notebook (or log) goes
to the object store, immutable, one per attempt.

With `notebooks_run_as`, kernels and spark-submit run as that OS user (`popcorn.runas`), in
a work folder of their own inside the run's folder, which stays the worker's.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from popcorn import runas
from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.db import session_scope, utcnow
from popcorn.notebooks import formats, service
from popcorn.notebooks.models import NotebookDefinition, NotebookRun
from popcorn.outbox import emit
from popcorn.storage import get_store

RUNS = "notebooks/runs"
OUTPUT_MARK = "POPCORN_OUTPUT "
WATCH_SECONDS = 0.5
MAX_LOG = 2_000_000


class RunFailed(Exception):
    """An attempt failed and the job machinery should retry it (attempts remain)."""


@dataclass
class Outcome:
    status: str = "succeeded"
    output: bytes | None = None
    log: bytes | None = None
    failed_cell: int | None = None
    error: str = ""
    traceback: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attempt:
    run_id: int
    number: int
    kind: str
    source: bytes
    parameters: dict[str, Any]
    kernel: str
    timeout: int
    master: str
    callable: str
    retries: int
    spark_conf: dict[str, str] = field(default_factory=dict)
    output_formats: list[str] = field(default_factory=list)


class Watch:
    """Stops the process group of a run's kernel or Spark driver when the run is canceled
    or overruns; records the kernel's pid on the run."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.pid: int | None = None
        self.reason = ""
        self.stop = threading.Event()
        self.deadline = time.monotonic() + attempt.timeout
        self.km: Any = None
        self.thread = threading.Thread(
            target=self._loop, name="popcorn-notebook-watch", daemon=True
        )

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _kernel_pid(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    def _loop(self) -> None:
        recorded = False
        while not self.stop.wait(WATCH_SECONDS):
            if self.pid is None and self.km is not None:
                self.pid = self._kernel_pid()
            if self.pid is not None and not recorded:
                recorded = True
                with session_scope() as session:
                    run = session.get(NotebookRun, self.attempt.run_id)
                    if run is not None:
                        run.kernel_pid = self.pid
            with session_scope(readonly=True) as session:
                run = session.get(NotebookRun, self.attempt.run_id)
                canceled = run is None or run.status == "canceled"
            if canceled:
                self.kill("canceled")
            elif time.monotonic() > self.deadline:
                self.kill(f"timed out after {self.attempt.timeout} s")

    def kill(self, reason: str) -> None:
        if self.pid is None or self.reason:
            return
        self.reason = reason
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


_watch: Watch | None = None


def run_account() -> runas.Account | None:
    """The OS user kernels and spark-submit run as (`notebooks_run_as`), None for the
    worker's own user."""
    name = get_settings().notebooks_run_as
    return runas.lookup(name) if name else None


def _tracked_manager(account: runas.Account | None, folder: Path, work: Path) -> type:
    """An AsyncKernelManager that hands itself to the current watch, so the watch can find
    the kernel's pid; nbclient still owns it and shuts it down. With an account, the kernel
    runs as that user with the work folder as its home, and reads its connection file from
    the run's folder (the worker's, where no link can be planted), given to that user."""
    from jupyter_client.manager import AsyncKernelManager

    class TrackedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if account is not None:
                self.connection_file = str(folder / "kernel.json")
            if _watch is not None:
                _watch.km = self

        def write_connection_file(self, **kwargs: Any) -> None:
            super().write_connection_file(**kwargs)
            runas.hand_over(Path(self.connection_file), account)

        async def start_kernel(self, **kwargs: Any) -> None:  # type: ignore[override]
            kwargs.setdefault("env", job_environment())
            if account is not None:
                kwargs["env"] = {**kwargs["env"], "HOME": str(work)}
                kwargs.update(account.popen())
            if _is_ipykernel(self.kernel_spec.argv if self.kernel_spec else []):
                # no IPython history database: parameters (which may hold secrets) are not
                # written to the worker's home, and the kernel starts without the sqlite I/O
                kwargs["extra_arguments"] = [*(kwargs.get("extra_arguments") or []), NO_HISTORY]
            await super().start_kernel(**kwargs)

    return TrackedKernelManager


NO_HISTORY = "--HistoryManager.enabled=False"


def _is_ipykernel(argv: list[str]) -> bool:
    return any("ipykernel" in part for part in argv)


SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "PRIVATE")


def job_environment() -> dict[str, str]:
    """The worker's environment without the platform's settings and secrets: a notebook or
    script gets no database URL, secret key or cloud credentials from the worker."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POPCORN_", "AWS_"))
        and not any(word in name.upper() for word in SECRET_WORDS)
    }


# --- the attempt ----------------------------------------------------------------------------


def _begin(run_id: int) -> Attempt | None:
    with session_scope() as session:
        run = session.get(NotebookRun, run_id, with_for_update=True)
        if run is None or run.status not in ("queued", "running", "failed"):
            return None
        definition = session.get(NotebookDefinition, run.definition_id)
        if definition is None:
            return None
        lost = run.status == "running"
        source, _ = service.definition_source(session, definition)
        run.status = "running"
        run.attempts += 1
        run.started_at = utcnow()
        run.ended_at = None
        run.retryable = False
        run.kernel_pid = None
        run.failed_cell = None
        run.error = "previous attempt lost its worker" if lost else ""
        run.traceback = ""
        record_change(session, "start", "notebook_run", run.id, after={"attempt": run.attempts})
        emit(session, "notebooks.run.started", "notebook_run", run.id, {"attempt": run.attempts})
        params = dict(run.parameters)
        if definition.kind == "spark" and not definition.source_key.endswith(".py"):
            params.setdefault("spark_master", definition.spark_master or service.LOCAL_MASTER)
            if definition.spark_conf:
                params.setdefault("spark_conf", dict(definition.spark_conf))
        return Attempt(
            run_id=run.id,
            number=run.attempts,
            kind=definition.kind,
            source=source,
            parameters=params,
            kernel=definition.kernel,
            timeout=definition.timeout,
            master=definition.spark_master or service.LOCAL_MASTER,
            callable=definition.callable,
            retries=definition.retries,
            spark_conf=dict(definition.spark_conf or {}),
            output_formats=list(definition.output_formats or []),
        )


def run_attempt(run_id: int) -> dict[str, Any]:
    """The `notebooks.run` job: one attempt, its output stored, its outcome recorded."""
    attempt = _begin(run_id)
    if attempt is None:
        return {"run": run_id, "status": "not run"}
    started = time.monotonic()
    try:
        if attempt.kind == "callable":
            outcome = _run_callable(attempt)
        elif attempt.kind == "spark" and not attempt.source.lstrip().startswith(b"{"):
            outcome = _run_script(attempt)
        else:
            if attempt.kind == "spark":
                reason = master_unreachable(attempt.master)
                outcome = Outcome("failed", error=reason) if reason else _run_notebook(attempt)
            else:
                outcome = _run_notebook(attempt)
    except Exception as exc:  # a bug or an environment problem: recorded, never a hang
        outcome = Outcome("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
    retry = _finish(attempt, outcome, time.monotonic() - started)
    if retry:
        raise RunFailed(outcome.error[:500] or "the run failed")
    return {"run": run_id, "status": outcome.status}


def _finish(attempt: Attempt, outcome: Outcome, seconds: float) -> bool:
    """Store the output and the outcome; True when the job should retry."""
    store = get_store()
    # a fresh suffix: run ids can come again (a new database), stored objects never change
    prefix = f"{RUNS}/{attempt.run_id}/attempt-{attempt.number}-{uuid.uuid4().hex[:12]}"
    output_key = log_key = ""
    format_keys: dict[str, str] = {}
    format_errors: dict[str, str] = {}
    if outcome.output is not None:
        output_key = store.put(f"{prefix}.ipynb", outcome.output, immutable=True).key
        converted, format_errors = formats.convert_all(outcome.output, attempt.output_formats)
        for fmt, data in converted.items():
            key = f"{prefix}.{formats.SUFFIX[fmt]}"
            format_keys[fmt] = store.put(key, data, immutable=True).key
    if outcome.log is not None:
        log_key = store.put(f"{prefix}.log", outcome.log[-MAX_LOG:], immutable=True).key
    with session_scope() as session:
        run = session.get(NotebookRun, attempt.run_id, with_for_update=True)
        if run is None:
            return False
        run.output_key = output_key or run.output_key
        run.log_key = log_key or run.log_key
        if outcome.output is not None:
            run.format_keys, run.format_errors = format_keys, format_errors
        run.duration_s = round(seconds, 3)
        run.ended_at = utcnow()
        if run.status == "canceled":
            record_change(session, "end", "notebook_run", run.id, after={"status": "canceled"})
            return False
        run.status = outcome.status
        run.failed_cell = outcome.failed_cell
        run.error = outcome.error
        run.traceback = outcome.traceback[-20000:]
        run.outputs = outcome.outputs if outcome.status == "succeeded" else {}
        run.retryable = outcome.status == "failed" and attempt.number <= attempt.retries
        after = {"status": run.status, "error": run.error[:500], "output": run.output_key}
        record_change(session, "end", "notebook_run", run.id, after=after)
        definition = session.get(NotebookDefinition, run.definition_id)
        payload = {
            "definition": definition.name if definition else None,
            "attempt": attempt.number,
            "duration_s": run.duration_s,
            "output": run.output_key,
        }
        if run.status == "failed":
            payload |= {"error": run.error[:500], "failed_cell": run.failed_cell}
            payload["retryable"] = run.retryable
        emit(session, f"notebooks.run.{run.status}", "notebook_run", run.id, payload)
        if run.status == "succeeded":
            service.chain_after(session, run)
        return run.retryable


# --- notebooks ------------------------------------------------------------------------------


def _failing_cell(nb: Any) -> int | None:
    """The cell that failed: papermill marks it, or it shows an error output; when the kernel
    died or was stopped, the last cell that started."""
    started = None
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        if meta.get("exception"):
            return index
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
        if meta.get("start_time"):
            started = index
    return started


def read_outputs(nb: Any) -> dict[str, Any]:
    """The values of the cell tagged `outputs`: its last result, a dict (JSON or literal)."""
    for cell in nb.cells:
        if "outputs" not in cell.get("metadata", {}).get("tags", []):
            continue
        for out in reversed(cell.get("outputs", [])):
            data = out.get("data", {})
            if "application/json" in data and isinstance(data["application/json"], dict):
                return dict(data["application/json"])
            if out.get("output_type") == "execute_result" and "text/plain" in data:
                try:
                    value = ast.literal_eval(data["text/plain"])
                except (ValueError, SyntaxError):
                    return {}
                return value if isinstance(value, dict) else {"result": value}
    return {}


def _run_notebook(attempt: Attempt) -> Outcome:
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    global _watch
    account = run_account()
    with tempfile.TemporaryDirectory(prefix="popcorn-run-") as folder:
        # the kernel works in a folder of its own; the notebooks papermill reads and writes
        # stay in the worker's, where code in the kernel cannot swap them for links
        work = runas.work_folder(Path(folder), account)
        source = Path(folder) / "input.ipynb"
        target = Path(folder) / "output.ipynb"
        source.write_bytes(attempt.source)
        outcome = Outcome()
        with Watch(attempt) as watch:
            _watch = watch
            try:
                papermill.execute_notebook(
                    str(source),
                    str(target),
                    parameters=attempt.parameters,
                    kernel_name=attempt.kernel,
                    progress_bar=False,
                    log_output=False,
                    start_timeout=60,
                    execution_timeout=attempt.timeout,
                    cwd=str(work),
                    kernel_manager_class=_tracked_manager(account, Path(folder), work),
                    # the output is complete when the last cell ends: stop the kernel at
                    # once instead of waiting for its graceful exit (a few tenths per run)
                    shutdown_kernel="immediate",
                )
            except PapermillExecutionError as exc:
                outcome = Outcome(
                    "failed",
                    error=f"{exc.ename}: {exc.evalue}"[:2000],
                    traceback=_plain("\n".join(exc.traceback)),
                )
            except DeadKernelError as exc:
                outcome = Outcome("failed", error=watch.reason or f"the kernel died: {exc}"[:2000])
            except Exception as exc:  # cell timeouts, kernel start failures
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                outcome = Outcome(
                    "failed", error=watch.reason or f"{type(exc).__name__}: {text}"[:2000]
                )
            finally:
                _watch = None
        if watch.reason == "canceled":
            outcome.status = "canceled"
        elif watch.reason and outcome.status == "failed":
            outcome.error = (
                f"{watch.reason} ({outcome.error})"
                if outcome.error != watch.reason
                else watch.reason
            )
        if target.exists():
            outcome.output = target.read_bytes()
            nb = nbformat.reads(outcome.output.decode(), as_version=4)
            if outcome.status == "failed":
                outcome.failed_cell = _failing_cell(nb)
            else:
                outcome.outputs = read_outputs(nb)
        return outcome


def _plain(text: str) -> str:
    """A traceback without the terminal colour codes IPython adds."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --- Spark ----------------------------------------------------------------------------------


def master_unreachable(master: str) -> str:
    """Why a cluster master cannot be used (empty when it can, or when local): a standalone
    master or Kubernetes API server that does not answer, YARN without its configuration."""
    if master == "yarn":
        if not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
            return "YARN master: set HADOOP_CONF_DIR or YARN_CONF_DIR in the workers' environment"
        return ""
    if master.startswith("k8s://"):
        api = master.removeprefix("k8s://")
        url = urlsplit(api if "://" in api else "https://" + api)
        host, port = url.hostname or "", str(url.port or (443 if url.scheme == "https" else 80))
    elif master.startswith("spark://"):
        host, _, port = master.removeprefix("spark://").rpartition(":")
    else:
        return ""
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return ""
    except OSError as exc:
        return f"Spark master {master} is not reachable: {exc.strerror or exc}"


def submit_command(attempt: Attempt, script: Path) -> list[str]:
    """spark-submit's arguments: the master, the definition's --conf pairs, the script and
    its parameters as one JSON argument (an argument list: no shell)."""
    conf = {"spark.ui.enabled": "false", **attempt.spark_conf}
    pairs = [arg for key, value in sorted(conf.items()) for arg in ("--conf", f"{key}={value}")]
    return [
        spark_submit(),
        "--master",
        attempt.master,
        *pairs,
        str(script),
        json.dumps(attempt.parameters),
    ]


def spark_submit() -> str:
    beside = Path(sys.executable).parent / "spark-submit"
    if beside.exists():
        return str(beside)
    import shutil

    found = shutil.which("spark-submit")
    if not found:
        raise RuntimeError("spark-submit is not installed (pyspark provides it)")
    return found


def _die_with_parent() -> None:
    """In the child: be killed when the worker running us dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_script(attempt: Attempt) -> Outcome:
    """`spark-submit --master M script.py '<parameters as JSON>'`; lines the script prints
    as `POPCORN_OUTPUT {"name": value}` become the run's outputs."""
    reason = master_unreachable(attempt.master)
    if reason:
        return Outcome("failed", error=reason)
    account = run_account()
    with tempfile.TemporaryDirectory(prefix="popcorn-spark-") as folder:
        work = runas.work_folder(Path(folder), account)
        script = Path(folder) / "job.py"  # the worker's folder: see runas.hand_over
        script.write_bytes(attempt.source)
        runas.hand_over(script, account)
        log_path = Path(folder) / "spark.log"  # the worker's: the driver only gets its fd
        env = {
            **job_environment(),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
            **({"HOME": str(work)} if account is not None else {}),
        }
        command = submit_command(attempt, script)
        with Watch(attempt) as watch, open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                **(account.popen() if account is not None else {}),
            )
            watch.pid = proc.pid
            code = proc.wait()
        data = log_path.read_bytes()
    outputs: dict[str, Any] = {}
    for line in data.decode(errors="replace").splitlines():
        if line.startswith(OUTPUT_MARK):
            with contextlib.suppress(ValueError):
                value = json.loads(line[len(OUTPUT_MARK) :])
                if isinstance(value, dict):
                    outputs.update(value)
    if watch.reason == "canceled":
        return Outcome("canceled", log=data)
    if code != 0 or watch.reason:
        tail = data.decode(errors="replace").strip().splitlines()[-40:]
        error = watch.reason or _spark_error(tail) or f"spark-submit exited with {code}"
        return Outcome("failed", log=data, error=error, traceback="\n".join(tail))
    return Outcome("succeeded", log=data, outputs=outputs)


def _spark_error(lines: list[str]) -> str:
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:500]
    return ""


# --- callables ------------------------------------------------------------------------------


def _run_callable(attempt: Attempt) -> Outcome:
    """An installed plugin's function called with the parameters; a dict result is outputs."""
    import importlib
    import traceback

    service.check_callable(attempt.callable)
    if ":" in attempt.callable:
        module_name, name = attempt.callable.split(":", 1)
    else:
        module_name, name = attempt.callable.rsplit(".", 1)
    try:
        func = getattr(importlib.import_module(module_name), name)
        result = func(**attempt.parameters)
    except Exception as exc:
        return Outcome(
            "failed", error=f"{type(exc).__name__}: {exc}"[:2000], traceback=traceback.format_exc()
        )
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        result = repr(result)
    outputs = result if isinstance(result, dict) else {"result": result}
    return Outcome("succeeded", outputs=outputs)
