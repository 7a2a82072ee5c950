"""The installed domains and how the core finds their parts.

A domain is a package `popcorn.<name>` with any of: `models.py` (tables),
`migrations/versions/` (its Alembic branch), `views.py` (a blueprint named
`bp`), `cli.py` (a click group named `group`), `tasks.py` (rq jobs) and
`subscribers.py` (outbox subscribers). The core imports whichever exist.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

DOMAINS: list[str] = [
    "inventory",
    "signals",
    "events",
    "remediation",
    "traffic",
    "certificates",
    "triage",
    "studio",
    "security",
    "notebooks",
    "ml",
    "devicelab",
]


# Packages on top of every domain, owning no tables: the console (its `register(app)`
# adds pages) and the demo (its `cli.extra_groups` add commands).
EXTRAS: list[str] = ["web", "demo"]


def optional_module(module: str) -> ModuleType | None:
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(module)


def installed(name: str) -> bool:
    """Whether a domain is part of this installation (listed and importable).

    The one way for a domain to degrade when another is absent: check this (or call
    `require`), then import that domain's typed facade, `popcorn.<name>.api`, directly,
    so every call into it is checked by mypy.
    """
    return name in DOMAINS and optional_module(f"popcorn.{name}.api") is not None


def require(name: str, why: str) -> None:
    """Raise a 503 naming the missing domain and what needed it."""
    if not installed(name):
        from popcorn.errors import Unavailable

        raise Unavailable(f"the {name} domain is not installed: {why}", details={"domain": name})


def _each(part: str, names: list[str] | None = None) -> list[ModuleType]:
    found = []
    for name in DOMAINS if names is None else names:
        module = optional_module(f"popcorn.{name}.{part}")
        if module is not None:
            found.append(module)
    return found


def load_models() -> None:
    import popcorn.audit
    import popcorn.auth
    import popcorn.jobs
    import popcorn.machines
    import popcorn.outbox  # noqa: F401

    for module in _each("models"):
        # a domain keeping tables in more than one module names the others
        for name in getattr(module, "TABLE_MODULES", ()):
            importlib.import_module(name)


def load_plugins() -> None:
    """Import the modules named in POPCORN_PLUGINS (users' own tasks and subscribers)."""
    from popcorn.config import get_settings

    for name in filter(None, (p.strip() for p in get_settings().plugins.split(","))):
        importlib.import_module(name)


def load_tasks() -> None:
    _each("tasks")
    load_plugins()


def load_tasks_of(task_name: str) -> None:
    """Import the module that registers `task_name`: task names start with their domain's
    name (`traffic.execute_plan`), so a worker imports only the domains whose jobs it
    runs. A name no domain claims (a plugin's) loads every domain's tasks and the plugins."""
    from popcorn.jobs.registry import TASKS

    domain = task_name.split(".", 1)[0]
    if domain in DOMAINS:
        optional_module(f"popcorn.{domain}.tasks")
    if task_name not in TASKS:
        load_tasks()


def load_subscribers() -> None:
    _each("subscribers")
    load_plugins()


def blueprints() -> list[Any]:
    return [module.bp for module in _each("views") if hasattr(module, "bp")]


def public_blueprints() -> list[Any]:
    """Blueprints named `pki_bp`, served under /pki without a token (CRLs, OCSP)."""
    return [module.pki_bp for module in _each("views") if hasattr(module, "pki_bp")]


def app_extensions() -> list[ModuleType]:
    """Installed extras that plug into the web app through a `register(app)` function."""
    found = [optional_module(f"popcorn.{name}") for name in EXTRAS]
    return [module for module in found if module is not None and hasattr(module, "register")]


def cli_groups() -> list[Any]:
    """Each domain's `group`, plus any top-level groups it lists in `extra_groups`."""
    groups: list[Any] = []
    for module in _each("cli", DOMAINS + EXTRAS):
        if hasattr(module, "group"):
            groups.append(module.group)
        groups.extend(getattr(module, "extra_groups", []))
    return groups


def register_migrations() -> None:
    """Add every installed domain's Alembic branch (called by `popcorn.db.alembic_config`)."""
    from popcorn.db import register_migrations as register

    for name in DOMAINS:
        if optional_module(f"popcorn.{name}.migrations") is not None:
            register(f"popcorn.{name}.migrations")
