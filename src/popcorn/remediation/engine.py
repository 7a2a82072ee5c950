"""The runbook authoring API and the step runner.

A runbook is a Python class in a pack; its steps are methods marked with
`@step`, run in the order they are written::

    from pydantic import BaseModel
    from popcorn.remediation.engine import Pack, Runbook, StepContext, step

    pack = Pack("cache", version="1.2.0", description="Edge cache appliances")

    class Inputs(BaseModel):
        service: str

    @pack.runbook
    class RestartStuckCache(Runbook):
        '''Restart a cache service that stopped answering.'''

        name = "restart_stuck"
        Inputs = Inputs
        target = "required"

        @step(kind="diagnose", retries=2, timeout=30)
        def probe(self, ctx: StepContext) -> dict:
            result = ctx.agent_run(ctx.targets[0], "service_status", {"name": ctx.inputs.service})
            return {"active": result.result["active"]}

        @step(kind="decide")
        def decide(self, ctx: StepContext) -> None:
            if ctx.outputs["probe"]["active"]:
                ctx.stop("the service is running; nothing to do")

        @step(kind="remediate", approval=Approval(roles=["operator"], timeout=1800))
        def restart(self, ctx: StepContext) -> dict:
            ...

This module has no database code: the service drives executions and records
every step; `call_step()` here runs one step with its timeout and cancellation.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import to_jsonable_python

from popcorn.errors import PopcornError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from popcorn.remediation.agent.client import RunResult

StepKind = Literal["diagnose", "decide", "remediate", "verify"]
STEP_KINDS: tuple[str, ...] = ("diagnose", "decide", "remediate", "verify")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_LOG_ENTRIES = 500
MAX_LOG_MESSAGE = 4000

R = TypeVar("R", bound="type[Runbook]")
F = TypeVar("F", bound=Callable[..., Any])


# --- declarations ---------------------------------------------------------------------------


class NoInputs(BaseModel):
    """The inputs of a runbook that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Approval:
    """A human must approve before the step runs.

    `payload` is a pydantic model for what the approver must supply (its JSON
    schema is shown to them and the answer is validated against it); `roles`
    may answer (admins always may); `timeout` seconds until the request expires
    and the execution fails.
    """

    roles: tuple[str, ...] = ("operator",)
    timeout: float = 3600.0
    message: str = ""
    payload: type[BaseModel] | None = None

    def __post_init__(self) -> None:
        from popcorn.auth import ROLES

        object.__setattr__(self, "roles", tuple(self.roles))
        for role in self.roles:
            if role not in ROLES:
                raise ValueError(f"approval roles: unknown role {role!r} (one of {ROLES})")
        if self.timeout <= 0:
            raise ValueError("approval timeout must be positive")


@dataclass(frozen=True)
class Concurrency:
    """How many executions may run at once: of this runbook, and per target device.

    `None` means unlimited. Extra executions are queued (run when a slot frees)
    or dropped (recorded as `dropped`), per `on_limit`.
    """

    max_runs: int | None = None
    per_target: int | None = 1
    on_limit: Literal["queue", "drop"] = "queue"

    def __post_init__(self) -> None:
        for label, value in (("max_runs", self.max_runs), ("per_target", self.per_target)):
            if value is not None and value < 1:
                raise ValueError(f"concurrency {label} must be at least 1 or None")
        if self.on_limit not in ("queue", "drop"):
            raise ValueError("concurrency on_limit must be 'queue' or 'drop'")


