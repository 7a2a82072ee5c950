"""Turning what users send into one validated batch: JSON, CSV, Parquet, Prometheus text,
and a pull from a Prometheus-compatible server's HTTP API.

Every parser produces a `Batch` (a list of series and three flat arrays of samples) and
rejects the whole input with an `InvalidInput` naming the line, row or series at fault:
non-numeric or non-finite values, unparseable or out-of-range timestamps, bad metric or
label names. Ordering is not an error: samples are sorted, and when one series has the
same timestamp twice the value given last wins (the same rule as across batches).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

from popcorn.errors import InvalidInput, NotFound, Unavailable
from popcorn.signals.catalog import FORMATS, LABEL_RE, METRIC_RE, TIME_COLUMNS
from popcorn.signals.promql import SelectorError, parse_selector

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

MAX_TS_MS = 7_300_000_000_000  # year 2200: anything later is a unit mistake


class IngestError(InvalidInput):
    """Input that cannot be stored; nothing of its batch was written."""


@dataclass
class Batch:
    """Validated samples: `series[index[i]]` has value `value[i]` at `ts[i]` milliseconds."""

    series: list[SeriesKey]
    index: IntArray
    ts: IntArray
    value: FloatArray
    skipped: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return int(self.ts.size)


def series_key(metric: Any, labels: Any, where: str) -> SeriesKey:
    if not isinstance(metric, str) or not METRIC_RE.match(metric):
        raise IngestError(
            f"{where}: metric name {metric!r} is not valid (letters, digits, _ and :)",
            details={"where": where, "metric": metric},
        )
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise IngestError(f"{where}: labels must be an object of strings", details={"where": where})
    items = []
    for name, value in labels.items():
        if name == "__name__":
            continue
        if not isinstance(name, str) or not LABEL_RE.match(name) or name.startswith("__"):
            raise IngestError(
                f"{where}: label name {name!r} is not valid",
                details={"where": where, "label": name},
            )
        if not isinstance(value, str):
            raise IngestError(
                f"{where}: label {name} must be a string, got {value!r}",
                details={"where": where, "label": name},
            )
        if value != "":
            items.append((name, value))
    return metric, tuple(sorted(items))


def check_samples(ts: IntArray, values: FloatArray, locate: Callable[[int], str]) -> None:
    """Reject non-finite values and timestamps outside 1970..2200, naming the first offender."""
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise IngestError(
            f"{locate(i)}: value {float(values[i])!r} is not a finite number",
            details={"where": locate(i), "bad_values": int(bad.size)},
        )
    bad = np.flatnonzero((ts < 0) | (ts >= MAX_TS_MS))
    if bad.size:
        i = int(bad[0])
        raise IngestError(
            f"{locate(i)}: timestamp {ts[i] / 1000:.3f} is outside 1970..2200 "
            "(timestamps are unix seconds)",
            details={"where": locate(i), "bad_timestamps": int(bad.size)},
        )


# --------------------------------------------------------------------------- JSON


def _numbers(raw: Any, where: str, what: str) -> FloatArray:
    """A JSON list of numbers as float64, refusing strings, booleans and nulls."""
    if not isinstance(raw, list):
        raise IngestError(f"{where}: {what} must be a list", details={"where": where})
    arr = np.asarray(raw)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        for i, item in enumerate(raw):
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise IngestError(
                    f"{where}: {what}[{i}] = {item!r} is not a number",
                    details={"where": where, "index": i},
                )
        raise IngestError(f"{where}: {what} must be a flat list of numbers")
    return arr.astype(np.float64, copy=False)


def _times(raw: Any, where: str) -> IntArray:
    """Unix seconds (numbers) or RFC 3339 strings, as int64 milliseconds."""
    if isinstance(raw, list) and raw and isinstance(raw[0], str):
        import pandas as pd

        try:
            parsed = pd.to_datetime(pd.Series(raw), utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise IngestError(
                f"{where}: timestamps must be unix seconds or RFC 3339 ({exc})",
                details={"where": where},
            ) from None
        return np.asarray(parsed.dt.as_unit("ms").astype("int64").to_numpy(), dtype=np.int64)
    seconds = _numbers(raw, where, "timestamps")
    return np.asarray(np.round(seconds * 1000.0), dtype=np.int64)


def parse_json(payload: Any) -> Batch:
    """`{"series": [{"metric", "labels", "timestamps": [...], "values": [...]}]}`.

    Instead of the two columns a series may give `"samples": [[t, v], ...]`. Timestamps are
    unix seconds (fractions allowed) or RFC 3339 strings.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("series"), list):
        raise IngestError(
            'body: expected {"series": [{"metric", "labels", "timestamps", "values"}]}'
        )
    unknown = set(payload) - {"series"}
    if unknown:
        raise IngestError(f"body: unknown field(s) {', '.join(sorted(unknown))}")
    keys: dict[SeriesKey, int] = {}
    index_parts: list[IntArray] = []
    ts_parts: list[IntArray] = []
    value_parts: list[FloatArray] = []
    offsets: list[tuple[int, str]] = []
    total = 0
    for n, item in enumerate(payload["series"]):
        where = f"series[{n}]"
        if not isinstance(item, dict):
            raise IngestError(f"{where}: expected an object", details={"where": where})
        extra = set(item) - {"metric", "labels", "timestamps", "values", "samples"}
        if extra:
            raise IngestError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        labels = item.get("labels") or {}
        metric = item.get("metric", labels.get("__name__") if isinstance(labels, dict) else None)
        key = series_key(metric, labels, where)
        if "samples" in item:
            if "timestamps" in item or "values" in item:
                raise IngestError(f"{where}: give either samples or timestamps+values")
            pairs = item["samples"]
            if not isinstance(pairs, list) or not all(
                isinstance(p, list | tuple) and len(p) == 2 for p in pairs
            ):
                raise IngestError(f"{where}: samples must be a list of [timestamp, value] pairs")
            ts = _times([p[0] for p in pairs], where)
            values = _numbers([p[1] for p in pairs], where, "values")
        else:
            ts = _times(item.get("timestamps"), where)
            values = _numbers(item.get("values"), where, "values")
            if ts.size != values.size:
                raise IngestError(
                    f"{where}: {ts.size} timestamps but {values.size} values",
                    details={"where": where},
                )
        idx = keys.setdefault(key, len(keys))
        offsets.append((total, where))
        total += ts.size
        index_parts.append(np.full(ts.size, idx, np.int64))
        ts_parts.append(ts)
        value_parts.append(values)
    batch = _assemble(list(keys), index_parts, ts_parts, value_parts)
    starts = np.array([o for o, _ in offsets], dtype=np.int64)

    def locate(i: int) -> str:
        pos = int(np.searchsorted(starts, i, side="right")) - 1
        return f"{offsets[pos][1]} sample {i - offsets[pos][0]}"

    check_samples(batch.ts, batch.value, locate)
    return batch


