"""One execution of one action: its deadline, its capped output and its stream of events.

A run executes in a worker thread and reports through a queue of events
(`started`, `stdout`/`stderr` chunks, `finished`), which the HTTP layer either
streams as JSON lines or folds into one JSON result.
"""

from __future__ import annotations

import codecs
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from popcorn.remediation.agent.config import AgentConfig
from popcorn.remediation.agent.errors import ActionCancelled, ActionFailed, ActionTimeout
from popcorn.remediation.agent.process import ProcessTracker, run_argv
from popcorn.remediation.agent.registry import Action

log = logging.getLogger(__name__)

# How long past its deadline a run may take to wind down (killing its process
# group) before the caller is told it timed out regardless.
WIND_DOWN = 1.0


@dataclass(frozen=True)
class Completed:
    """A finished process; `stdout`/`stderr` are filled only when it was captured."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False


class ActionContext:
    """What an action function gets besides its arguments: config, caller, deadline, output."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self.config: AgentConfig = run.config
        self.caller: str = run.caller
        self.run_id: str = run.run_id
        self.action: str = run.action.name

    def remaining(self) -> float:
        """Seconds left before this run's deadline."""
        return max(self._run.deadline - time.monotonic(), 0.0)

    def check(self) -> None:
        """Raise if the run timed out or was cancelled; long Python loops call it."""
        if self._run.cancel.is_set():
            raise ActionCancelled(f"cancelled: {self._run.cancel_reason}")
        if time.monotonic() >= self._run.deadline:
            raise ActionTimeout("the run reached its timeout")

    def output(self, stream: str, data: str | bytes) -> None:
        """Send a chunk of `stdout` or `stderr` to the caller, within the output cap."""
        self._run.output(stream, data.encode() if isinstance(data, str) else data)

    def mark_truncated(self) -> None:
        """Flag the run's output as cut at the cap (for actions that cap their own result)."""
        self._run.truncated = True

    def run_process(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float | None = None,
        capture: bool = False,
    ) -> Completed:
        """Run `argv` without a shell in its own process group, bounded by the run's deadline.

        With `capture`, output is returned (capped) instead of streamed to the caller, and
        the exit status stays out of the run's own (a helper probe, not the action's result).
        Raises ActionTimeout, ActionCancelled, or ActionFailed when it cannot start.
        """
        deadline = self._run.deadline
        if timeout is not None:
            deadline = min(deadline, time.monotonic() + timeout)
        captured: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        cut = False

        def keep(stream: str, data: bytes) -> None:
            nonlocal cut
            room = self.config.output_cap_bytes - len(captured["stdout"]) - len(captured["stderr"])
            if len(data) > room:
                cut = True
                data = data[: max(room, 0)]
            captured[stream] += data

        try:
            outcome = run_argv(
                argv,
                on_output=keep if capture else self._run.output,
                deadline=deadline,
                kill_grace=self.config.kill_grace,
                env=env,
                cwd=cwd,
                cancel=self._run.cancel,
                tracker=self._run.tracker,
            )
        except OSError as exc:
            raise ActionFailed(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        if not capture:
            self._run.exit_code = outcome.exit_code
        if outcome.cancelled:
            raise ActionCancelled(f"{argv[0]!r} was stopped: {self._run.cancel_reason}")
        if outcome.timed_out:
            raise ActionTimeout(f"{argv[0]!r} was killed at its timeout")
        assert outcome.exit_code is not None
        return Completed(
            exit_code=outcome.exit_code,
            stdout=captured["stdout"].decode(errors="replace"),
            stderr=captured["stderr"].decode(errors="replace"),
            truncated=cut,
        )


class Run:
    def __init__(
        self,
        action: Action,
        args: BaseModel,
        *,
        config: AgentConfig,
        caller: str,
        tracker: ProcessTracker,
        timeout: float,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.action = action
        self.args = args
        self.config = config
        self.caller = caller
        self.tracker = tracker
        self.timeout = timeout
        self.run_id = uuid.uuid4().hex
        self.started_at = datetime.now(UTC)
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.cancel = threading.Event()
        self.cancel_reason = ""
        self.truncated = False
        self.exit_code: int | None = None
        self.finished: dict[str, Any] | None = None
        self._on_done = on_done
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._used = 0
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }

    def start(self) -> None:
        self._events.put(
            {
                "event": "started",
                "run_id": self.run_id,
                "action": self.action.name,
                "time": self.started_at.isoformat(),
                "timeout": self.timeout,
            }
        )
        threading.Thread(target=self._execute, name=f"run-{self.action.name}", daemon=True).start()

    def stop(self, reason: str) -> None:
        """Ask the run to end early; its processes are killed and it finishes as cancelled."""
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    def output(self, stream: str, data: bytes) -> None:
        if stream not in self._decoders:
            raise ValueError(f"output stream must be 'stdout' or 'stderr', not {stream!r}")
        with self._lock:
            room = self.config.output_cap_bytes - self._used
            if len(data) > room:
                self.truncated = True
                data = data[: max(room, 0)]
            if not data:
                return
            self._used += len(data)
            text = self._decoders[stream].decode(data)
        if text:
            self._events.put({"event": stream, "data": text})

    def _execute(self) -> None:
        status, result, error = "ok", None, None
        try:
            ctx = ActionContext(self)
            result = to_jsonable_python(self.action.func(ctx, self.args), fallback=str)
        except ActionFailed as exc:
            status, error = "failed", exc.message
            result = to_jsonable_python(exc.result, fallback=str)
            if exc.exit_code is not None:
                self.exit_code = exc.exit_code
        except ActionTimeout as exc:
            status, error = "timeout", str(exc)
        except ActionCancelled as exc:
            status, error = "cancelled", str(exc)
        except Exception as exc:
            log.exception("action %s raised", self.action.name)
            status, error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            if self._on_done is not None:
                self._on_done()
        if status == "ok" and time.monotonic() > self.deadline:
            status, error = "timeout", "the action finished after its timeout"
        for stream, decoder in self._decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                self._events.put({"event": stream, "data": tail})
        self._events.put(self._finished(status, result, error))

    def _finished(self, status: str, result: Any, error: str | None) -> dict[str, Any]:
        return {
            "event": "finished",
            "run_id": self.run_id,
            "action": self.action.name,
            "status": status,
            "exit_code": self.exit_code,
            "result": result,
            "error": error,
            "truncated": self.truncated,
            "duration_s": round(time.monotonic() - self.started, 3),
        }

    def events(self) -> Iterator[dict[str, Any]]:
        """Yield events until `finished`; a run stuck past its deadline is declared timed out."""
        hard_deadline = self.deadline + self.config.kill_grace + WIND_DOWN
        while True:
            wait = hard_deadline - time.monotonic()
            try:
                event = self._events.get(timeout=wait) if wait > 0 else self._events.get_nowait()
            except queue.Empty:
                event = None
            if event is None:
                self.stop("it did not finish within its timeout")
                self.finished = self._finished(
                    "timeout",
                    None,
                    f"the action did not finish within {self.timeout:g}s and was abandoned",
                )
                yield self.finished
                return
            if event["event"] == "finished":
                self.finished = event
            yield event
            if self.finished is not None:
                return

    def collect(self) -> dict[str, Any]:
        """Consume the run and fold its events into one result document."""
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        finished: dict[str, Any] = {}
        for event in self.events():
            if event["event"] in out:
                out[event["event"]].append(event["data"])
            elif event["event"] == "finished":
                finished = event
        body = {k: v for k, v in finished.items() if k != "event"}
        body["stdout"] = "".join(out["stdout"])
        body["stderr"] = "".join(out["stderr"])
        return body
