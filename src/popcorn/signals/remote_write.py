"""Prometheus remote write 1.0: what Prometheus, Grafana Alloy and the OpenTelemetry
collector push, turned into one ingest batch.

A request is a snappy block-compressed protobuf `WriteRequest`. The answers are the ones
the protocol's senders act on: 204 stored; a 4xx other than 429 is permanent (the sender
drops the batch: bad snappy, bad protobuf, invalid labels, too large, wrong type); a 5xx
is retried (the database, Redis or the sample store cannot be reached right now); 429 with
Retry-After says the machine already stores `signals_remote_write_max_inflight` requests
(Prometheus retries it when `retry_on_http_429` is on, and drops the batch otherwise).

The in-flight limit is per machine, not per process: Gunicorn's sync workers each hold one
request, so a per-process count never passes one. Each turn is a lock file under
`<home>/run/`, held with `flock` for the request; the kernel releases it if the worker dies.

Samples go through `service.ingest_batch`, so series naming, last-value-wins dedupe and
`sample_count` are the same as for every other ingest: a batch resent after a timeout
replaces what it stored the first time instead of counting twice. NaN and ±Inf values,
among them Prometheus's stale markers, are skipped and counted.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter
from sqlalchemy.orm import Session

from popcorn.config import ensure_home, get_settings
from popcorn.errors import Overloaded, PopcornError, Unavailable
from popcorn.metrics import PROCESS_METRICS
from popcorn.signals import ingest as parsers
from popcorn.signals import service

CONTENT_TYPE = "application/x-protobuf"
MESSAGE = "prometheus.WriteRequest"
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024  # Prometheus sends well under 1 MiB a request
STALE_NAN_BITS = 0x7FF0000000000002  # Prometheus's marker for a series that disappeared
SAMPLES = Counter(
    "popcorn_signals_remote_write_samples_total",
    "Samples received by remote write, by outcome",
    ["outcome"],
)
REQUESTS = Counter(
    "popcorn_signals_remote_write_requests_total",
    "Remote-write requests, by outcome (accepted, throttled, rejected, unavailable, failed)",
    ["outcome"],
)
PROCESS_METRICS.extend([SAMPLES, REQUESTS])
TURN_WAIT_SECONDS = 1.0  # a short collision (an HA pair) waits; a flood is answered 429
RETRY_AFTER_SECONDS = 1


class RejectedWrite(PopcornError):
    """A request that will never be stored: the sender must drop it, not retry."""

    status = 400
    code = "bad_request"


class TooLarge(RejectedWrite):
    status = 413
    code = "payload_too_large"


class WrongType(RejectedWrite):
    status = 415
    code = "unsupported_media_type"


@dataclass
class WriteResult:
    """What one request carried: stored samples (None when nothing was left to store)."""

    received: int
    stale: int
    non_finite: int
    histograms: int
    stored: service.IngestResult | None


@cache
def message_class() -> Any:
    """The `WriteRequest` message class, built from a descriptor of prompb's field numbers.

    Only what is stored is declared: exemplars, metadata and fields of later versions are
    unknown fields to the parser and cost nothing. Native histograms are declared as bytes
    (wire-compatible with the message) so they can be counted as skipped.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="popcorn/signals/prompb_remote.proto", package="prometheus", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("Sample", ("value", 1, f.TYPE_DOUBLE, one, ""), ("timestamp", 2, f.TYPE_INT64, one, ""))
    message("Label", ("name", 1, f.TYPE_STRING, one, ""), ("value", 2, f.TYPE_STRING, one, ""))
    message(
        "TimeSeries",
        ("labels", 1, f.TYPE_MESSAGE, many, ".prometheus.Label"),
        ("samples", 2, f.TYPE_MESSAGE, many, ".prometheus.Sample"),
        ("histograms", 4, f.TYPE_BYTES, many, ""),
    )
    message("WriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, many, ".prometheus.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(MESSAGE))


@dataclass(frozen=True)
class Headers:
    """The request headers the protocol defines (empty when not sent)."""

    content_type: str
    content_encoding: str
    version: str


def check_headers(headers: Headers) -> None:
    """Remote write 1.0 only: protobuf, snappy, version 0.1.x (2.0 senders then fall back)."""
    ctype, _, params = headers.content_type.partition(";")
    options = dict(p.strip().split("=", 1) for p in params.split(";") if "=" in p)
    if ctype.strip().lower() != CONTENT_TYPE or options.get("proto", MESSAGE) != MESSAGE:
        raise WrongType(
            f"Content-Type {headers.content_type[:80] or 'missing'}: send {CONTENT_TYPE} "
            "(remote write 1.0, prometheus.WriteRequest)",
            details={"accepted": [CONTENT_TYPE]},
        )
    encoding = headers.content_encoding.strip().lower()
    if encoding != "snappy":
        raise WrongType(
            f"Content-Encoding {encoding[:40] or 'missing'}: send snappy (block format)",
            details={"accepted": ["snappy"]},
        )
    version = headers.version.strip() or "0.1.0"
    if not version.startswith("0.1."):
        raise WrongType(
            f"X-Prometheus-Remote-Write-Version {version[:20]}: only 0.1.x (1.0) is received",
            details={"accepted": ["0.1.0"]},
        )


def decode(body: bytes, *, max_bytes: int = MAX_DECOMPRESSED_BYTES) -> Any:
    """The WriteRequest in a snappy block, refusing before decompressing past `max_bytes`."""
    import cramjam
    from google.protobuf.message import DecodeError

    try:
        size = int(cramjam.snappy.decompress_raw_len(body))
    except cramjam.DecompressionError:
        raise RejectedWrite("body: not a snappy block (block format, not framed)") from None
    if size > max_bytes:
        raise TooLarge(
            f"body: decompresses to {size:,} bytes, over the {max_bytes:,}-byte limit",
            details={"decompressed_bytes": size, "limit": max_bytes},
        )
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise RejectedWrite(f"body: corrupt snappy block ({exc})") from None
    request = message_class()()
    try:
        request.ParseFromString(raw)
    except DecodeError:
        raise RejectedWrite("body: not a protobuf WriteRequest") from None
    return request


