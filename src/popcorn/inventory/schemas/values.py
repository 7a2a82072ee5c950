"""Field types of inventory inputs: quantities with units, addresses, names, tags.

Quantities take units ("100G", "3.84TB", "1.1kW"); a wrong unit is an error on that field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    StringConstraints,
)

# --- units -------------------------------------------------------------------

_QUANTITY = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([A-Za-z/]*)\s*$")


def _quantity(
    value: Any, units: Mapping[str, float], what: str, default_unit: str, shown: str
) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} such as 10 or '10{default_unit}'")
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a {what} (e.g. '10{default_unit}')")
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        return number
    factor = units.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown unit {unit!r} for a {what} (use {shown})")
    return number * factor


_SPEED_UNITS = {
    "k": 1,
    "kbps": 1,
    "kb/s": 1,
    "kbit/s": 1,
    "m": 1e3,
    "mbps": 1e3,
    "mb/s": 1e3,
    "mbit/s": 1e3,
    "g": 1e6,
    "gbps": 1e6,
    "gb/s": 1e6,
    "gbit/s": 1e6,
    "t": 1e9,
    "tbps": 1e9,
    "tb/s": 1e9,
    "tbit/s": 1e9,
}
_THROUGHPUT_UNITS = {k: v / 1e6 for k, v in _SPEED_UNITS.items()}
_STORAGE_UNITS = {
    "gb": 1e-3,
    "tb": 1.0,
    "pb": 1e3,
    "gib": 2**30 / 1e12,
    "tib": 2**40 / 1e12,
    "pib": 2**50 / 1e12,
}
_POWER_UNITS = {"w": 1, "kw": 1000}


def _speed_kbps(value: Any) -> int:
    kbps = _quantity(value, _SPEED_UNITS, "speed", "G", "kbps, Mbps, Gbps or Tbps")
    if kbps < 0:
        raise ValueError("speed cannot be negative")
    return round(kbps)


def _gbps(value: Any) -> float:
    gbps = _quantity(value, _THROUGHPUT_UNITS, "throughput", "Gbps", "Mbps, Gbps or Tbps")
    if gbps < 0:
        raise ValueError("throughput cannot be negative")
    return gbps


def _terabytes(value: Any) -> float:
    tb = _quantity(value, _STORAGE_UNITS, "storage size", "TB", "GB, TB or PB")
    if tb < 0:
        raise ValueError("storage cannot be negative")
    return round(tb, 6)


def _watts(value: Any) -> int:
    watts = _quantity(value, _POWER_UNITS, "power draw", "W", "W or kW")
    if watts < 1:
        raise ValueError("power draw must be at least 1 W")
    return round(watts)


def _u_height(value: float) -> float:
    if value < 0 or value > 100 or (value * 2) != int(value * 2):
        raise ValueError("u_height must be a multiple of 0.5 between 0 and 100")
    return value


_DOTTED_QUAD = re.compile(
    r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
)


def _ipv4(value: str) -> str:
    if _DOTTED_QUAD.match(value):
        return value  # the common case, without building an address object
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 address") from exc
    if iface.version != 4:
        raise ValueError(f"{value!r} is not an IPv4 address")
    return str(iface) if "/" in value else str(iface.ip)


def _ipv6(value: str) -> str:
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv6 address") from exc
    if iface.version != 6:
        raise ValueError(f"{value!r} is not an IPv6 address")
    return str(iface) if "/" in value else str(iface.ip)


_MAC = re.compile(r"^[0-9A-Fa-f]{2}([-:.]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def _mac(value: str) -> str:
    digits = re.sub(r"[-:.]", "", value)
    if not _MAC.match(value) or len(digits) != 12:
        raise ValueError(f"{value!r} is not a MAC address")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2)).upper()


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError("country must be a two-letter ISO 3166 code such as NL")
    return value.upper()


def _tags(value: Any) -> Any:
    """CSV cells hold tags as 'a,b'; JSON and YAML as lists."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def blank_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Slug = Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_.]+$", min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Text100 = Annotated[str, StringConstraints(max_length=100)]
Text200 = Annotated[str, StringConstraints(max_length=200)]
OptName = Annotated[Name | None, BeforeValidator(blank_none)]
Speed = Annotated[
    int | None, BeforeValidator(lambda v: None if blank_none(v) is None else _speed_kbps(v))
]
Gbps = Annotated[
    float | None, BeforeValidator(lambda v: None if blank_none(v) is None else _gbps(v))
]
Terabytes = Annotated[
    float | None, BeforeValidator(lambda v: None if blank_none(v) is None else _terabytes(v))
]
Watts = Annotated[
    int | None, BeforeValidator(lambda v: None if blank_none(v) is None else _watts(v))
]
UHeight = Annotated[float, AfterValidator(_u_height)]
IPv4 = Annotated[
    str | None,
    BeforeValidator(blank_none),
    AfterValidator(lambda v: None if v is None else _ipv4(v)),
]
IPv6 = Annotated[
    str | None,
    BeforeValidator(blank_none),
    AfterValidator(lambda v: None if v is None else _ipv6(v)),
]
MAC = Annotated[
    str | None,
    BeforeValidator(blank_none),
    AfterValidator(lambda v: None if v is None else _mac(v)),
]
Country = Annotated[
    str | None,
    BeforeValidator(blank_none),
    AfterValidator(lambda v: None if v is None else _country(v)),
]
Tags = Annotated[list[Slug], BeforeValidator(_tags)]
OptDate = Annotated[date | None, BeforeValidator(blank_none)]
OptFloat = Annotated[float | None, BeforeValidator(blank_none)]
OptInt = Annotated[int | None, BeforeValidator(blank_none)]
CustomFields = dict[str, Any]
