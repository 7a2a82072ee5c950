"""A device-type library checkout imported as it is: every valid file in, the rest reported.

The community library moves faster than any importer: it adds fields (module
weights, power draw, `_is_power_source`…) and, among thousands of files, a few
are broken. So each file is read on its own:

- A field Popcorn has no place for (newer than our schema, or a typo) is
  dropped with a warning naming the file and line; the rest of the file imports.
- When the checkout ships its JSON schema (`schema/devicetype.json`,
  `schema/moduletype.json`, `schema/components.json`…), every file is checked
  against it, so a new library release is judged by its own rules: a wrong type
  or a missing required field skips the file, an unknown key is a warning.
- A file our own checks refuse (a front port naming a rear port that is not
  there, a weight unit we do not know) is skipped with its file and line.

A file is one row of the batch (a device type with all its templates), so a
file is imported whole or not at all. The valid files are written in one batch:
the batch is planned, the files its errors point at are set aside, and it is
planned again. Rows from plain files (sites.json…) given beside the library
stay all-or-nothing. `strict` keeps the old rule: any problem, nothing written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput, NotFound
from popcorn.inventory import bulk, devicetypes, formats
from popcorn.inventory import schemas as s
from popcorn.inventory.bulk import BatchResult, Progress, Row

LINE, FIELD_LINES = formats.LINE, formats.FIELD_LINES
# What a file may carry at the top that Popcorn keeps (or knowingly ignores).
_OWN = {"id", "tags", "custom_fields", "templates"}
TOP_KEYS = {
    "device_model": (set(s.DeviceModelIn.model_fields) - _OWN)
    | set(devicetypes.TEMPLATE_KEYS)
    | devicetypes.IGNORED_KEYS,
    "module_type": (set(s.ModuleTypeIn.model_fields) - _OWN)
    | set(devicetypes.MODULE_TEMPLATE_KEYS)
    | devicetypes.IGNORED_KEYS,
}
SCHEMA_FILES = {"device_model": "devicetype.json", "module_type": "moduletype.json"}
_MAX_ROUNDS = 5


@dataclass(frozen=True)
class Notice:
    """A warning or a reason to skip, pointing into a file."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}


@dataclass
class LibraryImport:
    files: int = 0
    result: BatchResult | None = None
    warnings: list[Notice] = field(default_factory=list)
    problems: list[Notice] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        """The files left out, each once, in the order they were found broken."""
        return list(dict.fromkeys(p.file for p in self.problems))

    @property
    def imported(self) -> int:
        return self.files - len(self.skipped)

    def as_dict(self) -> dict[str, Any]:
        return {
            **(self.result.as_dict() if self.result else {}),
            "files": self.files,
            "imported_files": self.imported,
            "skipped_files": self.skipped,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def import_library(
    *,
    session: Session,
    paths: Sequence[Path],
    dry_run: bool = False,
    progress: Progress | None = None,
) -> LibraryImport:
    """Import library directories (and any plain files beside them) file by file."""
    report = LibraryImport()
    sections: dict[str, list[Row]] = {}
    library_rows: dict[str, Row] = {}
    docs: dict[str, dict[str, Any]] = {}  # each file as read, with its lines
    for path in paths:
        if not path.exists():
            raise NotFound(f"no such file or directory: {path}")
        if not path.is_dir():
            for otype, rows in formats.parse_path(path).items():
                sections.setdefault(otype, []).extend(rows)
            continue
        validators = _schema_validators(path)
        found = False
        for kind, file in devicetypes.iter_library(path):
            found = True
            report.files += 1
            where = str(file.relative_to(path))
            row = _read_file(file, where, kind, validators.get(kind), report, docs)
            if row is not None:
                library_rows[where] = row
                sections.setdefault(kind, []).append(row)
        if not found:
            raise InvalidInput(f"no device-type YAML files under {path}")
    source = ", ".join(p.name for p in paths)[:80] or "import"
    for _ in range(_MAX_ROUNDS):
        batch = {otype: list(rows) for otype, rows in sections.items()}
        try:
            report.result = bulk.apply(
                session, batch, dry_run=dry_run, source=source, summary=True, progress=progress
            )
            return report
        except InvalidInput as exc:
            errors = exc.details.get("errors") or []
            broken = {e.get("where") for e in errors}
            if not errors or not broken <= set(library_rows):
                raise  # a plain file's row, or a batch-wide problem: all or nothing
            for err in errors:
                place = f"{err['field']}: " if err.get("field") else ""
                line = _field_line(docs.get(err["where"]), err.get("field") or "")
                report.problems.append(
                    Notice(err["where"], line or err.get("line"), place + err["message"])
                )
            for otype in sections:
                sections[otype] = [r for r in sections[otype] if r.source not in broken]
            for name in broken:
                library_rows.pop(name, None)
    raise InvalidInput("the library's files kept failing as others were set aside")


def _read_file(
    file: Path,
    where: str,
    kind: str,
    validator: Any,
    report: LibraryImport,
    docs: dict[str, dict[str, Any]],
) -> Row | None:
    """One library file as a batch row; None (with the reason recorded) when it is broken."""
    try:
        found = formats.load_yaml(formats.decode(file.read_bytes(), where), where)
    except InvalidInput as exc:
        errors = exc.details.get("errors") or [{}]
        report.problems.append(
            Notice(where, errors[0].get("line"), errors[0].get("message") or exc.message)
        )
        return None
    if len(found) != 1 or not isinstance(found[0], dict):
        report.problems.append(Notice(where, 1, "a device-type file holds one mapping"))
        return None
    doc: dict[str, Any] = found[0]
    docs[where] = doc
    warned: set[tuple[str, ...]] = set()
    if validator is not None:
        broken = False
        for error in validator.iter_errors(_plain(doc)):
            path = tuple(str(p) for p in error.absolute_path)
            if error.validator == "additionalProperties":
                container = _at(doc, path)
                allowed = set(error.schema.get("properties") or {})
                for key in sorted(
                    k for k in container if k not in allowed and k not in (LINE, FIELD_LINES)
                ):
                    warned.add((*path, key))
                    report.warnings.append(
                        Notice(
                            where,
                            _line(doc, (*path, key)),
                            f"{_dotted((*path, key))}: not in the library schema, ignored",
                        )
                    )
                continue
            broken = True
            report.problems.append(
                Notice(where, _line(doc, path), f"{_dotted(path) or 'file'}: {error.message}")
            )
        if broken:
            return None
    for path in _drop_unknown(doc, kind):
        if path not in warned:
            what = "not kept by Popcorn" if validator is not None else "unknown field"
            report.warnings.append(
                Notice(where, _line(doc, path), f"{_dotted(path)}: {what}, ignored")
            )
    return formats.library_row(doc, where)


def _drop_unknown(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, ...]]:
    """Remove (and name) the fields Popcorn has no place for, top level and per template.

    The lines stay readable: a removed key's line is kept in the mapping's
    field lines until the row is built.
    """
    top = TOP_KEYS[kind]
    templates = (
        devicetypes.TEMPLATE_KEYS if kind == "device_model" else devicetypes.MODULE_TEMPLATE_KEYS
    )
    for key in [k for k in doc if k not in (LINE, FIELD_LINES)]:
        if key not in top:
            doc.pop(key)
            yield (key,)
        elif key in templates and isinstance(doc[key], list):
            known = set(devicetypes.SCHEMAS[devicetypes.TEMPLATE_KEYS[key]].model_fields)
            for index, item in enumerate(doc[key]):
                if not isinstance(item, dict):
                    continue
                for name in [k for k in item if k not in known and k not in (LINE, FIELD_LINES)]:
                    item.pop(name)
                    yield (key, str(index), name)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in (LINE, FIELD_LINES)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _line(doc: dict[str, Any], path: tuple[str, ...]) -> int | None:
    """The line of the field at `path` (or of the nearest mapping that holds it)."""
    line: int | None = doc.get(LINE)
    node: Any = doc
    for part in path:
        if isinstance(node, dict):
            line = (node.get(FIELD_LINES) or {}).get(part, line)
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            if isinstance(node, dict):
                line = node.get(LINE, line)
        else:
            break
    return line


_PART = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def _field_line(doc: dict[str, Any] | None, field: str) -> int | None:
    """The line of a batch error's field (`templates.front-ports[F2].rear_port`) in its file.

    Template errors name an item by its name or by its index; the name wins.
    """
    if doc is None:
        return None
    path: list[str] = []
    node: Any = doc
    for match in _PART.finditer(field.removeprefix("templates.")):
        key, item = match.groups()
        if key is not None:
            path.append(key)
            node = node.get(key) if isinstance(node, dict) else None
            continue
        if not isinstance(node, list):
            break
        names = [i.get("name") if isinstance(i, dict) else None for i in node]
        if item in names:
            index = names.index(item)
        elif item.isdigit() and int(item) < len(node):
            index = int(item)
        else:
            break
        path.append(str(index))
        node = node[index]
    return _line(doc, tuple(path))


def _dotted(path: tuple[str, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def _schema_validators(root: Path) -> dict[str, Any]:
    """The checkout's own JSON schema validators, by kind; none when it ships no schema/."""
    folder = root / "schema"
    if not (folder / SCHEMA_FILES["device_model"]).is_file():
        return {}
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    documents: dict[str, Any] = {}
    for file in sorted(folder.glob("*.json")):
        try:
            documents[file.name] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{file}: not a JSON schema: {exc}") from None
    resources = [
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
        for doc in documents.values()
        if isinstance(doc, dict) and "$id" in doc
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    return {
        kind: Draft202012Validator(documents[name], registry=registry)
        for kind, name in SCHEMA_FILES.items()
        if name in documents
    }
