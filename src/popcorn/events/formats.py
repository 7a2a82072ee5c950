"""Incoming events in one internal shape.

Popcorn accepts events as CloudEvents 1.0 (structured JSON, single or batch)
and as Prometheus Alertmanager webhooks (payload version 4). Both become
`Event`, the only shape rules and actions ever see. Every parser rejects bad
input with `EventFormatError`, which names the offending field path (for
example ``alerts[2].labels``), so a client learns exactly what to fix; no JSON
input makes a parser fail in any other way.

Alertmanager alerts get a deterministic id (fingerprint, start time and
status) and one source, ``alertmanager``, whichever replica sent them: a
re-delivered notification, or the same one from every replica of an HA
Alertmanager cluster (each with its own ``externalURL``), yields the same
(source, id) and is deduplicated downstream. The sender's ``externalURL``
stays in ``data``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from popcorn.errors import InvalidInput

CLOUDEVENTS_CONTENT_TYPE: Final = "application/cloudevents+json"
CLOUDEVENTS_BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
ALERTMANAGER_SOURCE: Final = "alertmanager"

_CE_REQUIRED: Final = ("id", "source", "type")
_CE_OPTIONAL_STR: Final = ("subject", "datacontenttype", "dataschema")
_CE_KNOWN: Final = frozenset(
    ("specversion", *_CE_REQUIRED, *_CE_OPTIONAL_STR, "time", "data", "data_base64")
)
_EXTENSION_NAME = re.compile(r"[a-z0-9]+")
_INT32 = (-(2**31), 2**31 - 1)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
# Alertmanager's "no end time yet" value.
_ZERO_TIME_PREFIX: Final = "0001-01-01T00:00:00"
_TOP_LEVEL: Final = ("id", "type", "source", "subject", "time", "datacontenttype", "dataschema")


class EventFormatError(ValueError):
    """An incoming payload is not a valid event; `path` names the field at fault."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path or 'body'}: {reason}")

    def as_invalid_input(self) -> InvalidInput:
        """The same refusal as the API's 422, naming the field."""
        return InvalidInput(str(self), details={"path": self.path, "reason": self.reason})