@dataclass(frozen=True)
class StepSpec:
    name: str
    kind: str
    func: Callable[..., Any]
    retries: int
    timeout: float
    backoff: float
    max_backoff: float
    approval: Approval | None
    output: type[BaseModel] | None
    idempotent: bool
    uses: tuple[str, ...] | None
    description: str

    def backoff_for(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1-based): exponential, capped, no jitter."""
        return float(min(self.backoff * (2 ** (attempt - 1)), self.max_backoff))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "retries": self.retries,
            "timeout": self.timeout,
            "backoff": self.backoff,
            "idempotent": self.idempotent,
            "uses": list(self.uses) if self.uses is not None else None,
            "output_schema": self.output.model_json_schema() if self.output else None,
            "approval": None
            if self.approval is None
            else {
                "roles": list(self.approval.roles),
                "timeout": self.approval.timeout,
                "message": self.approval.message,
                "payload_schema": self.approval.payload.model_json_schema()
                if self.approval.payload
                else None,
            },
        }


def step(
    kind: StepKind = "diagnose",
    *,
    retries: int = 0,
    timeout: float = 60.0,
    backoff: float = 1.0,
    max_backoff: float = 300.0,
    approval: Approval | None = None,
    output: type[BaseModel] | None = None,
    idempotent: bool | None = None,
    uses: tuple[str, ...] | list[str] | None = None,
    name: str | None = None,
) -> Callable[[F], F]:
    """Mark a runbook method as a step.

    `retries` extra attempts with exponential `backoff` (seconds, doubling up to
    `max_backoff`); `timeout` seconds per attempt; `output` validates what the
    step returns; `uses` names the earlier steps whose outputs it reads (all
    when omitted); `idempotent` says whether an attempt cut short by a lost
    worker may be repeated (default: yes, except for remediate steps).
    """
    if kind not in STEP_KINDS:
        raise ValueError(f"step kind must be one of {STEP_KINDS}, not {kind!r}")
    if retries < 0 or timeout <= 0 or backoff < 0 or max_backoff < 0:
        raise ValueError("step retries, timeout and backoff must be positive")
    if output is not None and not (isinstance(output, type) and issubclass(output, BaseModel)):
        raise ValueError("step output must be a pydantic model class")

    def decorate(func: F) -> F:
        step_name = name or func.__name__
        if not NAME.match(step_name):
            raise ValueError(f"step name {step_name!r} must match {NAME.pattern}")
        doc = (func.__doc__ or "").strip().splitlines()
        func.__popcorn_step__ = StepSpec(  # type: ignore[attr-defined]
            name=step_name,
            kind=kind,
            func=func,
            retries=retries,
            timeout=float(timeout),
            backoff=float(backoff),
            max_backoff=float(max_backoff),
            approval=approval,
            output=output,
            idempotent=(kind != "remediate") if idempotent is None else idempotent,
            uses=tuple(uses) if uses is not None else None,
            description=doc[0] if doc else "",
        )
        return func

    return decorate


class Runbook:
    """Subclass it in a pack; see the module docstring. Instances are made per step call."""

    name: ClassVar[str] = ""
    Inputs: ClassVar[type[BaseModel]] = NoInputs
    target: ClassVar[Literal["none", "optional", "required"]] = "optional"
    concurrency: ClassVar[Concurrency] = Concurrency()
    steps: ClassVar[tuple[StepSpec, ...]] = ()
    pack: ClassVar[Pack | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, StepSpec] = {spec.name: spec for spec in cls.steps}
        for attr in cls.__dict__.values():
            spec = getattr(attr, "__popcorn_step__", None)
            if isinstance(spec, StepSpec):
                if spec.name in found and found[spec.name].func is not spec.func:
                    raise ValueError(f"runbook {cls.__name__}: two steps named {spec.name!r}")
                found[spec.name] = spec
        cls.steps = tuple(found.values())
        for spec in cls.steps:
            for used in spec.uses or ():
                earlier = [s.name for s in cls.steps[: cls.steps.index(spec)]]
                if used not in earlier:
                    raise ValueError(
                        f"runbook {cls.__name__}: step {spec.name!r} uses {used!r}, "
                        "which is not an earlier step"
                    )

    @classmethod
    def full_name(cls) -> str:
        return f"{cls.pack.name}.{cls.name}" if cls.pack else cls.name

    @classmethod
    def description(cls) -> str:
        return " ".join((cls.__doc__ or "").split())

    @classmethod
    def has_remediation(cls) -> bool:
        return any(spec.kind == "remediate" for spec in cls.steps)

    @classmethod
    def step_named(cls, name: str) -> StepSpec:
        for spec in cls.steps:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.full_name(),
            "pack": cls.pack.name if cls.pack else None,
            "version": cls.pack.version if cls.pack else None,
            "description": cls.description(),
            "target": cls.target,
            "concurrency": {
                "max_runs": cls.concurrency.max_runs,
                "per_target": cls.concurrency.per_target,
                "on_limit": cls.concurrency.on_limit,
            },
            "inputs_schema": cls.Inputs.model_json_schema(),
            "steps": [spec.describe() for spec in cls.steps],
        }


class Pack:
    """A versioned group of runbooks for one service; modules expose it as `pack`."""

    def __init__(self, name: str, *, version: str, description: str = "") -> None:
        if not NAME.match(name):
            raise ValueError(f"pack name {name!r} must match {NAME.pattern}")
        if not version or len(version) > 50:
            raise ValueError(f"pack {name!r}: version must be a non-empty string of <= 50 chars")
        self.name = name
        self.version = version
        self.description = description
        self.runbooks: dict[str, type[Runbook]] = {}
        self.source = ""

    def runbook(self, cls: R) -> R:
        """Class decorator adding a runbook to this pack."""
        if not (isinstance(cls, type) and issubclass(cls, Runbook)):
            raise ValueError("pack.runbook decorates Runbook subclasses")
        if not cls.name or not NAME.match(cls.name):
            raise ValueError(f"runbook {cls.__name__}: name {cls.name!r} must match {NAME.pattern}")
        if not cls.steps:
            raise ValueError(f"runbook {cls.name!r} has no steps")
        if not (isinstance(cls.Inputs, type) and issubclass(cls.Inputs, BaseModel)):
            raise ValueError(f"runbook {cls.name!r}: Inputs must be a pydantic model class")
        if cls.target not in ("none", "optional", "required"):
            raise ValueError(f"runbook {cls.name!r}: target must be none, optional or required")
        if cls.name in self.runbooks:
            raise ValueError(f"pack {self.name!r} has two runbooks named {cls.name!r}")
        cls.pack = self
        self.runbooks[cls.name] = cls
        return cls

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "source": self.source,
            "runbooks": [cls.describe() for cls in self.runbooks.values()],
        }


# --- running a step -------------------------------------------------------------------------


class StepFailed(Exception):
    """Ends the step's attempt as failed; `retry=False` also skips the remaining retries."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