def _assemble(
    series: list[SeriesKey],
    index_parts: Sequence[IntArray],
    ts_parts: Sequence[IntArray],
    value_parts: Sequence[FloatArray],
) -> Batch:
    if not ts_parts:
        return Batch(series, *(np.empty(0, np.int64),) * 2, np.empty(0))
    return Batch(
        series,
        np.concatenate(index_parts),
        np.concatenate(ts_parts),
        np.concatenate(value_parts).astype(np.float64, copy=False),
    )


# --------------------------------------------------------------------------- CSV / Parquet


def read_file(path: str | Path, fmt: str | None = None) -> Batch:
    """A CSV, Parquet, JSON or Prometheus text file, by `fmt` or by its extension."""
    path = Path(path)
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise IngestError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise IngestError(f"file: {path} does not exist", details={"file": str(path)})
    if fmt == "json":
        import json

        try:
            return parse_json(json.loads(path.read_bytes()))
        except json.JSONDecodeError as exc:
            raise IngestError(f"{path.name}: not JSON: {exc}") from None
    if fmt == "prometheus":
        return parse_prometheus_text(path.read_text())
    import pyarrow as pa  # here, not at the top: the CLI imports this module

    if fmt == "csv":
        import pyarrow.csv as pacsv

        try:
            table = pacsv.read_csv(
                path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
            )
        except pa.ArrowInvalid as exc:
            raise IngestError(f"{path.name}: not a readable CSV file: {exc}") from None
        return parse_table(table, lambda i: f"{path.name} line {i + 2}")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"{path.name}: not a readable Parquet file: {exc}") from None
    return parse_table(table, lambda i: f"{path.name} row {i}")


def guess_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("csv", "tsv"):
        return "csv"
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix == "json":
        return "json"
    if suffix in ("prom", "txt", "metrics", "om"):
        return "prometheus"
    raise IngestError(
        f"{path.name}: cannot tell the format from the extension; give --format "
        f"({', '.join(FORMATS)})"
    )


