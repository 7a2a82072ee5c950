"""Example jobs shipped with the domain: the demo runs them and the guide shows them.

`WORDCOUNT` is a pyspark script in the convention Spark jobs follow here: parameters
arrive as JSON in `sys.argv[1]`, and each line printed as `POPCORN_OUTPUT {...}` adds to
the run's outputs.
"""

from __future__ import annotations

import json
from typing import Any

WORDCOUNT = """\
import json
import sys

from pyspark.sql import SparkSession

params = json.loads(sys.argv[1])
spark = SparkSession.builder.appName("popcorn-wordcount").getOrCreate()
lines = spark.sparkContext.textFile(params["path"])
counts = (
    lines.flatMap(lambda line: line.split())
    .map(lambda word: (word.lower(), 1))
    .reduceByKey(lambda a, b: a + b)
)
top = counts.takeOrdered(int(params.get("top", 5)), key=lambda pair: (-pair[1], pair[0]))
total = counts.map(lambda pair: pair[1]).sum()
print("POPCORN_OUTPUT " + json.dumps({"words": total, "top": [[w, c] for w, c in top]}))
spark.stop()
"""


def _cell(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": tags or []},
        "outputs": [],
        "source": source,
    }


def notebook(*cells: dict[str, Any]) -> dict[str, Any]:
    """A minimal nbformat 4 notebook for the Python 3 kernel."""
    return {
        "nbformat": 4,
        "nbformat_minor": 4,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": list(cells),
    }


def daily_report() -> dict[str, Any]:
    """A parameterised report: a summary of a day's (generated) traffic, a plot, outputs."""
    return notebook(
        _cell("region = 'eu-west'\nday = '2026-01-01'\npeak_gbps = 120.0", ["parameters"]),
        _cell(
            "import math\n"
            "hours = list(range(24))\n"
            "load = [round(peak_gbps * (0.55 + 0.45 * math.sin((h - 6) / 24 * 2 * math.pi)), 1)"
            " for h in hours]\n"
            "print(f'{region} on {day}: peak {max(load)} Gbit/s at {load.index(max(load))}:00')"
        ),
        _cell(
            "{'region': region, 'peak': max(load), 'mean': round(sum(load) / 24, 1)}", ["outputs"]
        ),
    )


def failing_check() -> dict[str, Any]:
    """A check that fails in its third cell, to show where a failed run stopped."""
    return notebook(
        _cell("threshold = 0.95", ["parameters"]),
        _cell("ratios = {'ams1': 0.99, 'lhr2': 0.91, 'fra1': 0.97}"),
        _cell(
            "low = {site: r for site, r in ratios.items() if r < threshold}\n"
            "assert not low, f'cache hit ratio below {threshold}: {low}'"
        ),
        _cell("print('all sites healthy')"),
    )


def as_json(nb: dict[str, Any]) -> str:
    return json.dumps(nb, indent=1)