class StopRunbook(Exception):
    """Ends the execution successfully after this step; later steps are skipped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepCancelled(Exception):
    """Raised inside a step when its execution was canceled or its timeout passed."""


@dataclass(frozen=True)
class BoltCredentials:
    cert: Path
    key: Path
    ca: Path


def bolt_dir() -> Path:
    """Where the runbook client's certificate for Bolt agents lives (setting `bolt_dir`)."""
    from popcorn.config import get_settings

    settings = get_settings()
    return Path(settings.bolt_dir) if settings.bolt_dir else settings.home / "bolt"


def bolt_credentials() -> BoltCredentials:
    """client.pem, client.key and ca.pem in the Bolt directory; a clear error when missing."""
    base = bolt_dir()
    creds = BoltCredentials(base / "client.pem", base / "client.key", base / "ca.pem")
    missing = [str(p) for p in (creds.cert, creds.key, creds.ca) if not p.is_file()]
    if missing:
        raise StepFailed(
            "no Bolt client certificate: missing "
            + ", ".join(missing)
            + " (run `popcorn bolt credentials` to issue or install one)",
            retry=False,
        )
    return creds


@dataclass
class StepContext:
    """What a step sees: inputs, earlier outputs, targets, and ways to log, call agents, stop.

    Logs, evidence and events are kept in memory and written with the step's
    outcome, in the same transaction, so a retried attempt never duplicates them.
    """

    execution_id: int
    runbook: str
    step: str
    kind: str
    attempt: int
    inputs: Any
    outputs: Mapping[str, Any]
    targets: list[dict[str, Any]]
    dry_run: bool
    trigger: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    timeout: float = 60.0
    logs: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    agent_lookup: Callable[[str], str | None] | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _started: float = field(default_factory=time.monotonic)

    # -- logging and results --

    def log(self, message: str, level: str = "info", **data: Any) -> None:
        from popcorn.db import utcnow

        if len(self.logs) >= MAX_LOG_ENTRIES:
            return
        entry: dict[str, Any] = {
            "at": utcnow().isoformat(),
            "level": level,
            "message": str(message)[:MAX_LOG_MESSAGE],
        }
        if data:
            entry["data"] = to_jsonable_python(data, fallback=str)
        self.logs.append(entry)

    def info(self, message: str, **data: Any) -> None:
        self.log(message, "info", **data)

    def warning(self, message: str, **data: Any) -> None:
        self.log(message, "warning", **data)

    def attach_evidence(self, item: dict[str, Any]) -> None:
        """Add evidence (ranked signals, agent output) to the execution, shown with it."""
        self.evidence.append(to_jsonable_python({"step": self.step, **item}, fallback=str))

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        """A domain event, recorded when (and only if) this step succeeds."""
        self.events.append((event_type, to_jsonable_python(payload, fallback=str)))

    def stop(self, reason: str) -> NoReturn:
        raise StopRunbook(reason)

    def fail(self, reason: str, *, retry: bool = False) -> NoReturn:
        raise StepFailed(reason, retry=retry)

    # -- time and cancellation --

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise StepCancelled("the step was canceled or timed out")

    def remaining(self) -> float:
        return max(0.0, self.timeout - (time.monotonic() - self._started))

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once when the execution is canceled or the step times out."""
        if self._cancel.wait(max(0.0, seconds)):
            raise StepCancelled("the step was canceled or timed out")

    # -- other domains and hosts --

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction of its own, for calling other domains' services from a step."""
        from popcorn.db import session_scope

        with session_scope() as session:
            yield session

    def target_named(self, name: str) -> dict[str, Any]:
        for target in self.targets:
            if target.get("name") == name:
                return target
        return {"name": name}

    def agent_url(self, target: dict[str, Any] | str) -> str:
        """The Bolt agent of a device: from inventory, else from the agents' heartbeats."""
        found = self.target_named(target) if isinstance(target, str) else target
        url = found.get("agent_url")
        if not url and self.agent_lookup is not None:
            url = self.agent_lookup(str(found.get("name")))
        if not url:
            raise StepFailed(
                f"device {found.get('name')!r} has no Bolt agent (no agent_url in inventory "
                "and no heartbeat received)",
                retry=False,
            )
        return str(url)

    def agent_run(
        self,
        target: dict[str, Any] | str,
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Run a Bolt action on a device over mutual TLS; transport or protocol errors fail
        the attempt (retried per the step's policy), the action's own outcome is returned."""
        from popcorn.remediation.agent import AgentClient, AgentError

        self.check_cancelled()
        url = self.agent_url(target)
        creds = bolt_credentials()
        budget = self.remaining()
        wait = min(timeout, budget) if timeout is not None else budget
        if wait <= 0:
            raise StepCancelled("no time left in the step for an agent call")
        try:
            with AgentClient(url, creds.cert, creds.key, creds.ca, timeout=wait) as client:
                result = client.run(action, args or {}, timeout=wait)
        except AgentError as exc:
            self.log(f"agent {url} action {action}: {exc.message}", "error", code=exc.code)
            raise StepFailed(f"Bolt agent at {url}: {exc.message} ({exc.code})") from exc
        self.log(
            f"agent {url} action {action}: {result.status}",
            "info" if result.ok else "warning",
            run_id=result.run_id,
            duration_s=result.duration_s,
        )
        return result


@dataclass
class StepOutcome:
    status: Literal["succeeded", "failed", "stopped", "canceled"]
    outputs: dict[str, Any] | None = None
    error: str = ""
    retry: bool = True
    stop_reason: str = ""
    duration_ms: float = 0.0


def _coerce_outputs(spec: StepSpec, value: Any) -> dict[str, Any] | None:
    if spec.output is not None:
        model = value if isinstance(value, spec.output) else spec.output.model_validate(value)
        dumped: dict[str, Any] = model.model_dump(mode="json")
        return dumped
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        jsonable: dict[str, Any] = to_jsonable_python(value, fallback=str)
        return jsonable
    raise TypeError(
        f"step {spec.name!r} returned {type(value).__name__}; return a dict, a pydantic model "
        "or None"
    )


def call_step(
    runbook: type[Runbook],
    spec: StepSpec,
    ctx: StepContext,
    *,
    should_cancel: Callable[[], bool] = lambda: False,
    poll: float = 0.5,
) -> StepOutcome:
    """Run one attempt of a step in a thread, bounded by its timeout.

    Python cannot kill a thread: on timeout or cancellation the step's context
    is flagged (its `sleep`, `check_cancelled` and agent calls then stop) and
    the attempt is recorded as over; a forking worker's work horse exits with
    the job, taking any straggler with it.
    """
    box: dict[str, Any] = {}
    started = time.perf_counter()

    def target() -> None:
        try:
            box["value"] = spec.func(runbook(), ctx)
        except BaseException as exc:
            box["error"] = exc
            box["trace"] = traceback.format_exc()

    thread = threading.Thread(
        target=contextvars.copy_context().run,
        args=(target,),
        name=f"step-{ctx.execution_id}-{spec.name}",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + spec.timeout
    outcome: StepOutcome | None = None
    while True:
        thread.join(max(0.0, min(poll, deadline - time.monotonic())))
        if not thread.is_alive():
            break
        if time.monotonic() >= deadline:
            ctx._cancel.set()
            thread.join(1.0)
            outcome = StepOutcome("failed", error=f"timed out after {spec.timeout:g}s")
            break
        if should_cancel():
            ctx._cancel.set()
            thread.join(1.0)
            outcome = StepOutcome("canceled", error="canceled while running", retry=False)
            break
    if outcome is None:
        outcome = _outcome(spec, ctx, box)
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome


def _outcome(spec: StepSpec, ctx: StepContext, box: dict[str, Any]) -> StepOutcome:
    error = box.get("error")
    if error is None:
        try:
            return StepOutcome("succeeded", outputs=_coerce_outputs(spec, box.get("value")))
        except (ValidationError, TypeError, ValueError) as exc:
            return StepOutcome("failed", error=f"invalid step output: {exc}", retry=False)
    if isinstance(error, StopRunbook):
        return StepOutcome("stopped", stop_reason=error.reason)
    if isinstance(error, StepFailed):
        return StepOutcome("failed", error=error.message, retry=error.retry)
    if isinstance(error, StepCancelled):
        if ctx.cancelled:
            return StepOutcome("canceled", error=str(error), retry=False)
        return StepOutcome("failed", error=str(error))
    if isinstance(error, PopcornError):
        # Another domain refused the request (bad input, not found): repeating will not help.
        return StepOutcome("failed", error=f"{type(error).__name__}: {error.message}", retry=False)
    if not isinstance(error, Exception):
        raise error
    ctx.log(box.get("trace", ""), "error")
    return StepOutcome("failed", error=f"{type(error).__name__}: {error}")
