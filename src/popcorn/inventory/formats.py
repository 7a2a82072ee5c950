"""Reading and writing inventory files: CSV, JSON and YAML, with line numbers.

A file holds one object type (a CSV, or a JSON/YAML list, named by `type=` or
by the file name such as `devices.csv`) or several: a multi-object document
whose top-level keys are sections (`sites`, `device_models`, `devices`,
`components`, `links`…). Devices may nest their `components`, `interfaces`,
`ports` and `bays`. Device models and module types may be written in the
community device-type library's format, and a library file on its own (a
mapping with `manufacturer` and `model`) is read as one device type.

Every row keeps the line it starts on, so errors point into the file. For JSON
the top-level lists are decoded element by element to learn their lines at
no extra cost; rows nested inside a JSON element report the element's line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from popcorn import safeyaml
from popcorn.errors import InvalidInput
from popcorn.inventory import devicetypes
from popcorn.inventory.bulk import BY_PLURAL, ORDER, SECTION_ALIASES, TYPES, Row, resolve_type

FORMATS = ("csv", "json", "yaml")
NESTED = {"components": "component", "interfaces": "interface", "ports": "port", "bays": "bay"}
LINE = "__line__"
FIELD_LINES = "__lines__"
Sections = dict[str, list[Row]]


def detect_format(filename: str, fmt: str | None) -> str:
    if fmt:
        fmt = fmt.lower()
        if fmt == "yml":
            fmt = "yaml"
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown format {fmt!r} (use csv, json or yaml)")
        return fmt
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix in ("yml", "yaml"):
        return "yaml"
    if suffix in FORMATS:
        return suffix
    raise InvalidInput(
        f"cannot tell the format of {filename!r}: name it .csv, .json or .yaml, or give a format"
    )


def type_from_filename(filename: str) -> str | None:
    stem = Path(filename).stem.lower().replace("-", "_")
    try:
        return resolve_type(stem)
    except InvalidInput:
        return None


def decode(content: bytes | str, filename: str) -> str:
    if isinstance(content, str):
        return content
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{filename}: line {line}: not UTF-8 text",
            details={"errors": [{"line": line, "field": "", "message": "not UTF-8 text"}]},
        ) from None


def _malformed(filename: str, line: int | None, message: str) -> InvalidInput:
    where = f"line {line}: " if line else ""
    return InvalidInput(
        f"{filename}: {where}{message}; nothing was written",
        details={
            "errors": [{"section": "", "line": line, "field": "", "message": message}],
            "count": 1,
        },
    )


def parse_path(path: Path, *, fmt: str | None = None, otype: str | None = None) -> Sections:
    """Sections from a file on disk; its bytes are dropped as soon as they are decoded."""
    text = decode(path.read_bytes(), str(path))
    return parse(text, filename=str(path), fmt=fmt, otype=otype)


def parse(
    content: bytes | str,
    *,
    filename: str = "upload",
    fmt: str | None = None,
    otype: str | None = None,
) -> Sections:
    """Sections of rows from one file; raises InvalidInput for a malformed file."""
    fmt = detect_format(filename, fmt)
    text = decode(content, filename)
    del content
    otype = resolve_type(otype) if otype else None
    if fmt == "csv":
        otype = otype or type_from_filename(filename)
        if otype is None:
            raise InvalidInput(
                f"{filename}: a CSV file holds one object type: give the type "
                "(devices, sites…) or name the file after it"
            )
        return {otype: _csv_rows(text, otype, filename)}
    if fmt == "json":
        sections = _json_sections(text, otype, filename)
    else:
        sections = _yaml_sections(text, otype, filename)
    return sections


def mark_source(sections: Sections, filename: str) -> Sections:
    """Rows remember their file, so errors from a multi-file import say which one."""
    if filename != "upload":
        for rows in sections.values():
            for row in rows:
                row.source = filename
    return sections


# --- CSV ---------------------------------------------------------------------


def _csv_rows(text: str, otype: str, filename: str) -> list[Row]:
    fields = TYPES[otype].schema.model_fields
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise _malformed(filename, 1, f"malformed CSV: {exc}") from None
    header = [h.strip() for h in header]
    unknown = [h for h in header if h and h not in fields and not h.startswith("cf_")]
    if unknown:
        raise InvalidInput(
            f"{filename}: line 1: unknown column(s) {', '.join(unknown)}; nothing was written",
            details={
                "errors": [
                    {
                        "section": TYPES[otype].plural,
                        "line": 1,
                        "field": h,
                        "message": "unknown column",
                    }
                    for h in unknown
                ],
                "count": len(unknown),
                "allowed": [f for f in fields if f != "templates"],
            },
        )
    nullable = {
        name
        for name, info in fields.items()
        if not info.is_required() and info.get_default(call_default_factory=True) is None
    }
    blank_ok = {name for name, info in fields.items() if info.default == ""}
    rows: list[Row] = []
    errors: list[dict[str, Any]] = []
    start = 2
    try:
        for record in reader:
            line = start
            start = reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                errors.append(
                    {
                        "section": TYPES[otype].plural,
                        "line": line,
                        "field": "",
                        "message": f"expected {len(header)} fields, got {len(record)}",
                    }
                )
                continue
            data: dict[str, Any] = {}
            custom: dict[str, Any] = {}
            for name, cell in zip(header, record, strict=True):
                value = cell.strip()
                if name.startswith("cf_"):
                    if value:
                        custom[name[3:]] = value
                    continue
                if not value:
                    if name in nullable:
                        data[name] = None
                    elif name in blank_ok:
                        data[name] = ""
                    continue
                data[name] = value
            if custom:
                data["custom_fields"] = custom
            rows.append(Row(data, line))
    except csv.Error as exc:
        raise _malformed(filename, reader.line_num, f"malformed CSV: {exc}") from None
    if errors:
        raise InvalidInput(
            f"{filename}: {len(errors)} malformed row(s); nothing was written",
            details={"errors": errors, "count": len(errors)},
        )
    return rows


# --- JSON --------------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")


class _Lines:
    """Line of a character offset, for offsets visited in increasing order."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1

    def at(self, offset: int) -> int:
        self.line += self.text.count("\n", self.pos, offset)
        self.pos = offset
        return self.line


