"""The task registry, and the declared limits of tasks people may submit themselves.

A task is a function registered under a name. `public=True` puts it on the short
list that API and CLI users may submit by name; such a task declares what it
accepts (a pydantic model bounding its arguments) and its longest timeout, and
never runs on the "alerts" queue, so no submission can hold up alert processing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from popcorn.errors import Forbidden, InvalidInput, NotFound
from popcorn.jobs.models import QUEUES

# Capacity reserved for alert and event processing: never a user's job.
RESERVED_QUEUES = frozenset({"alerts"})
PUBLIC_MAX_RETRIES = 5


@dataclass(frozen=True)
class Task:
    name: str
    func: Callable[..., Any]
    queue: str
    retries: int | None
    timeout: int | None
    public: bool
    arguments: type[BaseModel] | None = None
    max_timeout: int | None = None


TASKS: dict[str, Task] = {}


def task(
    name: str,
    *,
    queue: str = "default",
    retries: int | None = None,
    timeout: int | None = None,
    public: bool = False,
    arguments: type[BaseModel] | None = None,
    max_timeout: int | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a job function.

    `public` tasks may be submitted by name through the API and CLI; `arguments`
    (a pydantic model) bounds what a submission may pass and `max_timeout` the
    longest timeout it may ask for (the task's own timeout when not given).
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    if public and queue in RESERVED_QUEUES:
        raise ValueError(f"public task {name!r} cannot run on the reserved {queue!r} queue")
    if public and arguments is None:
        raise ValueError(f"public task {name!r} must declare its arguments (a bounded model)")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = Task(name, func, queue, retries, timeout, public, arguments, max_timeout)
        return func

    return decorate


BEFORE_FORK: list[Callable[[], None]] = []


def before_fork(fn: Callable[[], None]) -> Callable[[], None]:
    """Register work a worker does once before it forks (slow imports a domain's jobs need),
    so every work horse inherits it instead of redoing it."""
    BEFORE_FORK.append(fn)
    return fn


def get_task(name: str) -> Task:
    if name not in TASKS:
        import popcorn.domains

        popcorn.domains.load_tasks_of(name)
    try:
        return TASKS[name]
    except KeyError:
        raise NotFound(f"no task named {name!r}", details={"task": name}) from None


def public_tasks() -> list[Task]:
    """The tasks users may submit, by name."""
    import popcorn.domains

    popcorn.domains.load_tasks()
    return sorted((t for t in TASKS.values() if t.public), key=lambda t: t.name)


def longest_timeout(spec: Task) -> int:
    """The longest timeout a submission of `spec` may ask for."""
    from popcorn.config import get_settings

    return spec.max_timeout or spec.timeout or get_settings().job_timeout


def check_submission(
    spec: Task,
    *,
    arguments: dict[str, Any],
    queue: str | None,
    timeout: int | None,
    retries: int | None,
) -> dict[str, Any]:
    """Refuse a user's submission outside the task's declared limits; return its arguments.

    403 for a task that is not public, 422 for anything past its limits.
    """
    if not spec.public:
        raise Forbidden(
            f"task {spec.name!r} cannot be submitted by name", details={"task": spec.name}
        )
    if queue is not None and (queue not in QUEUES or queue in RESERVED_QUEUES):
        allowed = [q for q in QUEUES if q not in RESERVED_QUEUES]
        raise InvalidInput(
            f"queue {queue!r} is not open to submissions", details={"queue": allowed}
        )
    limit = longest_timeout(spec)
    if timeout is not None and timeout > limit:
        raise InvalidInput(
            f"task {spec.name!r} may run at most {limit}s",
            details={"timeout": timeout, "max_timeout": limit},
        )
    if retries is not None and retries > PUBLIC_MAX_RETRIES:
        raise InvalidInput(
            f"at most {PUBLIC_MAX_RETRIES} retries",
            details={"retries": retries, "max_retries": PUBLIC_MAX_RETRIES},
        )
    if spec.arguments is None:
        return arguments
    try:
        bounded = spec.arguments.model_validate(arguments)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        raise InvalidInput(
            f"arguments outside what task {spec.name!r} accepts", details={"errors": errors}
        ) from None
    return bounded.model_dump(mode="json", exclude_unset=True)
