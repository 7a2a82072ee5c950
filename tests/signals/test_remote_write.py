"""The Prometheus remote-write receiver, one status code per case, with WriteRequests built
byte by byte here (the protobuf wire format written out, not Popcorn's own message class),
so the field numbers are checked against the protocol rather than against themselves."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from typing import Any

import cramjam
import pytest
from sqlalchemy import select

from popcorn.audit import AuditRecord
from popcorn.db import session_scope
from popcorn.signals import remote_write, store
from popcorn.signals.models import Series

WRITE = "/api/v1/signals/write"
T0_MS = 1_772_445_600_000  # 2026-03-02T10:00:00Z
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "Prometheus/2.42.0",
}

Samples = list[tuple[int, float]]


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are ten bytes on the wire
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings and embedded messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def timeseries(labels: list[tuple[str, str]], samples: Samples, extra: bytes = b"") -> bytes:
    """A TimeSeries (field 1 of WriteRequest): labels = 1, samples = 2, then `extra`."""
    body = b"".join(_field(1, _field(1, n.encode()) + _field(2, v.encode())) for n, v in labels)
    for ts, value in samples:
        sample = b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(ts)
        body += _field(2, sample)
    return _field(1, body + extra)


def write_request(*series: bytes, metadata: bytes = b"") -> bytes:
    """Snappy block of a WriteRequest; `metadata` goes in field 3 as Prometheus sends it."""
    raw = b"".join(series) + (_field(3, metadata) if metadata else b"")
    return bytes(cramjam.snappy.compress_raw(raw))


def post(api: Any, body: bytes, role: str | None = "operator", **headers: str) -> Any:
    return api.post(WRITE, data=body, headers={**HEADERS, **headers}, role=role)


def stored(metric: str) -> dict[tuple[tuple[str, Any], ...], int]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(Series).where(Series.metric == metric))
        return {tuple(sorted(s.labels.items())): s.sample_count for s in rows}


UP = [("__name__", "up"), ("instance", "127.0.0.1:9090"), ("job", "prometheus")]


def stored_counter(api: Any) -> float:
    """`popcorn_signals_remote_write_samples_total{outcome="stored"}` as /metrics shows it."""
    text = api.get("/metrics", role=None).get_data(as_text=True)
    line = 'popcorn_signals_remote_write_samples_total{outcome="stored"} '
    return sum(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


def test_a_write_is_stored_and_answered_204(api: Any) -> None:
    counted = stored_counter(api)
    body = write_request(
        timeseries(UP, [(T0_MS, 1.0), (T0_MS + 15_000, 0.0)]),
        timeseries([("__name__", "go_goroutines"), ("job", "prometheus")], [(T0_MS, 42.0)]),
        metadata=_field(2, b"up") + _field(4, b"Whether the target is up"),
    )
    res = post(api, body)
    assert res.status_code == 204 and res.data == b""
    assert stored("up") == {(("instance", "127.0.0.1:9090"), ("job", "prometheus")): 2}
    res = api.get(
        "/api/v1/signals/query",
        query_string={
            "query": 'up{job="prometheus"}',
            "start": T0_MS // 1000,
            "end": T0_MS // 1000 + 60,
        },
        role="viewer",
    )
    assert res.status_code == 200, res.json
    (series,) = res.json["series"]
    assert series["timestamps"] == [T0_MS / 1000, T0_MS / 1000 + 15]
    assert series["values"] == [1.0, 0.0]
    # A stream is not audited request by request (every few seconds per sender): it is
    # counted in the metrics instead.
    with session_scope(readonly=True) as session:
        assert not list(session.scalars(select(AuditRecord).where(AuditRecord.action == "ingest")))
    assert stored_counter(api) == counted + 3


def test_resent_and_out_of_order_batches_count_each_timestamp_once(api: Any) -> None:
    first = write_request(timeseries(UP, [(T0_MS + 30_000, 3.0), (T0_MS, 1.0)]))
    assert post(api, first).status_code == 204
    assert post(api, first).status_code == 204  # a retry after a lost answer
    late = write_request(
        timeseries(UP, [(T0_MS + 15_000, 2.0), (T0_MS + 30_000, 3.5), (T0_MS + 15_000, 2.5)])
    )
    assert post(api, late).status_code == 204
    assert stored("up") == {(("instance", "127.0.0.1:9090"), ("job", "prometheus")): 3}
    res = api.get(
        "/api/v1/signals/query",
        query_string={"query": "up", "start": T0_MS // 1000, "end": T0_MS // 1000 + 60},
        role="viewer",
    )
    (series,) = res.json["series"]
    assert series["values"] == [1.0, 2.5, 3.5]  # sorted; the value sent last wins


def test_stale_markers_and_nan_are_skipped_and_counted(api: Any) -> None:
    # a native histogram (field 4) and an exemplar (field 3): neither is stored
    exemplar = _field(1, _field(1, b"trace_id") + _field(2, b"abc")) + b"\x11" + bytes(8)
    histogram = timeseries(
        [("__name__", "latency")], [], extra=_field(3, exemplar) + _field(4, b"\x08\x01")
    )
    body = write_request(
        timeseries(UP, [(T0_MS, 1.0), (T0_MS + 15_000, STALE)]),
        timeseries([("__name__", "ratio")], [(T0_MS, float("nan")), (T0_MS, float("inf"))]),
        histogram,
    )
    with session_scope() as session:
        headers = remote_write.Headers(HEADERS["Content-Type"], HEADERS["Content-Encoding"], "")
        result = remote_write.receive(session=session, body=body, headers=headers)
    assert (result.received, result.stale, result.non_finite, result.histograms) == (4, 1, 2, 1)
    assert result.stored is not None and result.stored.samples == 1
    assert result.stored.skipped == 3
    assert stored("ratio") == stored("latency") == {}  # no finite sample: no series
    only_stale = write_request(timeseries(UP, [(T0_MS + 30_000, STALE)]))
    assert post(api, only_stale).status_code == 204  # nothing to store is still a success
    assert post(api, write_request(metadata=_field(2, b"up"))).status_code == 204
    assert stored("up") == {(("instance", "127.0.0.1:9090"), ("job", "prometheus")): 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x10garbage, not snappy", "snappy"),
        (b"", "snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff")), "not a protobuf WriteRequest"),
        (write_request(timeseries([("job", "x")], [(T0_MS, 1.0)])), "no __name__ label"),
        (write_request(timeseries([("__name__", "bad-name")], [(T0_MS, 1.0)])), "bad-name"),
        (
            write_request(timeseries([("__name__", "up"), ("1st", "x")], [(T0_MS, 1.0)])),
            "label name '1st'",
        ),
        (
            write_request(timeseries([("__name__", "up"), ("a", "1"), ("a", "2")], [(T0_MS, 1)])),
            "label 'a' given twice",
        ),
        (write_request(timeseries(UP, [(-5_000, 1.0)])), "outside 1970..2200"),
    ],
    ids=[
        "not-snappy",
        "empty",
        "not-protobuf",
        "no-name",
        "bad-metric",
        "bad-label",
        "twice",
        "time",
    ],
)
def test_permanent_errors_are_400_and_store_nothing(api: Any, body: bytes, message: str) -> None:
    good = timeseries(UP, [(T0_MS, 1.0)])
    res = post(api, body)
    assert res.status_code == 400, res.json
    assert res.json["error"]["code"] == "bad_request" and message in res.json["error"]["message"]
    if body and message != "snappy":
        # the same bad series beside a good one: the batch is refused whole
        raw = bytes(cramjam.snappy.decompress_raw(body)) + good
        assert post(api, bytes(cramjam.snappy.compress_raw(raw))).status_code == 400
    assert stored("up") == {}


def test_a_decompression_bomb_is_refused_before_it_is_inflated(api: Any) -> None:
    size = remote_write.MAX_DECOMPRESSED_BYTES + 1
    bomb = bytes(cramjam.snappy.compress_raw(b"\x00" * size))
    assert len(bomb) < size // 20
    res = post(api, bomb)
    assert res.status_code == 413
    assert res.json["error"]["details"] == {"decompressed_bytes": size, "limit": size - 1}
    lying = _varint(2**32 - 1) + b"\x00"  # a header promising 4 GiB
    assert post(api, lying).status_code == 413


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
        {"Content-Encoding": "gzip"},
        {"Content-Encoding": ""},
        {"X-Prometheus-Remote-Write-Version": "2.0.0"},
    ],
)
def test_other_protocols_are_415(api: Any, headers: dict[str, str]) -> None:
    res = post(api, write_request(timeseries(UP, [(T0_MS, 1.0)])), **headers)
    assert res.status_code == 415 and res.json["error"]["code"] == "unsupported_media_type"
    assert stored("up") == {}


def test_the_version_header_and_proto_parameter_of_1_0_are_accepted(api: Any) -> None:
    body = write_request(timeseries(UP, [(T0_MS, 1.0)]))
    extra = {"Content-Type": "application/x-protobuf; proto=prometheus.WriteRequest"}
    assert post(api, body, **extra).status_code == 204
    assert post(api, body, **{"X-Prometheus-Remote-Write-Version": ""}).status_code == 204


def test_writing_needs_an_operator_token(api: Any) -> None:
    body = write_request(timeseries(UP, [(T0_MS, 1.0)]))
    assert post(api, body, role=None).status_code == 401
    assert post(api, body, role="viewer").status_code == 403
    assert stored("up") == {}


def test_an_unreachable_database_is_503_so_the_sender_retries(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    def down(**_: Any) -> None:
        raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(remote_write.service, "ingest_batch", down)
    res = post(api, write_request(timeseries(UP, [(T0_MS, 1.0)])))
    assert res.status_code == 503
    assert res.json["error"]["details"] == {"retryable": True}