def _json_error(filename: str, exc: json.JSONDecodeError) -> InvalidInput:
    return _malformed(filename, exc.lineno, f"malformed JSON: {exc.msg} (column {exc.colno})")


def _json_sections(text: str, otype: str | None, filename: str) -> Sections:
    decoder = json.JSONDecoder()
    lines = _Lines(text)
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if pos >= len(text):
        return {}

    def array(at: int) -> tuple[list[tuple[Any, int]], int]:
        items: list[tuple[Any, int]] = []
        at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
        if text.startswith("]", at):
            return items, at + 1
        while True:
            line = lines.at(at)
            try:
                value, at = decoder.raw_decode(text, at)
            except json.JSONDecodeError as exc:
                raise _json_error(filename, exc) from None
            items.append((value, line))
            at = _WS.match(text, at).end()  # type: ignore[union-attr]
            if text.startswith(",", at):
                at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
                continue
            if text.startswith("]", at):
                return items, at + 1
            raise _json_error(filename, json.JSONDecodeError("expected ',' or ']'", text, at))

    try:
        if text.startswith("[", pos):
            items, end = array(pos)
            _expect_end(text, end, filename)
            return _list_section(items, otype, filename)
        if not text.startswith("{", pos):
            raise _malformed(filename, 1, "expected a list or an object at the top")
        sections: dict[str, list[tuple[Any, int]]] = {}
        scalars: dict[str, Any] = {}
        at = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        while not text.startswith("}", at):
            key, at = decoder.raw_decode(text, at)
            if not isinstance(key, str):
                raise json.JSONDecodeError("expected a key", text, at)
            at = _WS.match(text, at).end()  # type: ignore[union-attr]
            if not text.startswith(":", at):
                raise json.JSONDecodeError("expected ':'", text, at)
            at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
            if text.startswith("[", at):
                sections[key], at = array(at)
            else:
                scalars[key], at = decoder.raw_decode(text, at)
            at = _WS.match(text, at).end()  # type: ignore[union-attr]
            if text.startswith(",", at):
                at = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
            elif not text.startswith("}", at):
                raise json.JSONDecodeError("expected ',' or '}'", text, at)
        _expect_end(text, at + 1, filename)
    except json.JSONDecodeError as exc:
        raise _json_error(filename, exc) from None
    if _is_document(sections, scalars):
        return _document({k: v for k, v in sections.items()}, filename)
    # One object: rebuild it with its lists (e.g. a device type with its templates).
    obj = dict(scalars)
    for key, items in sections.items():
        obj[key] = [value for value, _ in items]
    return _single(obj, 1, otype, filename)


