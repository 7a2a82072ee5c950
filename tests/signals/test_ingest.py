"""Ingest formats and their error messages: JSON, Prometheus text, OpenMetrics, CSV and
Parquet through the CLI, and `popcorn signals detect`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from popcorn.cli import cli
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.signals import store
from popcorn.signals.cli import group
from popcorn.signals.ingest import parse_json, parse_prometheus_text
from popcorn.signals.models import Series

cli.add_command(group)
T0 = 1_772_445_600  # 2026-03-02T10:00:00Z


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["signals", *args], catch_exceptions=False)
    return result.exit_code, result.output


def stored() -> list[str]:
    from popcorn.signals.service import series_name

    with session_scope(readonly=True) as session:
        return [series_name(s) for s in session.scalars(select(Series).order_by(Series.id))]


def test_json_accepts_columns_pairs_and_rfc3339() -> None:
    batch = parse_json(
        {
            "series": [
                {
                    "metric": "a",
                    "labels": {"x": "1"},
                    "timestamps": [T0, T0 + 0.5],
                    "values": [1, 2.5],
                },
                {
                    "metric": "b",
                    "samples": [["2026-03-02T10:00:00Z", 3], ["2026-03-02T10:01:00+00:00", 4]],
                },
                {"metric": "a", "labels": {"x": "1", "empty": ""}, "samples": [[T0 + 9, 5]]},
            ]
        }
    )
    assert batch.series == [("a", (("x", "1"),)), ("b", ())]  # "" labels are absent labels
    assert batch.index.tolist() == [0, 0, 1, 1, 0]
    assert batch.ts.tolist() == [
        T0 * 1000,
        T0 * 1000 + 500,
        T0 * 1000,
        T0 * 1000 + 60_000,
        (T0 + 9) * 1000,
    ]


@pytest.mark.parametrize(
    ("series", "message"),
    [
        (
            {"metric": "a", "timestamps": [T0], "values": [True]},
            r"values\[0\] = True is not a number",
        ),
        (
            {"metric": "a", "timestamps": [T0], "values": ["1.5"]},
            r"values\[0\] = '1.5' is not a number",
        ),
        ({"metric": "a", "timestamps": [T0, T0], "values": [1, None]}, r"values\[1\] = None"),
        (
            {"metric": "a", "timestamps": [T0, T0 + 1], "values": [1, float("inf")]},
            r"series\[1\] sample 1: value inf is not a finite number",
        ),
        ({"metric": "a", "timestamps": [T0 * 1000], "values": [1]}, "outside 1970..2200"),
        ({"metric": "a", "timestamps": [T0, T0], "values": [1]}, "2 timestamps but 1 values"),
        ({"metric": "a", "timestamps": ["yesterday"], "values": [1]}, "RFC 3339"),
        ({"metric": "9lives", "timestamps": [T0], "values": [1]}, "metric name '9lives'"),
        (
            {"metric": "a", "labels": {"bad-name": "x"}, "timestamps": [T0], "values": [1]},
            "label name 'bad-name'",
        ),
        (
            {"metric": "a", "labels": {"n": 5}, "timestamps": [T0], "values": [1]},
            "label n must be a string",
        ),
        ({"metric": "a", "timestamps": [T0], "values": [1], "unit": "s"}, "unknown field"),
    ],
)
def test_json_rejects_bad_samples_by_name(series: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_json({"series": [{"metric": "ok", "samples": [[T0, 1]]}, series]})


def test_prometheus_text_exposition() -> None:
    text = """# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1772445600000
http_requests_total{method="post",code="400"}    3 1772445600000
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",\
error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"""
    batch = parse_prometheus_text(text, default_ms=T0 * 1000 + 5)
    names = [name for name, _ in batch.series]
    assert names == [
        "http_requests_total",
        "http_requests_total",
        "msdos_file_access_time_seconds",
        "rpc_duration_seconds",
        "rpc_duration_seconds_sum",
        "rpc_duration_seconds_count",
    ]
    assert dict(batch.series[2][1]) == {
        "path": "C:\\DIR\\FILE.TXT",
        "error": 'Cannot find file:\n"FILE.TXT"',
    }
    assert batch.ts.tolist() == [T0 * 1000, T0 * 1000] + [T0 * 1000 + 5] * 4
    assert batch.value.tolist()[:2] == [1027.0, 3.0]


def test_openmetrics_timestamps_are_seconds() -> None:
    batch = parse_prometheus_text('# TYPE x gauge\nx{a="1"} 3 1772445600.25\n# EOF\n')
    assert batch.ts.tolist() == [T0 * 1000 + 250]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok 1\nm{a=1} 3\n", 'line 2: expected =" after label a'),
        ("ok 1\nm abc\n", "line 2: value 'abc' is not a number"),
        ('m{a="x} 3\n', "line 1: unterminated label value"),
        ("m 1 12:00\n", "line 1: timestamp '12:00' is not a number"),
        ('m{a="1",a="2"} 1\n', "label a given twice"),
    ],
)
def test_prometheus_text_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_prometheus_text(text)


