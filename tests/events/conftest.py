"""Shared event samples for the events tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from popcorn.events.formats import Event

# What Alertmanager 0.27 posts for a group with two firing alerts and one resolved.
ALERTMANAGER_SAMPLE: dict[str, Any] = {
    "receiver": "popcorn",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "CacheDiskFull",
                "instance": "oca-ams-017:9100",
                "job": "node",
                "severity": "critical",
                "site": "ams1",
                "mountpoint": "/cache",
            },
            "annotations": {
                "summary": "Cache disk on oca-ams-017 is 97% full",
                "runbook_url": "https://runbooks.example.net/cache-disk-full",
            },
            "startsAt": "2024-05-06T07:55:12.345678901Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_used_pct+%3E+95",
            "fingerprint": "8e1ac4f2d9b3c7a0",
        },
        {
            "status": "firing",
            "labels": {
                "alertname": "CacheDiskFull",
                "instance": "oca-ams-021:9100",
                "job": "node",
                "severity": "warning",
                "site": "ams1",
                "mountpoint": "/cache",
            },
            "annotations": {"summary": "Cache disk on oca-ams-021 is 91% full"},
            "startsAt": "2024-05-06T07:58:40Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_used_pct+%3E+90",
            "fingerprint": "0f3b6e2a91c4d5e8",
        },
        {
            "status": "resolved",
            "labels": {
                "alertname": "CacheDiskFull",
                "instance": "oca-ams-003:9100",
                "job": "node",
                "severity": "critical",
                "site": "ams1",
                "mountpoint": "/cache",
            },
            "annotations": {"summary": "Cache disk on oca-ams-003 is 96% full"},
            "startsAt": "2024-05-06T06:10:00Z",
            "endsAt": "2024-05-06T07:50:00+02:00",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_used_pct+%3E+95",
            "fingerprint": "77aa01bc3de4f590",
        },
    ],
    "groupLabels": {"alertname": "CacheDiskFull"},
    "commonLabels": {"alertname": "CacheDiskFull", "job": "node", "site": "ams1",
                     "mountpoint": "/cache"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager.ams1.example.net:9093",
    "version": "4",
    "groupKey": '{}:{alertname="CacheDiskFull"}',
    "truncatedAlerts": 0,
}  # fmt: skip


@pytest.fixture
def alertmanager_payload() -> dict[str, Any]:
    return copy.deepcopy(ALERTMANAGER_SAMPLE)


NOW = datetime(2024, 5, 6, 8, 0, tzinfo=UTC)


@pytest.fixture
def make_event() -> Callable[..., Event]:
    def make(
        type: str = "alertmanager.alert.firing",
        labels: dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Event:
        return Event(
            id=kwargs.pop("id", "ev-1"),
            type=type,
            source=kwargs.pop("source", "tests"),
            time=kwargs.pop("time", NOW),
            labels=labels or {},
            data=data or {},
            **kwargs,
        )

    return make