def _expect_end(text: str, at: int, filename: str) -> None:
    rest = _WS.match(text, at).end()  # type: ignore[union-attr]
    if rest != len(text):
        raise _json_error(filename, json.JSONDecodeError("extra data", text, rest))


# --- YAML --------------------------------------------------------------------


class _LineLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML that notes the line of every mapping under `__line__`."""


def _mapping_with_line(loader: Any, node: yaml.MappingNode) -> dict[str, Any]:
    data: dict[str, Any] = loader.construct_mapping(node, deep=True)
    data[LINE] = node.start_mark.line + 1
    data[FIELD_LINES] = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    return data


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)
# Dates stay text: inputs validate them, and custom fields keep the written form.
_LineLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def load_yaml(text: str, filename: str) -> list[Any]:
    """The documents of a YAML file, every mapping noting its lines.

    The text goes through `popcorn.safeyaml` first, so nested aliases (a
    "billion laughs"), deep nesting or oversized input are refused before any
    row is read. Inventory files are as large as the fleet, so the expansion
    allowed grows with the text; aliases stay within the loader's limit.
    """
    try:
        safeyaml.load_all(
            text,
            source=filename,
            max_nodes=max(safeyaml.MAX_NODES, len(text)),
            max_bytes=max(safeyaml.MAX_BYTES, len(text)),
        )
    except safeyaml.YAMLLimitError as exc:
        line = exc.details.get("line")
        problem = exc.message.removeprefix(f"{filename}:{line}: " if line else f"{filename}: ")
        kind = "YAML refused" if problem.startswith("YAML ") else "malformed YAML"
        raise _malformed(filename, line, f"{kind}: {problem}") from None
    try:
        return [doc for doc in yaml.load_all(text, Loader=_LineLoader) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise _malformed(filename, line, f"malformed YAML: {problem}") from None


def _yaml_sections(text: str, otype: str | None, filename: str) -> Sections:
    out: Sections = {}
    for doc in load_yaml(text, filename):
        if isinstance(doc, list):
            parts = _list_section([(v, _line(v)) for v in doc], otype, filename, lined=True)
        elif isinstance(doc, dict):
            line = doc.pop(LINE, 1)
            top_lines = doc.pop(FIELD_LINES, None)
            lists = {k: v for k, v in doc.items() if isinstance(v, list)}
            scalars = {k: v for k, v in doc.items() if not isinstance(v, list)}
            if _is_document(lists, scalars):
                parts = _document(
                    {k: [(i, _line(i)) for i in v] for k, v in lists.items()}, filename, lined=True
                )
            else:
                if top_lines is not None:
                    doc[FIELD_LINES] = top_lines
                parts = _single(doc, line, otype, filename, lined=True)
        else:
            raise _malformed(filename, None, "expected a list or a mapping at the top")
        for key, rows in parts.items():
            out.setdefault(key, []).extend(rows)
    return out


def _line(value: Any) -> int | None:
    return value.get(LINE) if isinstance(value, dict) else None


# --- documents -----------------------------------------------------------------


def section_type(key: str) -> str | None:
    normal = key.strip().lower()
    if normal in BY_PLURAL:
        return BY_PLURAL[normal]
    if key in SECTION_ALIASES:
        return SECTION_ALIASES[key]
    normal = normal.replace("-", "_")
    return BY_PLURAL.get(normal) or SECTION_ALIASES.get(normal)


def _is_document(lists: dict[str, Any], scalars: dict[str, Any]) -> bool:
    keys = [k for k in [*lists, *scalars] if k != LINE]
    return bool(keys) and all(section_type(k) is not None for k in keys) and not scalars


def _document(
    sections: Mapping[str, Sequence[tuple[Any, int | None]]], filename: str, lined: bool = False
) -> Sections:
    out: Sections = {otype: [] for otype in ORDER}
    for key, items in sections.items():
        otype = section_type(key)
        assert otype is not None
        for value, line in items:
            _add(out, otype, value, line, f"{key}[{len(out[otype])}]", lined)
    return {k: v for k, v in out.items() if v}


def _list_section(
    items: Sequence[tuple[Any, int | None]], otype: str | None, filename: str, lined: bool = False
) -> Sections:
    otype = otype or type_from_filename(filename)
    if otype is None:
        raise InvalidInput(
            f"{filename}: a list holds one object type: give the type (devices, sites…), "
            "name the file after it, or use a document with sections"
        )
    out: Sections = {t: [] for t in ORDER}
    for index, (value, line) in enumerate(items):
        _add(out, otype, value, line, f"[{index}]", lined)
    return {k: v for k, v in out.items() if v}


def _single(
    obj: dict[str, Any], line: int | None, otype: str | None, filename: str, lined: bool = False
) -> Sections:
    if otype is None:
        if "manufacturer" in obj and "model" in obj:
            otype = "device_model" if ("slug" in obj or "u_height" in obj) else "module_type"
        else:
            raise InvalidInput(
                f"{filename}: cannot tell what this mapping is: give the type, or use a "
                "document whose keys are sections (sites, devices…)"
            )
    out: Sections = {t: [] for t in ORDER}
    _add(out, otype, obj, line, "", lined)
    return {k: v for k, v in out.items() if v}


def _same(value: Any) -> Any:
    return value


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k not in (LINE, FIELD_LINES)}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def _add(out: Sections, otype: str, value: Any, line: int | None, where: str, lined: bool) -> None:
    """One input object (and, for a device, its nested parts) into its sections.

    `lined` marks YAML input, whose mappings carry their line under `__line__`.
    """
    strip = _strip_lines if lined else _same
    if not isinstance(value, dict):
        out[otype].append(Row({}, line, where, problem="expected a mapping of fields"))
        return
    line = value.pop(LINE, line) if LINE in value else line
    if otype == "device":
        name = value.get("name")
        for key, child in NESTED.items():
            nested = value.pop(key, None)
            if nested is None:
                continue
            if not isinstance(nested, list):
                out["device"].append(Row({}, line, where, problem=f"{key} must be a list"))
                continue
            place = f"{where}.{key}"
            rows = out[child]
            for index, item in enumerate(nested):
                if isinstance(item, dict):
                    item_line = item.pop(LINE, line) if lined else line
                    fields = item.pop(FIELD_LINES, None) if lined else None
                    item = strip(item)
                    item["device"] = name
                    rows.append(Row(item, item_line, place, item=index, field_lines=fields))
                else:
                    rows.append(Row({}, line, place, item=index, problem="expected a mapping"))
    fields = value.pop(FIELD_LINES, None) if lined else None
    if otype in ("device_model", "module_type"):
        value = devicetypes.split_library_document(value)
    out[otype].append(Row(strip(value), line, where, field_lines=fields))


def parse_library(root: Path) -> Iterator[tuple[Path, Sections]]:
    """Each file of a device-type library checkout, read as one device type or module type."""
    for kind, path in devicetypes.iter_library(root):
        text = decode(path.read_bytes(), str(path))
        where = str(path.relative_to(root)) if path != root and root.is_dir() else path.name
        sections: Sections = {}
        for doc in load_yaml(text, where):
            if not isinstance(doc, dict):
                raise _malformed(where, None, "a device-type file holds one mapping")
            sections.setdefault(kind, []).append(library_row(doc, where))
        yield path, sections


def library_row(doc: dict[str, Any], where: str) -> Row:
    """A library file's mapping (as `load_yaml` read it) as one device-type or module-type row."""
    line = doc.pop(LINE, 1)
    fields = doc.pop(FIELD_LINES, None)
    library = devicetypes.split_library_document(doc)
    return Row(_strip_lines(library), line, source=where, field_lines=fields)


# --- export --------------------------------------------------------------------


def csv_header(otype: str, custom: list[str]) -> list[str]:
    fields = [
        f for f in TYPES[otype].schema.model_fields if f not in ("id", "templates", "custom_fields")
    ]
    return fields + [f"cf_{name}" for name in custom]


def csv_line(header: list[str], row: dict[str, Any]) -> list[str]:
    cells = []
    custom = row.get("custom_fields") or {}
    for name in header:
        value = custom.get(name[3:]) if name.startswith("cf_") else row.get(name)
        if value is None:
            cells.append("")
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        elif isinstance(value, list):
            cells.append(",".join(str(v) for v in value))
        elif isinstance(value, float) and value.is_integer():
            cells.append(str(int(value)))
        else:
            cells.append(str(value))
    return cells


class _Dumper(yaml.CSafeDumper if hasattr(yaml, "CSafeDumper") else yaml.SafeDumper):  # type: ignore[misc]
    pass


def yaml_dump(value: Any) -> str:
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