class _Missing:
    """Marker for a field an event does not have (distinct from JSON null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


@dataclass(slots=True, kw_only=True)
class Event:
    """One event, whatever format it arrived in.

    `labels` are short string attributes meant for routing (Alertmanager alert
    labels, CloudEvents extension attributes); `data` is the payload. Paths such
    as ``labels.severity`` or ``data.disk.used`` name fields for rules and
    templates; `fields()` lists every such path with its value.
    """

    id: str
    type: str
    source: str
    subject: str | None = None
    time: datetime
    data: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    datacontenttype: str | None = None
    dataschema: str | None = None
    _flat: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("id", "type", "source"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise EventFormatError(name, "must be a non-empty string")
        for name in ("subject", "datacontenttype", "dataschema"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise EventFormatError(name, "must be a string")
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise EventFormatError("time", "must be a timezone-aware datetime")
        if not isinstance(self.data, dict):
            raise EventFormatError("data", "must be an object")
        _check_string_map(self.labels, "labels")

    def get(self, path: str) -> Any:
        """The value at a field path, or `MISSING`; agrees with `fields()`."""
        if path in _TOP_LEVEL:
            value = getattr(self, path)
            return MISSING if value is None else value
        head, _, rest = path.partition(".")
        if head == "labels":
            return self.labels.get(rest, MISSING) if rest else self.labels
        if head == "data":
            return resolve_path(self.data, rest.split(".")) if rest else self.data
        return MISSING

    def fields(self) -> dict[str, Any]:
        """Every path a rule can name, with its value (computed once per event)."""
        if self._flat is None:
            flat: dict[str, Any] = {
                name: getattr(self, name) for name in _TOP_LEVEL if getattr(self, name) is not None
            }
            flat["labels"] = self.labels
            for key, value in self.labels.items():
                flat["labels." + key] = value
            flat["data"] = self.data
            for path, value in _flatten(self.data, "data"):
                # Keys containing dots can collide with nested paths; `get` decides.
                flat[path] = self.get(path) if path in flat else value
            self._flat = flat
        return self._flat

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for storage; `Event.from_dict` reads it back."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": format_time(self.time),
            "data": self.data,
            "labels": self.labels,
        }
        if self.datacontenttype is not None:
            out["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> Event:
        """Rebuild an event from `to_dict` output, validating it like any input."""
        if not isinstance(obj, dict):
            raise EventFormatError("", "must be an object")
        unknown = sorted(set(obj) - {*_TOP_LEVEL, "data", "labels"})
        if unknown:
            raise EventFormatError(str(unknown[0]), "unknown field")
        time = obj.get("time")
        return cls(
            id=_required_str(obj, "id", ""),
            type=_required_str(obj, "type", ""),
            source=_required_str(obj, "source", ""),
            subject=_optional_str(obj, "subject", ""),
            time=parse_time(time, "time") if time is not None else datetime.now(UTC),
            data=_object(obj.get("data", {}), "data"),
            labels=_string_map(obj.get("labels", {}), "labels"),
            datacontenttype=_optional_str(obj, "datacontenttype", ""),
            dataschema=_optional_str(obj, "dataschema", ""),
        )


def resolve_path(obj: Any, parts: list[str]) -> Any:
    """Walk dict keys and list indexes; a key that itself contains dots also matches."""
    if not parts:
        return obj
    head = parts[0]
    if isinstance(obj, dict):
        if head in obj:
            found = resolve_path(obj[head], parts[1:])
            if found is not MISSING or len(parts) == 1:
                return found
        for j in range(2, len(parts) + 1):
            key = ".".join(parts[:j])
            if key in obj:
                found = resolve_path(obj[key], parts[j:])
                if found is not MISSING:
                    return found
        return MISSING
    if isinstance(obj, list) and head.isdecimal() and int(head) < len(obj):
        return resolve_path(obj[int(head)], parts[1:])
    return MISSING


def _flatten(root: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    stack: list[tuple[str, Any]] = [(prefix, root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            items: list[tuple[str, Any]] = [(f"{path}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{path}.{i}", v) for i, v in enumerate(value)]
        else:
            continue
        yield from items
        stack.extend(reversed(items))


# --- shared validation helpers -------------------------------------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventFormatError(path, f"must be an object, got {_describe(value)}")
    return value


def _check_string_map(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise EventFormatError(path, f"must be an object, got {_describe(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise EventFormatError(path, "keys must be non-empty strings")
        if not isinstance(item, str):
            raise EventFormatError(_join(path, key), f"must be a string, got {_describe(item)}")


def _string_map(value: Any, path: str) -> dict[str, str]:
    _check_string_map(value, path)
    return dict(value)


def _required_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    if key not in obj or obj[key] is None:
        raise EventFormatError(_join(path, key), "is required")
    value = obj[key]
    if not isinstance(value, str):
        raise EventFormatError(_join(path, key), f"must be a string, got {_describe(value)}")
    if not value:
        raise EventFormatError(_join(path, key), "must not be empty")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventFormatError(_join(path, key), f"must be a string, got {_describe(value)}")
    return value


def parse_time(value: Any, path: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (sub-microsecond digits dropped)."""
    if not isinstance(value, str):
        raise EventFormatError(
            path, f"must be an RFC 3339 timestamp string, got {_describe(value)}"
        )
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise EventFormatError(path, f"not an RFC 3339 timestamp: {value[:64]!r}")
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    try:
        if zulu:
            tz: timezone = UTC
        else:
            offset = timedelta(hours=int(oh), minutes=int(om))
            tz = timezone(-offset if sign == "-" else offset)
        micro = int((frac or "0")[:6].ljust(6, "0"))
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError as exc:
        raise EventFormatError(path, f"invalid timestamp {value[:64]!r}: {exc}") from None


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as CloudEvents and Alertmanager write it."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- CloudEvents 1.0 ---------------------------------------------------------------


