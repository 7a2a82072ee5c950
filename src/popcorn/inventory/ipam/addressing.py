"""Prefix hierarchy, utilisation and free space, NetBox's way, for IPv4 and IPv6.

Every prefix, range and address carries sort keys (its first and last address
as 32 hex digits), so "what lies inside 10.1.0.0/16 in this VRF" is one indexed
range query; the arithmetic is then Python's `ipaddress` over merged intervals,
never a set of individual addresses (a /64 has 2^64 of them).

NetBox's rules kept here: a prefix's children are the prefixes strictly inside it
in the same VRF, except that a container in the global table has children in every
VRF; a container's utilisation is the share its child prefixes cover, any other
prefix's the share its addresses and `mark_utilized` ranges cover (IPv4 networks
bigger than /31 that are not pools lose their network and broadcast addresses);
`mark_utilized` makes a prefix full.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from popcorn.errors import InvalidInput
from popcorn.inventory.ipam import models as m

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Figures:
    depth: int
    children: int
    utilization: float


def _in(model: Any, start: str, end: str, prefix: m.Prefix, *, any_vrf: bool) -> list[Any]:
    """Conditions for rows of `model` whose keys lie within [start, end], in the prefix's space."""
    first, last = (
        (model.host_key, model.host_key)
        if model is m.IpAddress
        else (
            model.start_key,
            model.end_key,
        )
    )
    where = [model.family == prefix.family, first >= start, last <= end]
    if not any_vrf:
        where.append(
            model.vrf_id.is_(None) if prefix.vrf_id is None else model.vrf_id == prefix.vrf_id
        )
    return where


def _all_vrfs(prefix: m.Prefix) -> bool:
    return prefix.vrf_id is None and prefix.status == "container"


def child_spans(session: Session, prefix: m.Prefix) -> list[tuple[int, int]]:
    """First and last address of each prefix strictly inside this one (every VRF's, for a
    global container), read as keys only: a /8 may hold a hundred thousand."""
    rows = session.execute(
        select(m.Prefix.start_key, m.Prefix.end_key)
        .where(*_in(m.Prefix, prefix.start_key, prefix.end_key, prefix, any_vrf=_all_vrfs(prefix)))
        .where(m.Prefix.prefix != prefix.prefix)
    )
    return [(int(start, 16), int(end, 16)) for start, end in rows]


def figures(session: Session, prefix: m.Prefix) -> Figures:
    """Depth (how many prefixes contain it), child prefix count and utilisation (0..1)."""
    depth = session.scalar(
        select(func.count())
        .select_from(m.Prefix)
        .where(
            m.Prefix.family == prefix.family,
            m.Prefix.start_key <= prefix.start_key,
            m.Prefix.end_key >= prefix.end_key,
            m.Prefix.prefix != prefix.prefix,
            m.Prefix.vrf_id.is_(None)
            if prefix.vrf_id is None
            else m.Prefix.vrf_id == prefix.vrf_id,
        )
    )
    children = child_spans(session, prefix)
    return Figures(int(depth or 0), len(children), utilization(session, prefix, children))


def page_figures(session: Session, prefixes: list[m.Prefix]) -> dict[int, Figures]:
    """`figures` for a page of prefixes in a few grouped queries (per VRF), not per row.

    Containers and prefixes holding ranges marked utilised take the per-prefix path
    (interval arithmetic); the rest are counts: supernets, subnets, distinct addresses.
    """
    found: dict[int, Figures] = {}
    by_vrf: dict[int | None, list[m.Prefix]] = {}
    for prefix in prefixes:
        by_vrf.setdefault(prefix.vrf_id, []).append(prefix)
    outer, inner = aliased(m.Prefix), aliased(m.Prefix)
    for vrf_id, group in by_vrf.items():
        ids = [p.id for p in group]

        def same_vrf(model: Any, vrf: int | None = vrf_id) -> Any:
            return model.vrf_id.is_(None) if vrf is None else model.vrf_id == vrf

        def counted(on: Any, target: Any, what: Any, page: list[int] = ids) -> dict[int, int]:
            rows = session.execute(
                select(outer.id, what).join(target, on).where(outer.id.in_(page)).group_by(outer.id)
            )
            return {ident: int(n) for ident, n in rows}

        depth = counted(
            and_(
                inner.family == outer.family,
                inner.start_key <= outer.start_key,
                inner.end_key >= outer.end_key,
                inner.prefix != outer.prefix,
                same_vrf(inner),
            ),
            inner,
            func.count(inner.id),
        )
        children = counted(
            and_(
                inner.family == outer.family,
                inner.start_key >= outer.start_key,
                inner.end_key <= outer.end_key,
                inner.prefix != outer.prefix,
                same_vrf(inner),
            ),
            inner,
            func.count(inner.id),
        )
        used = counted(
            and_(
                m.IpAddress.family == outer.family,
                m.IpAddress.host_key >= outer.start_key,
                m.IpAddress.host_key <= outer.end_key,
                same_vrf(m.IpAddress),
            ),
            m.IpAddress,
            func.count(func.distinct(m.IpAddress.host_key)),
        )
        ranged = set(
            session.scalars(
                select(outer.id)
                .join(
                    m.IpRange,
                    and_(
                        m.IpRange.family == outer.family,
                        m.IpRange.start_key >= outer.start_key,
                        m.IpRange.end_key <= outer.end_key,
                        m.IpRange.mark_utilized.is_(True),
                        same_vrf(m.IpRange),
                    ),
                )
                .where(outer.id.in_(ids))
                .distinct()
            )
        )
        for prefix in group:
            if prefix.status == "container" or prefix.id in ranged or prefix.mark_utilized:
                found[prefix.id] = figures(session, prefix)
                continue
            low, high = _usable(prefix, _network(prefix))
            share = min(1.0, used.get(prefix.id, 0) / max(1, high - low + 1))
            found[prefix.id] = Figures(depth.get(prefix.id, 0), children.get(prefix.id, 0), share)
    return found


