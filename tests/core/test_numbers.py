"""Numbers for people: what the console and the CLI tables print, and that data is not markup."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from popcorn import numbers
from popcorn.cli import output


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10080.0, "10,080"),
        (53790.2, "53,790"),
        (1.0000000000000002, "1"),
        (0.12345, "0.123"),
        (12.26, "12.3"),
        (123456789, "123,456,789"),
        (0.0, "0"),
        (-3.5, "-3.5"),
        (None, "—"),
        ("text", "text"),
    ],
)
def test_number_has_separators_and_no_scientific_notation(value: object, shown: str) -> None:
    assert numbers.number(value) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.9263533349999875, "926 ms"), (4.7, "4.7 s"), (188, "3 min 08 s"), (7260, "2 h 01 min")],
)
def test_durations(seconds: float, shown: str) -> None:
    assert numbers.duration(seconds) == shown


def test_units_and_percentages() -> None:
    assert numbers.duration_ms(926.3533349999875) == "926 ms"
    assert numbers.percent(1.0000000000000002) == "100%"
    assert numbers.percent(0.9634) == "96.3%"
    assert numbers.quantity(12.5, "Gbps") == "12.5 Gbps"
    assert numbers.quantity(12000, "req/s") == "12,000 req/s"


def test_table_cells_follow_their_column_unit() -> None:
    assert numbers.cell(926.3533349999875, "duration_ms") == "926 ms"
    assert numbers.cell(1.0000000000000002, "max_utilisation") == "100%"
    assert numbers.cell(100.0, "throughput_gbps") == "100 Gbps"
    assert numbers.cell(12345, "id") == "12345"
    assert numbers.cell({"us-west-2": [12, 22]}, "instances") == "us-west-2: [12, 22]"
    assert (
        numbers.cell({"peak": 1.0000000000000002, "took_ms": 926.35}) == "peak: 1, took_ms: 926 ms"
    )


def test_cli_tables_print_data_not_markup_and_json_keeps_raw_values() -> None:
    import click

    rows = [
        {"id": 1, "diff": {"batch_id": ["a", "b"], "note": "[bold]x[/bold]"}, "took_ms": 926.35},
        {"id": 2, "diff": ":fire:", "took_ms": None},
    ]

    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    def show(as_json: bool) -> None:
        output(rows, as_json=as_json, columns=["id", "diff", "took_ms"], title="[red]r1[/red]")

    runner = CliRunner()
    table = runner.invoke(show, [], terminal_width=200).output
    assert 'batch_id: ["a", "b"]' in table
    assert "[bold]x[/bold]" in table
    assert ":fire:" in table  # no emoji code is read in data either
    assert "[red]r1[/red]" in table  # nor markup in a title, which may name an object
    assert "926 ms" in table
    raw = json.loads(runner.invoke(show, ["--json"]).output)
    assert raw == {"items": rows}  # raw values, and one shape for every list