def to_batch(request: Any) -> tuple[parsers.Batch, WriteResult]:
    """The samples of a WriteRequest as one batch; non-finite values skipped and counted.

    Prometheus sends one TimeSeries per sample, so a series' labels are validated once per
    request (cached by their raw pairs) and samples gather in flat lists, not per series.
    """
    keys: dict[parsers.SeriesKey, int] = {}
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    index: list[int] = []
    stamps: list[int] = []
    values: list[float] = []
    origin: list[int] = []
    histograms = 0
    for n, series in enumerate(request.timeseries):
        histograms += len(series.histograms)
        samples = series.samples
        if not samples:
            continue
        pairs = tuple((label.name, label.value) for label in series.labels)
        idx = seen.get(pairs)
        if idx is None:
            where = f"timeseries[{n}]"
            key = parsers.series_key(*_metric_and_labels(pairs, where), where)
            idx = seen[pairs] = keys.setdefault(key, len(keys))
        for sample in samples:
            index.append(idx)
            stamps.append(sample.timestamp)
            values.append(sample.value)
            origin.append(n)
    value_arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(value_arr)
    stale = int((value_arr[~finite].view(np.uint64) == STALE_NAN_BITS).sum())
    counts = WriteResult(
        received=value_arr.size,
        stale=stale,
        non_finite=int(value_arr.size - finite.sum()) - stale,
        histograms=histograms,
        stored=None,
    )
    kept = np.flatnonzero(finite)
    batch = parsers.Batch(
        list(keys),
        np.asarray(index, dtype=np.int64)[kept],
        np.asarray(stamps, dtype=np.int64)[kept],
        value_arr[kept],
        skipped=counts.stale + counts.non_finite,
    )
    parsers.check_samples(
        batch.ts, batch.value, lambda i: f"timeseries[{origin[int(kept[i])]}] sample"
    )
    return batch, counts


def _metric_and_labels(
    pairs: tuple[tuple[str, str], ...], where: str
) -> tuple[str | None, dict[str, str]]:
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise parsers.IngestError(f"{where}: label {name!r} given twice")
        found[name] = value
    metric = found.pop("__name__", None)
    if metric is None:
        raise parsers.IngestError(f"{where}: no __name__ label")
    return metric, found


def receive(*, session: Session, body: bytes, headers: Headers) -> WriteResult:
    """Store one remote-write request, all or nothing; a request of only stale markers,
    histograms or metadata stores nothing and is still a success."""
    check_headers(headers)
    request = decode(body)
    try:
        batch, result = to_batch(request)
    except parsers.IngestError as exc:
        raise RejectedWrite(exc.message, details=exc.details) from None
    if batch.samples:
        result.stored = service.ingest_batch(
            session=session, batch=batch, source="remote_write", audit=False
        )
    return result


def count(result: WriteResult) -> None:
    """After the commit: a stream is counted in metrics, not audited request by request."""
    stored = result.stored
    SAMPLES.labels("stored").inc(stored.samples if stored else 0)
    SAMPLES.labels("duplicate").inc(stored.duplicates if stored else 0)
    SAMPLES.labels("stale").inc(result.stale)
    SAMPLES.labels("non_finite").inc(result.non_finite)
    SAMPLES.labels("histogram").inc(result.histograms)


@contextmanager
def handling() -> Iterator[None]:
    """One request: wait for a turn (429 when none frees), turn an outage of the database,
    Redis or the sample store into 503 (senders retry both), count the outcome."""
    from redis.exceptions import ConnectionError as RedisDown
    from redis.exceptions import TimeoutError as RedisSlow
    from sqlalchemy.exc import InterfaceError, OperationalError

    limit = get_settings().signals_remote_write_max_inflight
    with turn(limit) as admitted:
        if not admitted:
            REQUESTS.labels("throttled").inc()
            raise Overloaded(
                f"this machine is storing {limit} remote-write requests already; "
                f"retry in {RETRY_AFTER_SECONDS} s",
                retry_after=RETRY_AFTER_SECONDS,
                details={"retryable": True, "max_inflight": limit},
            )
        try:
            yield
        except PopcornError as exc:
            REQUESTS.labels("rejected" if exc.status < 500 else "unavailable").inc()
            raise
        except (OperationalError, InterfaceError, RedisDown, RedisSlow, OSError) as exc:
            REQUESTS.labels("unavailable").inc()
            raise Unavailable(
                f"cannot store now ({type(exc).__name__}); retry later",
                details={"retryable": True},
            ) from None
        except BaseException:
            REQUESTS.labels("failed").inc()
            raise
        REQUESTS.labels("accepted").inc()


@contextmanager
def turn(limit: int, wait_seconds: float = TURN_WAIT_SECONDS) -> Iterator[bool]:
    """Hold one of `limit` turns shared by every process of this machine for the block;
    yields False when none frees within `wait_seconds` (and True at once for limit 0)."""
    if limit <= 0:
        yield True
        return
    folder = _turns_folder()
    deadline = time.monotonic() + wait_seconds
    first = os.getpid() % limit  # workers start at different files
    while True:
        for i in range(limit):
            fd = os.open(folder / f"turn-{(first + i) % limit}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield True
            finally:
                os.close(fd)  # releases the lock
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    yield False


def _turns_folder() -> Path:
    folder = ensure_home(get_settings().home) / "run" / "signals-remote-write"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder
