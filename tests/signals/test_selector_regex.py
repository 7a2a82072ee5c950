"""Selector regexes run in RE2, anchored as in Prometheus: no catastrophic backtracking.

Regression test for issue #12 item 7: `{a=~"(.*)*Z"}` took 6.7 s of a worker's time for a
viewer's request.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from popcorn.signals import store
from popcorn.signals.promql import SelectorError, parse_selector

T0 = 1_767_225_600


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def _ingest(api: Any, value: str) -> None:
    body = {"series": [{"metric": "m", "labels": {"a": value}, "samples": [[T0, 1.0]]}]}
    assert api.post("/api/v1/signals/ingest", json=body, role="operator").status_code == 201


def test_a_backtracking_selector_answers_at_once_through_the_api(api: Any) -> None:
    _ingest(api, "a" * 5000)
    _ingest(api, "x" * 30 + "Z")
    started = time.monotonic()
    res = api.get(
        "/api/v1/signals/query",
        query_string={"query": '{a=~"(.*)*Z"}', "start": T0 - 60, "end": T0 + 60},
        role="viewer",
    )
    elapsed = time.monotonic() - started
    assert res.status_code == 200, res.json
    assert [s["labels"]["a"][-1] for s in res.json["series"]] == ["Z"]
    assert elapsed < 0.5
    listed = api.get('/api/v1/signals/series?match={a=~"(a|aa)*b"}', role="viewer")
    assert listed.status_code == 200 and listed.json["items"] == []


def test_matchers_are_anchored_at_both_ends_as_in_prometheus() -> None:
    sel = parse_selector('m{a=~"b.", c!~"x|y"}')
    assert sel.matches("m", {"a": "bc", "c": "z"})
    assert not sel.matches("m", {"a": "abc", "c": "z"})
    assert not sel.matches("m", {"a": "bcd", "c": "z"})
    assert not sel.matches("m", {"a": "bc", "c": "x"})
    assert parse_selector('m{a=~"x.y"}').matches("m", {"a": "x\ny"})


def test_a_pattern_re2_refuses_is_a_422_naming_the_matcher(api: Any) -> None:
    with pytest.raises(SelectorError, match="a=~"):
        parse_selector('m{a=~"(a)\\\\1"}')
    res = api.get("/api/v1/signals/query", query_string={"query": 'm{a=~"(?=x)y"}'}, role="viewer")
    assert res.status_code == 422
    assert "a=~" in res.json["error"]["message"]
    assert res.json["error"]["details"]["label"] == "a"