def test_cli_ingests_csv_with_label_columns_and_queries(tmp_path: Path) -> None:
    csv = tmp_path / "edge.csv"
    lines = ["timestamp,metric,site,host,value"]
    for i in range(6):
        lines.append(f"{T0 + 30 * i},edge_rps,ams1,a,{10 + i}")
        lines.append(f"{T0 + 30 * i},edge_rps,ams1,,{20 + i}")  # no host label
    csv.write_text("\n".join(lines) + "\n")
    code, out = run("ingest", str(csv), "--json")
    assert code == 0, out
    assert json.loads(out)["items"][0]["samples"] == 12
    assert stored() == ['edge_rps{host="a",site="ams1"}', 'edge_rps{site="ams1"}']

    code, out = run(
        "query",
        'edge_rps{host="a"}',
        "--start",
        str(T0),
        "--end",
        str(T0 + 180),
        "--step",
        "1m",
        "--agg",
        "max",
        "--json",
    )
    assert code == 0, out
    # `end` is inclusive, as in Prometheus: a point at T0 + 180, empty here.
    assert json.loads(out)["series"][0]["values"] == [11.0, 13.0, 15.0, None]
    code, out = run("query", "edge_rps", "--start", str(T0), "--end", str(T0 + 180), "--step", "1m")
    assert code == 0 and "edge_rps" in out


def test_cli_rejects_a_bad_csv_line_and_stores_nothing(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(f"timestamp,metric,value\n{T0},m,1\n{T0 + 60},m,oops\n")
    code, out = run("ingest", str(csv))
    assert code == 1
    assert "bad.csv line 3: value 'oops' is not a number" in out
    assert stored() == []
    csv.write_text(f"timestamp,metric,value\n{T0},m,1\n{T0 + 60},m,inf\n")
    code, out = run("ingest", str(csv))
    assert code == 1 and "bad.csv line 3: value inf is not a finite number" in out
    csv.write_text(f"time,value\n{T0},1\n")
    code, out = run("ingest", str(csv))
    assert code == 1 and "need 'series' or 'metric'" in out


def test_cli_ingests_parquet_with_a_series_column(tmp_path: Path) -> None:
    n = 1000
    table = pa.table(
        {
            "series": ['cpu{host="a"}', 'cpu{host="b"}'] * (n // 2),
            "timestamp": pa.array(
                np.repeat(np.arange(n // 2) * 10 + T0, 2) * 1000, pa.timestamp("ms", "UTC")
            ),
            "value": np.arange(n, dtype=float),
        }
    )
    path = tmp_path / "cpu.parquet"
    pq.write_table(table, path)
    code, out = run("ingest", str(path), "--json")
    assert code == 0, out
    assert json.loads(out)["items"][0]["samples"] == n
    assert stored() == ['cpu{host="a"}', 'cpu{host="b"}']
    code, out = run("series", 'cpu{host=~"b"}', "--json")
    assert [s["sample_count"] for s in json.loads(out)["items"]] == [n // 2]


def test_cli_ingests_prometheus_text_files(tmp_path: Path) -> None:
    path = tmp_path / "scrape.prom"
    path.write_text(f'up{{job="api"}} 1 {T0 * 1000}\nup{{job="db"}} 0 {T0 * 1000}\n')
    code, out = run("ingest", str(path), "--json")
    assert code == 0, out
    assert stored() == ['up{job="api"}', 'up{job="db"}']


def test_cli_detect_finds_a_level_shift(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(10, 0.5, 120), rng.normal(16, 0.5, 80)]
    csv = tmp_path / "series.csv"
    csv.write_text(
        "timestamp,value\n" + "".join(f"{T0 + 60 * i},{v}\n" for i, v in enumerate(values))
    )
    code, out = run("detect", str(csv), "--json")
    assert code == 0, out
    (cp,) = json.loads(out)["change_points"]
    assert abs(cp["index"] - 120) <= 2 and cp["timestamp"] == T0 + 60 * cp["index"]

    data = tmp_path / "series.json"
    data.write_text(json.dumps({"values": [None if i == 50 else v for i, v in enumerate(values)]}))
    code, out = run("detect", str(data))
    assert code == 0 and "120" in out and "change point(s)" in " ".join(out.split())
    data.write_text(json.dumps({"values": ["a", 1]}))
    code, out = run("detect", str(data))
    assert code == 1 and "values must be numbers" in out


def test_prometheus_text_skips_non_finite_samples_and_counts_them() -> None:
    text = (
        "# TYPE rpc_duration_seconds summary\n"
        'rpc_duration_seconds{quantile="0.5"} NaN\n'
        'rpc_duration_seconds{quantile="0.99"} +Inf\n'
        "rpc_duration_seconds_sum 0\n"
        "rpc_duration_seconds_count 0\n"
    )
    batch = parse_prometheus_text(text, default_ms=T0 * 1000)
    assert (batch.samples, batch.skipped) == (2, 2)
    assert [name for name, _ in batch.series] == ["rpc_duration_seconds_sum",
                                                  "rpc_duration_seconds_count"]  # fmt: skip