def _merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def _covered(intervals: Iterable[tuple[int, int]]) -> int:
    return sum(high - low + 1 for low, high in _merge(intervals))


def _used(session: Session, prefix: m.Prefix, *, all_ranges: bool) -> list[tuple[int, int]]:
    """Intervals taken inside a prefix by its addresses and (marked, or all) ranges."""
    used = [
        (int(k, 16), int(k, 16))
        for k in session.scalars(
            select(m.IpAddress.host_key).where(
                *_in(m.IpAddress, prefix.start_key, prefix.end_key, prefix, any_vrf=False)
            )
        )
    ]
    ranges = select(m.IpRange.start_key, m.IpRange.end_key).where(
        *_in(m.IpRange, prefix.start_key, prefix.end_key, prefix, any_vrf=False)
    )
    if not all_ranges:
        ranges = ranges.where(m.IpRange.mark_utilized.is_(True))
    used += [(int(a, 16), int(b, 16)) for a, b in session.execute(ranges)]
    return used


def _network(prefix: m.Prefix) -> Network:
    return ipaddress.ip_network(prefix.prefix)


def _usable(prefix: m.Prefix, network: Network) -> tuple[int, int]:
    """First and last address that may be handed out."""
    low, high = int(network.network_address), int(network.broadcast_address)
    if network.version == 4 and network.prefixlen < 31 and not prefix.is_pool:
        return low + 1, high - 1
    return low, high


def utilization(
    session: Session, prefix: m.Prefix, children: list[tuple[int, int]] | None = None
) -> float:
    if prefix.mark_utilized:
        return 1.0
    network = _network(prefix)
    if prefix.status == "container":
        spans = children if children is not None else child_spans(session, prefix)
        return _covered(spans) / network.num_addresses
    low, high = _usable(prefix, network)
    return min(1.0, _covered(_used(session, prefix, all_ranges=False)) / max(1, high - low + 1))


def _gaps(low: int, high: int, used: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Free intervals of [low, high] between the merged `used` ones."""
    at = low
    for start, end in _merge(used):
        if end < at:
            continue
        if start > high:
            break
        if start > at:
            yield at, start - 1
        at = max(at, end + 1)
    if at <= high:
        yield at, high


def available_prefixes(session: Session, prefix: m.Prefix) -> list[Network]:
    """The free space of a prefix as the fewest CIDR blocks, lowest first."""
    network = _network(prefix)
    taken = child_spans(session, prefix)
    make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
    free: list[Network] = []
    for low, high in _gaps(int(network.network_address), int(network.broadcast_address), taken):
        free.extend(ipaddress.summarize_address_range(make(low), make(high)))
    return free


def next_prefixes(session: Session, prefix: m.Prefix, length: int, count: int) -> list[Network]:
    """The first `count` free prefixes of `length` inside `prefix`, lowest address first."""
    network = _network(prefix)
    if not network.prefixlen <= length <= network.max_prefixlen:
        raise InvalidInput(
            f"prefix_length: must be between {network.prefixlen} and {network.max_prefixlen}"
        )
    found: list[Network] = []
    for block in available_prefixes(session, prefix):
        if block.prefixlen > length:
            continue
        found.extend(islice(block.subnets(new_prefix=length), count - len(found)))
        if len(found) == count:
            break
    return sorted(found)


def next_addresses(session: Session, prefix: m.Prefix, count: int) -> list[str]:
    """The first `count` free addresses of `prefix` (with its mask), skipping every range."""
    network = _network(prefix)
    low, high = _usable(prefix, network)
    make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
    found: list[str] = []
    for start, end in _gaps(low, high, _used(session, prefix, all_ranges=True)):
        for value in range(start, min(end, start + count - len(found) - 1) + 1):
            found.append(f"{make(value)}/{network.prefixlen}")
        if len(found) >= count:
            break
    return found
