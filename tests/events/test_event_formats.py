"""Incoming payloads: CloudEvents and Alertmanager become `Event`s or clear errors."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from popcorn.events.formats import (
    MISSING,
    Event,
    EventFormatError,
    parse_alertmanager,
    parse_body,
    parse_cloudevent,
    parse_cloudevents_batch,
    parse_payload,
)

CE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "a1b2",
    "source": "/popcorn/inventory",
    "type": "net.popcorn.inventory.device.failed",
    "subject": "oca-ams-017",
    "time": "2024-05-06T07:55:12.5+02:00",
    "datacontenttype": "application/json",
    "data": {"component": {"kind": "disk", "slot": 4}, "reason": "smart"},
    "site": "ams1",
    "attempt": 3,
    "urgent": True,
}


def ce(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(CE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --- CloudEvents -----------------------------------------------------------------


def test_cloudevent_structured_fields() -> None:
    event = parse_cloudevent(ce())
    assert event.id == "a1b2"
    assert event.type == "net.popcorn.inventory.device.failed"
    assert event.source == "/popcorn/inventory"
    assert event.subject == "oca-ams-017"
    assert event.time == datetime(2024, 5, 6, 5, 55, 12, 500000, tzinfo=UTC)
    assert event.time.utcoffset() == timedelta(hours=2)
    assert event.data["component"] == {"kind": "disk", "slot": 4}
    # Extension attributes become string labels.
    assert event.labels == {"site": "ams1", "attempt": "3", "urgent": "true"}


def test_cloudevent_minimal_gets_receipt_time_and_empty_data() -> None:
    before = datetime.now(UTC)
    event = parse_cloudevent({"specversion": "1.0", "id": "1", "source": "s", "type": "t"})
    assert event.data == {} and event.labels == {} and event.subject is None
    assert event.time >= before


def test_cloudevent_non_object_data_is_kept_under_value() -> None:
    assert parse_cloudevent(ce(data="plain text")).data == {"value": "plain text"}
    assert parse_cloudevent(ce(data=[1, 2])).data == {"value": [1, 2]}


def test_cloudevent_data_base64() -> None:
    event = parse_cloudevent(ce(data=None, data_base64="eyJrIjogMX0="))  # {"k": 1}
    assert event.data == {"k": 1}
    binary = parse_cloudevent(ce(data=None, data_base64="AAEC", datacontenttype="image/png"))
    assert binary.data == {"base64": "AAEC"}


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"specversion": None}, "specversion", "required"),
        ({"specversion": "0.3"}, "specversion", "unsupported"),
        ({"specversion": 1.0}, "specversion", "unsupported"),
        ({"id": None}, "id", "required"),
        ({"id": ""}, "id", "empty"),
        ({"source": 5}, "source", "string"),
        ({"type": None}, "type", "required"),
        ({"subject": ""}, "subject", "empty"),
        ({"time": "yesterday"}, "time", "RFC 3339"),
        ({"time": "2024-05-06T07:55:12"}, "time", "RFC 3339"),  # no offset
        ({"time": "2024-02-30T00:00:00Z"}, "time", "invalid"),
        ({"datacontenttype": 7}, "datacontenttype", "string"),
        ({"data_base64": "%%%"}, "", "mutually exclusive"),
        ({"Site": "x"}, "Site", "lowercase"),
        ({"site_name": "x"}, "site_name", "lowercase"),
        ({"site": {"nested": 1}}, "site", "extension values"),
        ({"site": 1.5}, "site", "extension values"),
        ({"attempt": 2**40}, "attempt", "32 bits"),
    ],
)
def test_cloudevent_invalid(changes: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(EventFormatError) as info:
        parse_cloudevent(ce(**changes))
    assert info.value.path == path
    assert words in str(info.value)


def test_cloudevent_bad_base64_names_field() -> None:
    with pytest.raises(EventFormatError) as info:
        parse_cloudevent(ce(data=None, data_base64="not base64!"))
    assert info.value.path == "data_base64"


def test_cloudevents_batch() -> None:
    events = parse_cloudevents_batch([ce(), ce(id="a1b3", type="other")])
    assert [e.id for e in events] == ["a1b2", "a1b3"]
    assert parse_cloudevents_batch([]) == []


def test_cloudevents_batch_error_names_item() -> None:
    with pytest.raises(EventFormatError) as info:
        parse_cloudevents_batch([ce(), ce(source=None)])
    assert info.value.path == "[1].source"
    with pytest.raises(EventFormatError, match="array"):
        parse_cloudevents_batch(ce())


def test_parse_body_by_content_type() -> None:
    single = parse_body(json.dumps(ce()), "application/cloudevents+json; charset=utf-8")
    assert len(single) == 1
    batch = parse_body(
        json.dumps([ce(), ce(id="2")]).encode(), "application/cloudevents-batch+json"
    )
    assert [e.id for e in batch] == ["a1b2", "2"]
    with pytest.raises(EventFormatError, match="array"):
        parse_body(json.dumps(ce()), "application/cloudevents-batch+json")
    with pytest.raises(EventFormatError, match="content type"):
        parse_body("{}", "text/plain")


def test_parse_body_detects_shape_of_plain_json(alertmanager_payload: dict[str, Any]) -> None:
    assert parse_body(json.dumps(ce()))[0].id == "a1b2"
    assert len(parse_body(json.dumps([ce()]), "application/json")) == 1
    assert len(parse_body(json.dumps(alertmanager_payload), "application/json")) == 3
    with pytest.raises(EventFormatError, match="unrecognised"):
        parse_body('{"hello": "world"}')


@pytest.mark.parametrize("body", ["", "{", "NaN", '{"a": Infinity}', "[" * 100_000, b"\xff\xfe"])
def test_parse_body_rejects_bad_json(body: str | bytes) -> None:
    with pytest.raises(EventFormatError):
        parse_body(body)


# --- Alertmanager ------------------------------------------------------------------


def test_alertmanager_one_event_per_alert(alertmanager_payload: dict[str, Any]) -> None:
    events = parse_alertmanager(alertmanager_payload)
    assert [e.type for e in events] == [
        "alertmanager.alert.firing",
        "alertmanager.alert.firing",
        "alertmanager.alert.resolved",
    ]
    first, _, resolved = events
    assert first.source == "alertmanager"
    assert first.data["externalURL"] == "http://alertmanager.ams1.example.net:9093"
    assert first.subject == "CacheDiskFull"
    assert first.labels["instance"] == "oca-ams-017:9100"
    assert first.time == datetime(2024, 5, 6, 7, 55, 12, 345678, tzinfo=UTC)
    assert first.data["annotations"]["summary"].startswith("Cache disk on oca-ams-017")
    assert first.data["groupKey"] == '{}:{alertname="CacheDiskFull"}'
    assert first.data["receiver"] == "popcorn"
    assert first.data["fingerprint"] == "8e1ac4f2d9b3c7a0"
    # A resolved alert happened when it ended.
    assert resolved.time == datetime(2024, 5, 6, 5, 50, tzinfo=UTC)


def test_alertmanager_ids_are_deterministic(alertmanager_payload: dict[str, Any]) -> None:
    first = [e.id for e in parse_alertmanager(alertmanager_payload)]
    again = [e.id for e in parse_alertmanager(copy.deepcopy(alertmanager_payload))]
    assert first == again
    assert len(set(first)) == 3
    # The same alert resolving is a new event; a new firing episode too.
    alertmanager_payload["alerts"][0]["status"] = "resolved"
    assert parse_alertmanager(alertmanager_payload)[0].id != first[0]
    alertmanager_payload["alerts"][0]["status"] = "firing"
    alertmanager_payload["alerts"][0]["startsAt"] = "2024-05-06T09:00:00Z"
    assert parse_alertmanager(alertmanager_payload)[0].id != first[0]


def test_alertmanager_same_instant_in_another_offset_is_the_same_event(
    alertmanager_payload: dict[str, Any],
) -> None:
    before = parse_alertmanager(alertmanager_payload)[1].id
    alertmanager_payload["alerts"][1]["startsAt"] = "2024-05-06T09:58:40+02:00"
    assert parse_alertmanager(alertmanager_payload)[1].id == before


def test_alertmanager_without_fingerprint_uses_labels(alertmanager_payload: dict[str, Any]) -> None:
    del alertmanager_payload["alerts"][0]["fingerprint"]
    one = parse_alertmanager(alertmanager_payload)[0]
    two = parse_alertmanager(copy.deepcopy(alertmanager_payload))[0]
    assert one.id == two.id


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p.update(status="pending"), "status"),
        (lambda p: p.update(alerts={}), "alerts"),
        (lambda p: p["alerts"].append("oops"), "alerts[3]"),
        (lambda p: p["alerts"][2].update(labels=["a"]), "alerts[2].labels"),
        (lambda p: p["alerts"][2]["labels"].update(code=500), "alerts[2].labels.code"),
        (lambda p: p["alerts"][1].update(status="silenced"), "alerts[1].status"),
        (lambda p: p["alerts"][0].pop("startsAt"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].update(endsAt="soon"), "alerts[0].endsAt"),
        (lambda p: p["alerts"][0].update(annotations="x"), "alerts[0].annotations"),
        (lambda p: p.update(commonLabels={"a": None}), "commonLabels.a"),
        (lambda p: p.update(truncatedAlerts=-1), "truncatedAlerts"),
    ],
)
def test_alertmanager_invalid(alertmanager_payload: dict[str, Any], mutate: Any, path: str) -> None:
    mutate(alertmanager_payload)
    with pytest.raises(EventFormatError) as info:
        parse_alertmanager(alertmanager_payload)
    assert info.value.path == path
    assert path in str(info.value)


# --- the Event shape -----------------------------------------------------------------


def test_fields_flat_view_and_get_agree() -> None:
    event = Event(
        id="1",
        type="t",
        source="s",
        time=datetime(2024, 1, 1, tzinfo=UTC),
        labels={"app.kubernetes.io/name": "edge", "severity": "page"},
        data={"disk": {"used": 97, "mounts": ["/", {"path": "/cache"}]}, "a.b": 1, "a": {"c": 2}},
    )
    flat = event.fields()
    assert flat["labels.app.kubernetes.io/name"] == "edge"
    assert flat["data.disk.used"] == 97
    assert flat["data.disk.mounts.1.path"] == "/cache"
    assert flat["data.a.b"] == 1 and flat["data.a.c"] == 2
    assert "subject" not in flat
    for path, value in flat.items():
        assert event.get(path) == value
    assert event.get("data.disk.nothing") is MISSING
    assert event.get("subject") is MISSING


def test_event_round_trips_through_dict(alertmanager_payload: dict[str, Any]) -> None:
    for event in parse_alertmanager(alertmanager_payload):
        stored = json.loads(json.dumps(event.to_dict()))
        assert Event.from_dict(stored) == event


def test_event_rejects_naive_time_and_non_string_labels() -> None:
    with pytest.raises(EventFormatError, match="time"):
        Event(id="1", type="t", source="s", time=datetime(2024, 1, 1))
    with pytest.raises(EventFormatError, match=r"labels\.x"):
        Event(id="1", type="t", source="s", time=datetime.now(UTC), labels={"x": 1})  # type: ignore[dict-item]


# --- no crash on any JSON ------------------------------------------------------------


STRINGS = [
    "",
    "1.0",
    "4",
    "firing",
    "resolved",
    "2024-01-01T00:00:00Z",
    "x",
    "0001-01-01T00:00:00Z",
]
KEYS = [
    *("specversion", "id", "source", "type", "time", "data", "data_base64", "alerts"),
    *("version", "status", "labels", "startsAt", "endsAt", "fingerprint", "ext", "X"),
]


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**31, 2**70, 1.5, -0.0])
    if kind in (3, 4):
        return rng.choice(
            [
                "",
                "1.0",
                "4",
                "firing",
                "resolved",
                "2024-01-01T00:00:00Z",
                "x",
                "0001-01-01T00:00:00Z",
            ]
        )
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): _random_json(rng, depth + 1) for _ in range(rng.randrange(6))}


def _mutations(rng: random.Random, value: Any) -> Any:
    """A valid payload with one random node replaced by random JSON."""
    value = copy.deepcopy(value)
    node = value
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return value
        key = rng.choice(keys)
        child = node[key]
        if isinstance(child, dict | list) and child and rng.random() < 0.6:
            node = child
            continue
        node[key] = _random_json(rng)
        return value


def test_parsers_never_crash_on_random_json(alertmanager_payload: dict[str, Any]) -> None:
    rng = random.Random(20240506)
    samples = [_random_json(rng) for _ in range(1500)]
    samples += [_mutations(rng, alertmanager_payload) for _ in range(1500)]
    samples += [_mutations(rng, ce()) for _ in range(1500)]
    samples += [_mutations(rng, [ce(), ce(id="2")]) for _ in range(500)]
    for sample in samples:
        for parse in (parse_payload, parse_cloudevent, parse_cloudevents_batch, parse_alertmanager):
            try:
                events = parse(sample)
            except EventFormatError:
                continue
            for event in events if isinstance(events, list) else [events]:
                assert isinstance(event, Event)
                event.fields()
                json.dumps(event.to_dict())
