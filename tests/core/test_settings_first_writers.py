"""Two admins setting the same installation setting for the first time at the same moment:
the second waits for the first and wins, instead of failing on the setting's key (on
PostgreSQL both see no row, both insert, and the second used to get a 500)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from popcorn.db import session_scope
from popcorn.events import settings as event_settings
from popcorn.signals import retention
from popcorn.traffic import service as traffic

Write = Callable[[Session, int], Any]
Read = Callable[[Session], Any]

WRITERS: dict[str, tuple[Write, Read]] = {
    "signals retention": (
        lambda s, days: retention.set_retention(session=s, days=days),
        lambda s: retention.get_settings_view(session=s)["retention_days"],
    ),
    "events retention": (
        lambda s, days: event_settings.update_settings(session=s, retention_days=days),
        lambda s: event_settings.get_settings_view(session=s)["retention_days"],
    ),
    "traffic poll interval": (
        lambda s, seconds: traffic.update_settings(session=s, changes={"poll_seconds": seconds}),
        lambda s: traffic.get_settings_view(session=s)["poll_seconds"],
    ),
}


@pytest.mark.parametrize("setting", list(WRITERS))
def test_two_first_writers_of_a_setting_both_succeed(setting: str) -> None:
    write, read = WRITERS[setting]
    failures: list[BaseException] = []
    answers: list[Any] = []

    def second_writer() -> None:
        try:
            with session_scope() as session:
                answers.append(write(session, 9))
        except BaseException as exc:  # the assertion below reports it
            failures.append(exc)

    with session_scope() as first:
        write(first, 7)  # written, not yet committed
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.5)  # the second writer is now waiting on the first's row
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert failures == []
    assert len(answers) == 1
    with session_scope() as session:
        assert read(session) == 9


def test_a_setting_put_back_to_its_default_reads_as_the_default() -> None:
    with session_scope() as session:
        traffic.update_settings(session=session, changes={"poll_seconds": 30.0})
    with session_scope() as session:
        view = traffic.update_settings(session=session, changes={"poll_seconds": None})
    assert view["poll_seconds"] == traffic.SETTINGS["poll_seconds"]