def _is_json_media_type(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def parse_cloudevent(obj: Any, path: str = "") -> Event:
    """One CloudEvent in structured JSON mode.

    Extension attributes become labels (as strings); `data` becomes the event
    data if it is an object, otherwise it is kept under ``data.value``.
    """
    if not isinstance(obj, dict):
        raise EventFormatError(path, f"a CloudEvent must be an object, got {_describe(obj)}")
    if "specversion" not in obj:
        raise EventFormatError(_join(path, "specversion"), "is required")
    if obj["specversion"] != "1.0":
        raise EventFormatError(
            _join(path, "specversion"),
            f"unsupported CloudEvents version {obj['specversion']!r} (expected '1.0')",
        )
    ident, source, ev_type = (_required_str(obj, key, path) for key in _CE_REQUIRED)
    subject, content_type, schema = (_optional_str(obj, key, path) for key in _CE_OPTIONAL_STR)
    if subject == "":
        raise EventFormatError(_join(path, "subject"), "must not be empty")
    raw_time = obj.get("time")
    when = datetime.now(UTC) if raw_time is None else parse_time(raw_time, _join(path, "time"))

    if obj.get("data") is not None and obj.get("data_base64") is not None:
        raise EventFormatError(path, "data and data_base64 are mutually exclusive")
    data: dict[str, Any] = {}
    if obj.get("data_base64") is not None:
        data = _decode_base64_data(obj["data_base64"], content_type, _join(path, "data_base64"))
    elif obj.get("data") is not None:
        payload = obj["data"]
        data = payload if isinstance(payload, dict) else {"value": payload}

    labels: dict[str, str] = {}
    for key, value in obj.items():
        if key in _CE_KNOWN:
            continue
        if not isinstance(key, str) or not _EXTENSION_NAME.fullmatch(key):
            raise EventFormatError(
                _join(path, str(key)),
                "extension attribute names must be lowercase letters and digits",
            )
        if value is None:
            continue
        labels[key] = _extension_value(value, _join(path, key))
    return Event(
        id=ident,
        type=ev_type,
        source=source,
        subject=subject,
        time=when,
        data=data,
        labels=labels,
        datacontenttype=content_type,
        dataschema=schema,
    )


def _decode_base64_data(value: Any, content_type: str | None, path: str) -> dict[str, Any]:
    if not isinstance(value, str):
        raise EventFormatError(path, f"must be a base64 string, got {_describe(value)}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EventFormatError(path, "not valid base64") from None
    if content_type is not None and _is_json_media_type(content_type):
        try:
            decoded = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise EventFormatError(path, f"not valid JSON for {content_type}") from None
        return decoded if isinstance(decoded, dict) else {"value": decoded}
    return {"base64": value}


def _extension_value(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT32[0] <= value <= _INT32[1]:
            raise EventFormatError(path, "integer extension values must fit in 32 bits")
        return str(value)
    if isinstance(value, str):
        return value
    raise EventFormatError(
        path, f"extension values must be strings, integers or booleans, got {_describe(value)}"
    )


def parse_cloudevents_batch(obj: Any) -> list[Event]:
    """A CloudEvents JSON batch: an array of structured events (possibly empty)."""
    if not isinstance(obj, list):
        raise EventFormatError("", f"a CloudEvents batch must be an array, got {_describe(obj)}")
    return [parse_cloudevent(item, f"[{i}]") for i, item in enumerate(obj)]


# --- Prometheus Alertmanager webhook, version 4 ----------------------------------


def parse_alertmanager(obj: Any) -> list[Event]:
    """One event per alert, typed ``alertmanager.alert.firing`` or ``.resolved``.

    Labels are the alert's labels; data holds the alert (annotations, times,
    generator URL, fingerprint) plus the notification's group fields.
    """
    body = _object(obj, "")
    if body.get("version") != "4":
        raise EventFormatError(
            "version",
            f"unsupported Alertmanager payload version {body.get('version')!r} (expected '4')",
        )
    _status(body.get("status"), "status")
    receiver = _optional_str(body, "receiver", "") or ""
    group_key = _optional_str(body, "groupKey", "") or ""
    external_url = _optional_str(body, "externalURL", "") or ""
    group_labels = _string_map(body.get("groupLabels") or {}, "groupLabels")
    common_labels = _string_map(body.get("commonLabels") or {}, "commonLabels")
    common_annotations = _string_map(body.get("commonAnnotations") or {}, "commonAnnotations")
    truncated = body.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise EventFormatError("truncatedAlerts", "must be a non-negative integer")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise EventFormatError("alerts", f"must be an array, got {_describe(alerts)}")

    group = {
        "receiver": receiver,
        "groupKey": group_key,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": external_url,
        "truncatedAlerts": truncated,
    }
    return [_alert_event(alert, f"alerts[{i}]", group) for i, alert in enumerate(alerts)]


def _status(value: Any, path: str) -> str:
    if value not in ("firing", "resolved"):
        raise EventFormatError(path, f"must be 'firing' or 'resolved', got {value!r:.64}")
    return str(value)


def _alert_event(alert: Any, path: str, group: dict[str, Any]) -> Event:
    alert = _object(alert, path)
    status = _status(alert.get("status"), _join(path, "status"))
    labels = _string_map(alert.get("labels"), _join(path, "labels"))
    annotations = _string_map(alert.get("annotations") or {}, _join(path, "annotations"))
    starts_raw = alert.get("startsAt")
    starts = parse_time(starts_raw, _join(path, "startsAt"))
    ends_raw = alert.get("endsAt")
    ends = None
    if ends_raw is not None and not (
        isinstance(ends_raw, str) and ends_raw.startswith(_ZERO_TIME_PREFIX)
    ):
        ends = parse_time(ends_raw, _join(path, "endsAt"))
    generator = _optional_str(alert, "generatorURL", path) or ""
    fingerprint = _optional_str(alert, "fingerprint", path) or _label_fingerprint(labels)

    digest = hashlib.sha256(
        f"{fingerprint}\x00{format_time(starts)}\x00{status}".encode()
    ).hexdigest()
    data = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_raw,
        "endsAt": ends_raw if isinstance(ends_raw, str) else "",
        "generatorURL": generator,
        "fingerprint": fingerprint,
        **group,
    }
    return Event(
        id=f"am-{digest[:32]}",
        type=f"alertmanager.alert.{status}",
        # Not the replica's externalURL: HA replicas all send the same alert.
        source=ALERTMANAGER_SOURCE,
        subject=labels.get("alertname") or None,
        time=ends if status == "resolved" and ends is not None else starts,
        data=data,
        labels=labels,
        datacontenttype="application/json",
    )


def _label_fingerprint(labels: dict[str, str]) -> str:
    """A stable stand-in for senders that omit the fingerprint."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- entry points -------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_payload(obj: Any, content_type: str | None = None) -> list[Event]:
    """Events from decoded JSON, by content type or, for plain JSON, by shape."""
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media == CLOUDEVENTS_CONTENT_TYPE:
        return [parse_cloudevent(obj)]
    if media == CLOUDEVENTS_BATCH_CONTENT_TYPE:
        return parse_cloudevents_batch(obj)
    if media != "application/json":
        raise EventFormatError("", f"unsupported content type {media!r}")
    if isinstance(obj, list):
        return parse_cloudevents_batch(obj)
    if isinstance(obj, dict):
        if "specversion" in obj:
            return [parse_cloudevent(obj)]
        if "alerts" in obj and "version" in obj:
            return parse_alertmanager(obj)
    raise EventFormatError(
        "",
        "unrecognised payload: expected a CloudEvent (specversion), a CloudEvents batch "
        "(array) or an Alertmanager webhook (version, alerts)",
    )


def parse_body(body: bytes | str, content_type: str | None = None) -> list[Event]:
    """Events from a raw HTTP request body."""
    try:
        obj = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise EventFormatError("", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventFormatError("", f"not valid JSON: {exc}") from None
    return parse_payload(obj, content_type)