def parse_table(table: pa.Table, locate: Callable[[int], str]) -> Batch:
    """Long format: a time column, `value`, and either `series` (`m{a="b"}`) or `metric`
    plus one column per label (empty cells mean the label is absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = table.column_names
    time_col = next((c for c in TIME_COLUMNS if c in names), None)
    if time_col is None or "value" not in names:
        raise IngestError(
            f"columns: need a time column ({', '.join(TIME_COLUMNS)}) and 'value'; "
            f"found {', '.join(names)}"
        )
    if "series" in names:
        key_cols = ["series"]
    elif "metric" in names or "__name__" in names:
        metric_col = "metric" if "metric" in names else "__name__"
        label_cols = [c for c in names if c not in (time_col, "value", metric_col)]
        for col in label_cols:
            if not LABEL_RE.match(col) or col.startswith("__"):
                raise IngestError(f"columns: {col!r} is not a valid label name")
        key_cols = [metric_col, *label_cols]
    else:
        raise IngestError("columns: need 'series' or 'metric' to name each row's series")
    if table.num_rows == 0:
        return Batch([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    ts = _table_times(table.column(time_col), locate)
    values = _table_values(table.column("value"), locate)
    codes, dictionaries = [], []
    for col in key_cols:
        arr = table.column(col)
        if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
            arr = pc.cast(arr, pa.string())
        encoded = pc.dictionary_encode(arr.combine_chunks())
        indices = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
        codes.append(indices + 1)  # 0 = empty cell
        dictionaries.append([None, *encoded.dictionary.to_pylist()])
    unique_rows, index, firsts = _combine(codes)
    series: list[SeriesKey] = []
    for combo, first_row in zip(unique_rows, firsts, strict=True):
        first = int(first_row)
        parts = [dictionaries[j][int(c)] for j, c in enumerate(combo)]
        if key_cols == ["series"]:
            series.append(_series_from_text(parts[0], locate(first)))
        else:
            labels = {key_cols[j]: v for j, v in enumerate(parts) if j and v}
            if not parts[0]:
                raise IngestError(f"{locate(first)}: metric is empty")
            series.append(series_key(parts[0], labels, locate(first)))
    check_samples(ts, values, locate)
    return Batch(series, index, ts, values)


def _combine(codes: list[IntArray]) -> tuple[IntArray, IntArray, IntArray]:
    """Unique combinations of per-column codes in order of first appearance, each row's
    combination number, and the first row of each combination."""
    sizes = [int(c.max()) + 1 for c in codes]
    if math.prod(sizes) < 2**62:
        key = np.zeros(codes[0].size, np.int64)
        for c, size in zip(codes, sizes, strict=True):
            key = key * size + c
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        combos = np.empty((uniq.size, len(codes)), np.int64)
        rest = uniq.copy()
        for j in range(len(codes) - 1, -1, -1):
            combos[:, j] = rest % sizes[j]
            rest //= sizes[j]
    else:
        stacked = np.stack(codes, axis=1)
        combos, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return combos[order], rank[inverse.reshape(-1)].astype(np.int64), first[order]


def _series_from_text(text: str | None, where: str) -> SeriesKey:
    if not text:
        raise IngestError(f"{where}: series is empty")
    try:
        selector = parse_selector(text)
    except SelectorError as exc:
        raise IngestError(f"{where}: {exc.message}") from None
    if selector.metric is None or any(m.op != "=" for m in selector.matchers):
        raise IngestError(f'{where}: series must be written metric{{label="value",...}}')
    return series_key(selector.metric, selector.equalities(), where)


def _table_times(column: pa.ChunkedArray, locate: Callable[[int], str]) -> IntArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks()
    if arr.null_count:
        i = int(np.argmax(arr.is_null().to_numpy(zero_copy_only=False)))
        raise IngestError(f"{locate(i)}: timestamp is missing")
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        return np.asarray(pc.cast(arr, pa.timestamp("ms", "UTC")).cast(pa.int64()).to_numpy())
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        seconds = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(seconds))
        if bad.size:
            raise IngestError(f"{locate(int(bad[0]))}: timestamp is not a finite number")
        return np.asarray(np.round(seconds * 1000.0), dtype=np.int64)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        import pandas as pd

        parsed = pd.to_datetime(
            pd.Series(arr.to_pylist()), utc=True, format="ISO8601", errors="coerce"
        )
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise IngestError(
                f"{locate(i)}: timestamp {arr[i].as_py()!r} is neither unix seconds nor RFC 3339"
            )
        return np.asarray(parsed.dt.as_unit("ms").astype("int64").to_numpy(), dtype=np.int64)
    raise IngestError(f"columns: the time column has unsupported type {arr.type}")


def _table_values(column: pa.ChunkedArray, locate: Callable[[int], str]) -> FloatArray:
    import pyarrow as pa

    arr = column.combine_chunks()
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        if arr.null_count:
            i = int(np.argmax(arr.is_null().to_numpy(zero_copy_only=False)))
            raise IngestError(f"{locate(i)}: value is missing")
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    for i, item in enumerate(arr.to_pylist()):
        try:
            float(item)
        except (TypeError, ValueError):
            shown = "missing" if item is None else f"{item!r} is not a number"
            raise IngestError(f"{locate(i)}: value {shown}") from None
    raise IngestError(f"columns: the value column has unsupported type {arr.type}")


# --------------------------------------------------------------------------- Prometheus text

_SAMPLE_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESC = {"\\": "\\", '"': '"', "n": "\n"}


def parse_prometheus_text(text: str, default_ms: int | None = None) -> Batch:
    """The text exposition format (0.0.4) and OpenMetrics (recognised by `# EOF`).

    Samples without a timestamp get `default_ms` (the time of ingest). Exposition
    timestamps are milliseconds; OpenMetrics ones are seconds. Non-finite values (NaN,
    ±Inf: a summary without observations, Prometheus's own /metrics has them) are skipped
    and counted in `Batch.skipped`, as the pull does.
    """
    import time

    default_ms = default_ms if default_ms is not None else int(time.time() * 1000)
    lines = text.splitlines()
    openmetrics = any(line.strip() == "# EOF" for line in lines[-3:])
    keys: dict[SeriesKey, int] = {}
    index: list[int] = []
    stamps: list[int] = []
    values: list[float] = []
    where_line: list[int] = []
    skipped = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        name, labels, rest = _parse_sample_head(line, where)
        fields = rest.split()
        if not fields or len(fields) > 2 + (1 if openmetrics else 0):
            raise IngestError(f"{where}: expected 'name{{labels}} value [timestamp]'")
        try:
            value = float(fields[0])
        except ValueError:
            raise IngestError(f"{where}: value {fields[0]!r} is not a number") from None
        if not math.isfinite(value):
            skipped += 1
            continue
        ts = default_ms
        if len(fields) > 1 and not fields[1].startswith("#"):
            try:
                ts = round(float(fields[1]) * 1000) if openmetrics else int(fields[1])
            except ValueError:
                raise IngestError(f"{where}: timestamp {fields[1]!r} is not a number") from None
        key = series_key(name, labels, where)
        index.append(keys.setdefault(key, len(keys)))
        stamps.append(ts)
        values.append(value)
        where_line.append(number)
    ts_arr = np.asarray(stamps, dtype=np.int64)
    val_arr = np.asarray(values, dtype=np.float64)
    check_samples(ts_arr, val_arr, lambda i: f"line {where_line[i]}")
    return Batch(list(keys), np.asarray(index, dtype=np.int64), ts_arr, val_arr, skipped)


def _parse_sample_head(line: str, where: str) -> tuple[str, dict[str, str], str]:
    match = _SAMPLE_NAME.match(line)
    if not match:
        raise IngestError(f"{where}: expected a metric name")
    name = match.group()
    pos = match.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        pos += 1
        while True:
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos < len(line) and line[pos] == "}":
                pos += 1
                break
            label = _LABEL_NAME.match(line, pos)
            if not label:
                raise IngestError(f"{where}: expected a label name at column {pos + 1}")
            pos = label.end()
            if not line.startswith('="', pos):
                raise IngestError(f'{where}: expected =" after label {label.group()}')
            pos += 2
            chars: list[str] = []
            while pos < len(line) and line[pos] != '"':
                if line[pos] == "\\" and pos + 1 < len(line):
                    chars.append(_ESC.get(line[pos + 1], "\\" + line[pos + 1]))
                    pos += 2
                else:
                    chars.append(line[pos])
                    pos += 1
            if pos >= len(line):
                raise IngestError(f"{where}: unterminated label value")
            pos += 1
            if label.group() in labels:
                raise IngestError(f"{where}: label {label.group()} given twice")
            labels[label.group()] = "".join(chars)
            if pos < len(line) and line[pos] == ",":
                pos += 1
            elif pos < len(line) and line[pos] != "}":
                raise IngestError(f"{where}: expected ',' or '}}' at column {pos + 1}")
    if pos < len(line) and line[pos] not in " \t":
        raise IngestError(f"{where}: expected a space before the value")
    return name, labels, line[pos:]


# --------------------------------------------------------------------------- Prometheus pull


def pull_prometheus(
    url: str,
    match: str,
    start: float,
    end: float,
    step: float,
    *,
    max_points: int = 10_000,
    timeout: float = 60.0,
    transport: Any = None,
) -> Iterator[Batch]:
    """Range-query a Prometheus-compatible server (`/api/v1/series`, `/api/v1/query_range`).

    Yields one batch per time chunk of at most `max_points` steps (the server caps points
    per series). Non-finite values in the server's answer (NaN, ±Inf) are skipped and
    counted in `Batch.skipped`. A selector matching nothing is a NotFound.

    The URL is a user's: it must be an outbound target an admin allowed (403 otherwise,
    before any connection), redirects are not followed, and errors carry the server's
    status code and a short reason, never its answer (which the caller could not read).
    """
    import httpx

    from popcorn.outbound import check_url

    parse_selector(match)  # fail on a bad selector before any network call
    if end < start:
        raise InvalidInput("end: must not be before start", details={"start": start, "end": end})
    base = url.rstrip("/")
    check_url(base, purpose="prometheus pull")
    with httpx.Client(
        base_url=base, timeout=timeout, transport=transport, follow_redirects=False
    ) as http:
        found = _prom_get(http, "/api/v1/series", {"match[]": match, "start": start, "end": end})
        if not found:
            raise NotFound(
                f"no series match {match} on {base} in that time range",
                details={"match": match, "url": base},
            )
        chunk = step * max_points
        a = start
        while a <= end:
            b = min(a + chunk - step, end)
            params = {"query": match, "start": a, "end": b, "step": step}
            data = _prom_get(http, "/api/v1/query_range", params)
            yield _matrix_batch(data, len(found))
            a = b + step


def _prom_get(http: Any, path: str, params: dict[str, Any]) -> Any:
    import httpx

    try:
        response = http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"cannot reach Prometheus at {http.base_url}: {type(exc).__name__}"
        ) from None
    try:
        body = response.json()
    except ValueError:
        raise Unavailable(
            f"Prometheus at {http.base_url}{path} answered {response.status_code} without JSON",
            details={"status": response.status_code},
        ) from None
    if not isinstance(body, dict):
        raise Unavailable(f"Prometheus {path}: the answer is not a JSON object")
    if response.status_code >= 400 or body.get("status") != "success":
        kind = str(body.get("errorType") or "")
        reason = kind if re.fullmatch(r"[a-z_]{1,40}", kind) else response.reason_phrase[:60]
        error = InvalidInput if response.status_code in (400, 422) else Unavailable
        raise error(
            f"Prometheus {path} answered {response.status_code} ({reason})",
            details={"status": response.status_code},
        )
    data = body.get("data")
    if isinstance(data, dict) and "result" in data:
        if data.get("resultType") != "matrix":
            raise InvalidInput(
                f"Prometheus {path}: expected a matrix, got {data.get('resultType')}"
            )
        return data["result"]
    return data


def _matrix_batch(result: list[dict[str, Any]], expected_series: int) -> Batch:
    keys: dict[SeriesKey, int] = {}
    index_parts, ts_parts, value_parts = [], [], []
    skipped = 0
    for n, item in enumerate(result):
        labels = dict(item.get("metric") or {})
        metric = labels.pop("__name__", None)
        key = series_key(metric, labels, f"Prometheus series {n}")
        pairs = item.get("values") or []
        if not pairs:
            continue
        ts = np.asarray(np.round(np.asarray([float(p[0]) for p in pairs]) * 1000.0), dtype=np.int64)
        vals = np.asarray([float(p[1]) for p in pairs], dtype=np.float64)
        ok = np.isfinite(vals)
        skipped += int(ok.size - ok.sum())
        idx = keys.setdefault(key, len(keys))
        index_parts.append(np.full(int(ok.sum()), idx, np.int64))
        ts_parts.append(ts[ok])
        value_parts.append(vals[ok])
    batch = _assemble(list(keys), index_parts, ts_parts, value_parts)
    batch.skipped = skipped
    batch.notes["series_matched"] = expected_series
    return batch
