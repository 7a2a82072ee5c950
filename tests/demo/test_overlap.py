"""The demo's parts that play beside the incident: their value, or their error, reaches the
narrative when it asks, whichever thread they ran on."""

from __future__ import annotations

import threading

import pytest

from popcorn.demo.overlap import Track


def test_a_track_runs_on_its_own_thread_and_hands_its_value_over() -> None:
    gate = threading.Event()
    seen: list[str] = []

    def work() -> dict[str, str]:
        gate.wait(5)
        seen.append(threading.current_thread().name)
        return {"run": "done"}

    track = Track("ml", work)
    gate.set()  # the work waits for the caller: it did not run in the caller's thread
    assert track.result() == {"run": "done"}
    assert seen == ["demo-ml"]


def test_a_failing_track_raises_its_own_error_where_the_result_is_asked() -> None:
    def work() -> None:
        raise TimeoutError("the pipeline's run did not happen within 1s")

    track = Track("devicelab", work)
    with pytest.raises(TimeoutError, match="pipeline's run"):
        track.result()
