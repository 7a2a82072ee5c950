"""Parts of the demo that play beside the incident rather than after it.

The ML training run, the notebook jobs and the device lab's builds wait on the platform's
workers and device agents, not on the incident: each plays on its own thread from the
moment what it needs exists, and the narrative tells it when it reaches it (the lines stay
in order). The demo then lasts as long as its longest part, not the sum of its parts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Track(Generic[T]):
    """`work` running on a daemon thread (a demo stopped early does not wait for it)."""

    def __init__(self, name: str, work: Callable[[], T]):
        self.name = name
        self.seconds = 0.0  # how long the work ran, once it ended
        self._work = work
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._play, name=f"demo-{name}", daemon=True)
        self._thread.start()

    def _play(self) -> None:
        started = time.monotonic()
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the thread that asks for the result
            self._error = exc
        finally:
            self.seconds = time.monotonic() - started

    def result(self) -> T:
        """Wait for the work to end; its value, or its exception raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return cast(T, self._value)
