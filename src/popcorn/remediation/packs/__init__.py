"""Finding runbook packs: shipped ones, installed ones, and a directory of files.

Packs come from, in this order (the first pack of a name wins; a later one
of the same name is reported, not loaded):

1. the packs shipped with Popcorn (modules of this package, and the `pack` module of
   each installed domain, `popcorn.<domain>.pack`);
2. the `popcorn.packs` entry-point group of installed distributions: each
   entry point names a `Pack` or a module with a `pack` attribute;
3. the packs directories, the setting `packs_dir` (several joined with `:`) or
   POPCORN_HOME/packs: each `NAME.py` file or `NAME/__init__.py` package there
   is a module with a `pack` attribute;
4. `register_pack()` from code (plugins named in POPCORN_PLUGINS).

A pack that fails to import is listed with its error instead of breaking the
others.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from popcorn import domains
from popcorn.errors import InvalidInput, NotFound
from popcorn.remediation.engine import Pack, Runbook

log = logging.getLogger("popcorn.remediation.packs")

ENTRY_POINT_GROUP = "popcorn.packs"
SHIPPED = ("popcorn.remediation.packs.storage", "popcorn.remediation.packs.service_health")


@dataclass
class Registry:
    packs: dict[str, Pack] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, pack: Pack, source: str) -> None:
        if pack.name in self.packs:
            if self.packs[pack.name] is not pack:
                self.errors.append(
                    {
                        "source": source,
                        "error": f"pack {pack.name!r} is already loaded from "
                        f"{self.packs[pack.name].source}; this copy is ignored",
                    }
                )
            return
        pack.source = pack.source or source
        self.packs[pack.name] = pack

    def runbooks(self) -> list[type[Runbook]]:
        return [cls for pack in self.packs.values() for cls in pack.runbooks.values()]

    def find(self, name: str) -> type[Runbook] | None:
        pack_name, dot, short = name.partition(".")
        if dot:
            pack = self.packs.get(pack_name)
            return pack.runbooks.get(short) if pack else None
        matches = [cls for cls in self.runbooks() if cls.name == name]
        if len(matches) > 1:
            raise InvalidInput(
                f"runbook name {name!r} is ambiguous; use pack.runbook",
                details={"runbook": name, "candidates": [c.full_name() for c in matches]},
            )
        return matches[0] if matches else None


_registry: Registry | None = None
_extra: list[tuple[Pack, str]] = []
_lock = threading.RLock()


def packs_dirs() -> list[Path]:
    from popcorn.config import get_settings

    settings = get_settings()
    if settings.packs_dir:
        return [Path(p) for p in settings.packs_dir.split(os.pathsep) if p]
    return [settings.home / "packs"]


def _packs_of(module: ModuleType) -> list[Pack]:
    found = getattr(module, "pack", None)
    if isinstance(found, Pack):
        return [found]
    return [value for value in vars(module).values() if isinstance(value, Pack)]


def _load_file(path: Path) -> ModuleType:
    """Import a pack file under a name unique to its path, so two directories never clash."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    module_name = f"popcorn_pack_{path.stem.replace('-', '_')}_{digest}"
    init = path / "__init__.py" if path.is_dir() else path
    spec = importlib.util.spec_from_file_location(
        module_name,
        init,
        submodule_search_locations=[str(path)] if path.is_dir() else None,
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _discover() -> Registry:
    registry = Registry()
    for module_name in SHIPPED:
        registry_add_module(registry, importlib.import_module(module_name), module_name)
    for module_name in (f"popcorn.{name}.pack" for name in domains.DOMAINS):
        try:
            module = domains.optional_module(module_name)
        except Exception as exc:
            registry.errors.append({"source": module_name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if module is not None:
            registry_add_module(registry, module, module_name)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.name} ({entry.value})"
        try:
            loaded = entry.load()
        except Exception as exc:
            registry.errors.append({"source": source, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if isinstance(loaded, Pack):
            registry.add(loaded, source)
        elif isinstance(loaded, ModuleType):
            registry_add_module(registry, loaded, source)
        else:
            registry.errors.append({"source": source, "error": "not a Pack nor a module"})
    for directory in packs_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            is_pack_file = path.suffix == ".py" and not path.name.startswith(("_", "."))
            is_pack_dir = path.is_dir() and (path / "__init__.py").is_file()
            if not (is_pack_file or is_pack_dir):
                continue
            try:
                module = _load_file(path)
            except Exception as exc:
                log.warning("cannot load runbook pack %s: %s", path, exc)
                registry.errors.append(
                    {"source": str(path), "error": f"{type(exc).__name__}: {exc}"}
                )
                continue
            registry_add_module(registry, module, str(path))
    for pack, source in _extra:
        registry.add(pack, source)
    return registry


def registry_add_module(registry: Registry, module: ModuleType, source: str) -> None:
    found = _packs_of(module)
    if not found:
        registry.errors.append({"source": source, "error": "defines no Pack"})
    for pack in found:
        registry.add(pack, source)


def registry() -> Registry:
    global _registry
    with _lock:
        if _registry is None:
            _registry = _discover()
        return _registry


def reload() -> Registry:
    """Discover again (after a pack was added to the directory or installed)."""
    global _registry
    with _lock:
        _registry = None
        return registry()


def register_pack(pack: Pack, source: str = "code") -> None:
    with _lock:
        _extra.append((pack, source))
        if _registry is not None:
            _registry.add(pack, source)


def get_runbook(name: str) -> type[Runbook]:
    """A runbook by `pack.name` (or bare name when unique); rescans once before giving up."""
    found = registry().find(name)
    if found is None:
        found = reload().find(name)
    if found is None:
        raise NotFound(
            f"no runbook named {name!r}",
            details={
                "runbook": name,
                "available": sorted(c.full_name() for c in registry().runbooks()),
            },
        )
    return found


def describe_all() -> dict[str, Any]:
    reg = registry()
    return {
        "packs": [pack.describe() for pack in sorted(reg.packs.values(), key=lambda p: p.name)],
        "errors": list(reg.errors),
    }
