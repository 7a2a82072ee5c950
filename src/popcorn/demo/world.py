"""The demo world, generated from a seed: what Popcorn would hold at a small streaming company.

`generate()` is pure (no database, no files): three cloud regions; CDN sites at ISPs and
exchanges in several countries; a dozen device models from several manufacturers with
their component templates; devices with their components and links; client groups with
a week of demand (daily and weekly cycles); and thousands of signals around one incident,
made by the signals generator with its planted culprits renamed after the failing storage
appliance (its disk error counter, its latency) and its site (the error rate).
`build()` writes it through the domains' service functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from popcorn.demo import catalog
from popcorn.signals.generate import generate_incident
from popcorn.signals.ingest import Batch, check_samples, series_key
from popcorn.signals.promql import format_series

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Labels = dict[str, str]

STEP_SECONDS = 60
AFTER_ALERT = 20  # samples stored after the planted changes' reference time
# Alertmanager fires a few minutes after the error rate turned (an alert rule's `for: 3m`).
ALERT_DELAY_S = 3 * 60
TAIL_BEFORE_ALERT_S = 20 * 60  # the story ingests from here on: the incident as it happens
DEMAND_METRIC = "client_demand_gbps"
PEAK_CDN_UTILISATION = 0.55
# The cloud runs at 75% of its usable capacity now, so evacuating a region means scaling up.
CLOUD_UTILISATION_NOW = 0.75
CLOUD_INSTANCES = 12
CLOUD_MAX_INSTANCES = 40
CLOUD_HEADROOM = 0.1
DEMAND_PHASE_END = 4 * 86_400 + 20 * 3600  # a Monday, 20:00 UTC: evening in Europe
STEADY_MINUTES = 30


@dataclass(frozen=True)
class Size:
    sites: int
    devices: int
    signals: int
    samples: int
    groups: int


FULL = Size(sites=30, devices=2000, signals=5000, samples=1440, groups=24)
FAST = Size(sites=4, devices=60, signals=300, samples=480, groups=8)


@dataclass
class SignalBlock:
    """Series keys, one row of one-minute samples each (NaN where a series has none)."""

    keys: list[tuple[str, Labels]]
    timestamps: IntArray  # unix seconds
    values: FloatArray  # (series, samples)

    def names(self) -> list[str]:
        return [format_series(metric, labels) for metric, labels in self.keys]

    @property
    def samples(self) -> int:
        return int(np.isfinite(self.values).sum())

    def batches(self, cols: npt.NDArray[np.bool_], per_batch: int) -> Iterator[Batch]:
        """The chosen sample columns of every series, `per_batch` series at a time."""
        ts_ms = self.timestamps[cols] * 1000
        for lo in range(0, len(self.keys), per_batch):
            block = self.values[lo : lo + per_batch][:, cols]
            rows, at = np.nonzero(np.isfinite(block))
            keys = [
                series_key(metric, labels, f"series {lo + i}")
                for i, (metric, labels) in enumerate(self.keys[lo : lo + per_batch])
            ]
            batch = Batch(keys, rows.astype(np.int64), ts_ms[at], block[rows, at])
            check_samples(batch.ts, batch.value, lambda i: f"sample {i}")
            yield batch


@dataclass
class Incident:
    """Where the story happens and what the analysis should find."""

    site: str
    device: str
    disk: str
    disks: list[dict[str, Any]]  # the appliance's disks, for its Bolt agent's health file
    alert_time: int
    culprits: list[str]  # series names, in the order the generator planted them
    planted: list[str]  # culprits and the signals that followed them


@dataclass
class World:
    seed: int
    fast: bool
    inventory: dict[str, list[dict[str, Any]]]
    cloud_regions: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    demand: SignalBlock
    costs: list[tuple[str, str, float]]
    signals: SignalBlock
    incident: Incident
    counts: dict[str, int] = field(default_factory=dict)

    def signal_batches(self, *, tail: bool, per_batch: int = 500) -> Iterator[dict[str, Any]]:
        """The incident's signals as ingest payloads: the day before the story, or its tail."""
        split = self.incident.alert_time - TAIL_BEFORE_ALERT_S
        ts = self.signals.timestamps
        cols = ts >= split if tail else ts < split
        yield from _payloads(self.signals, cols, per_batch)

    def demand_after(self, last: int, now: float) -> tuple[int, dict[str, Any] | None]:
        """Client demand for the whole minutes after `last` up to `now`, each repeating the
        same minute a week earlier (a live feed while the demo serves); and the new `last`."""
        stamps = np.arange(last + STEP_SECONDS, int(now) + 1, STEP_SECONDS, dtype=np.int64)
        if stamps.size == 0:
            return last, None
        first, week = int(self.demand.timestamps[0]), 7 * 86_400
        idx = np.clip((stamps - week - first) // STEP_SECONDS, 0, self.demand.timestamps.size - 1)
        series = [
            {
                "metric": metric,
                "labels": labels,
                "timestamps": stamps.astype(float).tolist(),
                "values": np.round(self.demand.values[row, idx], 3).tolist(),
            }
            for row, (metric, labels) in enumerate(self.demand.keys)
        ]
        return int(stamps[-1]), {"series": series}

    def stored_batches(self, per_batch: int = 1000) -> Iterator[Batch]:
        """What the installation holds before the story: the day of signals up to the
        incident's last minutes, and the week of client demand, as validated batches."""
        split = self.incident.alert_time - TAIL_BEFORE_ALERT_S
        yield from self.signals.batches(self.signals.timestamps < split, per_batch)
        yield from self.demand.batches(np.ones(self.demand.timestamps.size, bool), per_batch)


def _payloads(block: SignalBlock, cols: npt.NDArray[np.bool_], per_batch: int) -> Iterator[Any]:
    ts = block.timestamps[cols].astype(float)
    for lo in range(0, len(block.keys), per_batch):
        series = []
        for row in range(lo, min(lo + per_batch, len(block.keys))):
            values = block.values[row, cols]
            ok = np.isfinite(values)
            if not ok.any():
                continue
            metric, labels = block.keys[row]
            series.append(
                {
                    "metric": metric,
                    "labels": labels,
                    "timestamps": ts[ok].tolist(),
                    "values": np.round(values[ok], 6).tolist(),
                }
            )
        if series:
            yield {"series": series}


def _rng(seed: int, part: int) -> np.random.Generator:
    """An independent stream per part of the world, so one part's size never moves another."""
    return np.random.default_rng([seed, part])


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(min(1.0, a)))


# --- inventory ------------------------------------------------------------------------------

MODELS = {m["slug"]: m for m in catalog.DEVICE_MODELS}
_DEMO_KEYS = ("role", "gbps", "tb", "platform")


def _model_rows() -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in _DEMO_KEYS} for m in catalog.DEVICE_MODELS]


@dataclass
class _SitePlan:
    code: str
    kind: str
    isp: str
    routers: str
    switches: int
    storage: list[str]
    flash: list[str]


def _plan_sites(size: Size, rng: np.random.Generator) -> list[_SitePlan]:
    order = rng.permutation(len(catalog.CDN_SITES))[: size.sites]
    chosen = sorted((catalog.CDN_SITES[i] for i in order), key=lambda s: s[0])
    infra = 8  # two routers, two switches, a console server, two PDUs, a server
    weights = rng.lognormal(0.0, 0.35, len(chosen)) * [
        1.4 if s[2] == "cdn-ix" else 1.0 for s in chosen
    ]
    appliances = max(len(chosen), size.devices - infra * len(chosen))
    share = weights / weights.sum() * appliances
    counts = np.floor(share).astype(int)
    for i in np.argsort(share - counts)[::-1][: appliances - int(counts.sum())]:
        counts[i] += 1
    plans = []
    for site, count in zip(chosen, counts.tolist(), strict=True):
        count = max(count, 3)
        flash = max(1, round(count * rng.uniform(0.15, 0.25)))
        storage = count - flash
        per_switch = 28 if site[2] == "cdn-ix" else 44  # access ports left after 4 uplinks
        switches = max(2, math.ceil(count / per_switch))
        routers = "juniper-mx204" if switches <= 4 and site[2] == "cdn-isp" else (
            "juniper-mx10003" if rng.random() < 0.5 else "cisco-ncs-55a1-24h"
        )  # fmt: skip
        plans.append(
            _SitePlan(
                code=site[0],
                kind=site[2],
                isp=site[0].split("-")[1],
                routers=routers,
                switches=switches,
                storage=[
                    "oca-storage-gen4" if rng.random() < 0.7 else "oca-storage-gen3"
                    for _ in range(storage)
                ],
                flash=[
                    "oca-flash-gen3" if rng.random() < 0.6 else "oca-flash-gen2"
                    for _ in range(flash)
                ],
            )
        )
    return plans


def _router_uplinks(model: str) -> list[str]:
    return [i["name"] for i in MODELS[model]["interfaces"] if not i.get("mgmt_only")]


class _Maker:
    """Devices with unique, plausible serial numbers, in the inventory's import shape."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.serial = int(rng.integers(10_000, 90_000)) * 1000

    def device(self, site: str, name: str, model: str, **extra: Any) -> dict[str, Any]:
        self.serial += int(self.rng.integers(1, 40))
        spec = MODELS[model]
        device: dict[str, Any] = {
            "name": name,
            "role": spec["role"],
            "model": model,
            "site": site,
            "serial": f"{spec['manufacturer'][:2].upper()}{self.serial:09d}",
            **extra,
        }
        if spec.get("platform"):
            device["platform"] = spec["platform"]
        if spec.get("gbps"):
            device["throughput_gbps"] = f"{spec['gbps']}G"
        if spec.get("tb"):
            device["storage_tb"] = f"{spec['tb']}TB"
        return device


def _site_links(
    routers: list[dict[str, Any]],
    switches: list[dict[str, Any]],
    console: dict[str, Any],
    appliances: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Switch uplinks to both routers, console cables, each appliance's eth0 to a switch."""
    switch_model = switches[0]["model"]
    access = [i["name"] for i in MODELS[switch_model]["interfaces"] if not i.get("mgmt_only")]
    ports, uplinks = access[:-4], access[-4:]
    router_ports = _router_uplinks(routers[0]["model"])
    links: list[dict[str, Any]] = []
    for j, switch in enumerate(switches):
        for r, router in enumerate(routers):
            links.append(
                {
                    "a_device": switch["name"],
                    "a_name": uplinks[r],
                    "b_device": router["name"],
                    "b_name": router_ports[j],
                    "type": "smf",
                }
            )
    for n, device in enumerate([*routers, *switches]):
        links.append(
            {
                "a_device": device["name"],
                "a_name": "con",
                "a_kind": "console-port",
                "b_device": console["name"],
                "b_name": f"port{n + 1}",
                "b_kind": "console-server-port",
                "type": "cat6",
            }
        )
    for n, device in enumerate(appliances):
        links.append(
            {
                "a_device": device["name"],
                "a_name": "eth0",
                "b_device": switches[n % len(switches)]["name"],
                "b_name": ports[n // len(switches)],
                "type": "dac",
            }
        )
    return links


def _site_row(code: str, asn: int) -> dict[str, Any]:
    by_code = {s[0]: s for s in catalog.CDN_SITES}
    _, name, kind, country, city, lat, lon = by_code[code]
    return {
        "code": code,
        "name": name,
        "region": country.lower(),
        "kind": kind,
        "country": country,
        "city": city,
        "latitude": lat,
        "longitude": lon,
        "asn": asn,
        "tags": ["open-connect", "ix" if kind == "cdn-ix" else "isp"],
    }


def _regions(plans: list[_SitePlan]) -> list[dict[str, Any]]:
    """The continents and countries that hold a site or a cloud region."""
    by_code = {s[0]: s for s in catalog.CDN_SITES}
    countries = {by_code[p.code][3].lower() for p in plans}
    countries |= {c[2].lower() for c in catalog.CLOUD_REGIONS}
    parents = {slug: parent for slug, _, parent in catalog.REGIONS}
    wanted = countries | {parents[c] for c in countries}
    return [
        {"slug": slug, "name": name, **({"parent": parent} if parent else {})}
        for slug, name, parent in catalog.REGIONS
        if slug in wanted
    ]


def _inventory(
    size: Size, seed: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    rng = _rng(seed, 1)
    plans = _plan_sites(size, rng)
    sites: list[dict[str, Any]] = [
        {
            "code": code,
            "name": name,
            "region": country.lower(),
            "kind": "cloud-region",
            "country": country,
            "city": city,
            "latitude": lat,
            "longitude": lon,
            "tags": ["cloud"],
        }
        for code, name, country, city, lat, lon in catalog.CLOUD_REGIONS
    ]
    racks: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    maker = _Maker(rng)
    info: dict[str, dict[str, Any]] = {}
    asn = {isp: 64_512 + i for i, isp in enumerate(sorted({p.isp for p in plans}))}
    for plan in plans:
        code = plan.code
        site = _site_row(code, asn[plan.isp])
        sites.append(site)
        routers = [maker.device(code, f"{code}-rtr{i + 1:02d}", plan.routers) for i in range(2)]
        switch_model = "arista-7050cx3-32s" if plan.kind == "cdn-ix" else "arista-7280sr3-48yc8"
        switches = [
            maker.device(code, f"{code}-sw{i + 1:02d}", switch_model) for i in range(plan.switches)
        ]
        console = maker.device(code, f"{code}-con01", "opengear-cm8148")
        others = [
            maker.device(code, f"{code}-pdu01", "servertech-pro2-c2wg36"),
            maker.device(code, f"{code}-pdu02", "servertech-pro2-c2wg36"),
            maker.device(code, f"{code}-srv01", "supermicro-sys-1029u-tr4"),
        ]
        appliances = [
            maker.device(code, f"{code}-oca{i + 1:03d}", model, os_version="14.1-OCA")
            for i, model in enumerate(plan.storage + plan.flash)
        ]
        site_devices = [*routers, *switches, console, *others, *appliances]
        for n, device in enumerate(site_devices):
            device["rack"] = f"R{n // 24 + 1:02d}"
        racks += [
            {"site": code, "name": f"R{r + 1:02d}", "u_height": 42}
            for r in range(math.ceil(len(site_devices) / 24))
        ]
        devices += site_devices
        links += _site_links(routers, switches, console, appliances)
        info[code] = {
            "isp": plan.isp,
            "lat": site["latitude"],
            "lon": site["longitude"],
            "storage": [d["name"] for d in appliances if d["role"] == "storage-appliance"],
            "gbps": sum(MODELS[d["model"]]["gbps"] for d in appliances),
        }
    document = {
        "regions": _regions(plans),
        "manufacturers": [{"name": n} for n in catalog.MANUFACTURERS],
        "sites": sites,
        "racks": racks,
        "device_models": _model_rows(),
        "devices": devices,
        "links": links,
    }
    return document, info


def _components(model: str) -> int:
    spec = MODELS[model]
    return len(spec.get("inventory-items", []))


# --- the incident and its signals -------------------------------------------------------------


def _pick_incident(info: dict[str, dict[str, Any]], rng: np.random.Generator) -> tuple[str, str]:
    candidates = sorted(code for code, site in info.items() if len(site["storage"]) >= 2)
    site = candidates[int(rng.integers(len(candidates)))]
    storage = info[site]["storage"]
    return site, storage[int(rng.integers(len(storage)))]


def _disk_records(
    device: dict[str, Any], failing: str | None, rng: np.random.Generator
) -> list[dict[str, Any]]:
    spec = MODELS[device["model"]]
    records = []
    for item in spec.get("inventory-items", []):
        if item["role"] != "disk":
            continue
        name = item["name"]
        smart: dict[str, Any] = {
            "passed": True,
            "temperature_c": int(rng.integers(31, 42)),
            "power_on_hours": int(rng.integers(9_000, 40_000)),
        }
        if name == failing:
            smart.update(
                passed=False, reallocated_sectors=1872, pending_sectors=96, offline_uncorrectable=24
            )
        records.append(
            {
                "name": name,
                "model": item["part_id"],
                "serial": f"ZL{int(rng.integers(10**7, 10**8))}",
                "rotational": name.startswith("sd"),
                "smart": smart,
            }
        )
    return records


PLANTED_METRICS = {
    # the disk error counter appears from nothing, with what follows it on the appliance
    "appeared": (
        ("oca_disk_io_errors_rate", "disk", 25.0),
        [
            ("oca_disk_reallocated_sectors", "disk", 1500.0),
            ("oca_http_5xx_rate", "device", 2.0),
            ("oca_cache_hit_ratio", "device", 0.93),
            ("oca_throughput_gbps", "device", 60.0),
        ],
    ),
    # the failing disk's latency, and the appliance slowing down with it
    "latency": (
        ("oca_disk_await_ms", "disk", 8.0),
        [
            ("oca_disk_queue_depth", "disk", 4.0),
            ("oca_cpu_iowait_ratio", "device", 0.05),
            ("oca_tcp_retransmits_rate", "device", 120.0),
            ("oca_request_latency_p99_ms", "device", 180.0),
        ],
    ),
    # the site's error rate, and the clients it serves
    "site": (
        ("cdn_http_5xx_ratio", "site", 0.002),
        [
            ("cdn_rebuffer_ratio", "site", 0.004),
            ("cdn_play_start_failures_rate", "site", 3.0),
            ("cdn_steering_misses_rate", "site", 5.0),
            ("cdn_client_rtt_ms", "site", 18.0),
        ],
    ),
}


def _labels(scope: str, site: str, device: str, disk: str) -> Labels:
    labels = {"site": site, "service": catalog.SERVICE}
    if scope in ("device", "disk"):
        labels["device"] = device
    if scope == "disk":
        labels["disk"] = disk
    return labels


def _signal_pool(
    devices: list[dict[str, Any]], info: dict[str, dict[str, Any]]
) -> list[tuple[str, Labels, float]]:
    pool: list[tuple[str, Labels, float]] = []
    for device in devices:
        base = {"site": device["site"], "device": device["name"], "service": catalog.SERVICE}
        role = device["role"]
        if role in ("storage-appliance", "flash-appliance"):
            pool += [(m, base, v) for m, v in catalog.APPLIANCE_METRICS]
        elif role == "router":
            pool += [(m, base, v) for m, v in catalog.ROUTER_METRICS]
            pool += [
                ("router_interface_gbps", {**base, "interface": i}, 40.0)
                for i in _router_uplinks(device["model"])[:4]
            ]
        elif role == "switch":
            pool += [(m, base, v) for m, v in catalog.SWITCH_METRICS]
    for code in info:
        base = {"site": code, "service": catalog.SERVICE}
        pool += [(m, base, v) for m, v in catalog.SITE_METRICS]
    return pool


def _signals(
    size: Size,
    seed: int,
    end: int,
    document: dict[str, list[dict[str, Any]]],
    info: dict[str, dict[str, Any]],
) -> tuple[SignalBlock, Incident]:
    rng = _rng(seed, 2)
    site, device = _pick_incident(info, rng)
    by_name = {d["name"]: d for d in document["devices"]}
    appliance = by_name[device]
    disks = [d for d in MODELS[appliance["model"]]["inventory-items"] if d["role"] == "disk"]
    disk = str(disks[int(rng.integers(min(len(disks), 12)))]["name"])
    made = generate_incident(
        size.signals,
        size.samples,
        step=STEP_SECONDS,
        seed=seed,
        n_culprits=3,
        followers_per_culprit=4,
        after_alert=AFTER_ALERT,
    )
    shift = end - int(made.timestamps[-1])
    timestamps = made.timestamps + shift
    alert_time = made.alert_time + shift + ALERT_DELAY_S
    values = made.values.copy()
    keys: list[tuple[str, Labels] | None] = [None] * size.signals
    typical = np.ones(size.signals)
    appeared = [c for c in made.culprits if made.expected_verdicts.get(c) == "appeared"]
    changed = [c for c in made.culprits if c not in appeared]
    roles = dict(zip(["appeared", "latency", "site"], [*appeared, *changed], strict=True))
    culprits: list[str] = []
    planted: list[str] = []
    for role, row in roles.items():
        (metric, scope, value), followers = PLANTED_METRICS[role]
        keys[row] = (metric, _labels(scope, site, device, disk))
        typical[row] = value
        for follower, (f_metric, f_scope, f_value) in zip(
            made.followers[row], followers, strict=True
        ):
            keys[follower] = (f_metric, _labels(f_scope, site, device, disk))
            typical[follower] = f_value
    taken = {format_series(*k) for k in keys if k is not None}
    pool = [
        p for p in _signal_pool(document["devices"], info) if format_series(p[0], p[1]) not in taken
    ]
    free = [i for i, k in enumerate(keys) if k is None]
    if len(pool) < len(free):
        raise ValueError(
            f"signals: the world has room for {len(pool)} more series, not {len(free)}"
        )
    for row, pick in zip(
        free, rng.choice(len(pool), len(free), replace=False).tolist(), strict=True
    ):
        metric, labels, value = pool[pick]
        keys[row] = (metric, labels)
        typical[row] = value
    # Each series keeps its generated shape, scaled around the value its metric usually has.
    median = np.nanmedian(np.where(np.isfinite(values), values, np.nan), axis=1)
    values = values / np.where(median > 0, median, 1.0)[:, None] * typical[:, None]
    final_keys = [k for k in keys if k is not None]
    block = SignalBlock(keys=final_keys, timestamps=timestamps.astype(np.int64), values=values)
    for row in roles.values():
        culprits.append(format_series(*final_keys[row]))
        planted.append(format_series(*final_keys[row]))
        planted += [format_series(*final_keys[f]) for f in made.followers[row]]
    rng_disks = _rng(seed, 3)
    incident = Incident(
        site=site,
        device=device,
        disk=disk,
        disks=_disk_records(appliance, disk, rng_disks),
        alert_time=int(alert_time),
        culprits=culprits,
        planted=planted,
    )
    return block, incident


# --- traffic ----------------------------------------------------------------------------------


def _demand(
    size: Size, seed: int, end: int, cdn_gbps: float
) -> tuple[list[dict[str, Any]], SignalBlock, list[tuple[str, float, float, str]]]:
    rng = _rng(seed, 4)
    order = sorted(rng.permutation(len(catalog.CLIENT_GROUPS))[: size.groups].tolist())
    chosen = [catalog.CLIENT_GROUPS[i] for i in order]
    minutes = 7 * 1440
    timestamps = end - STEP_SECONDS * np.arange(minutes - 1, -1, -1, dtype=np.int64)
    # The daily and weekly cycles are read as if the world ended at the same hour of the
    # same weekday whenever it is built, so the same seed gives the same demand (and plans).
    phase = timestamps - end + DEMAND_PHASE_END
    hours_utc = (phase % 86_400) / 3600.0
    weekday_utc = ((phase // 86_400) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    rows = []
    for _name, _kind, _isp, _lat, _lon, offset, weight in chosen:
        local = hours_utc + offset
        day = (weekday_utc + np.floor(local / 24)).astype(int) % 7
        hour = np.mod(local, 24)
        daily = 0.55 + 0.45 * np.cos(2 * math.pi * (hour - 21) / 24)
        weekly = np.where(day >= 5, 1.12, np.where(day == 4, 1.05, 1.0))
        noise = 1 + rng.normal(0, 0.03, minutes)
        rows.append(weight * daily * weekly * noise)
    values = np.vstack(rows)
    # Steady over the last half hour: traffic reads demand as the mean of a window ending
    # when it plans, so a plan made a few minutes later sees the same demand.
    values[:, -STEADY_MINUTES:] = values[:, -STEADY_MINUTES:].mean(axis=1, keepdims=True)
    scale = PEAK_CDN_UTILISATION * cdn_gbps / float(values.sum(axis=0).max())
    values *= scale
    keys = [(DEMAND_METRIC, {"group": g[0]}) for g in chosen]
    groups = [
        {
            "name": name,
            "kind": kind,
            "demand_source": "signals",
            "demand_selector": format_series(DEMAND_METRIC, {"group": name}),
            "demand_window_seconds": 900.0,
            "description": f"{name.split('-', 1)[1].title()} subscribers ({name[:2].upper()})",
        }
        for name, kind, *_ in chosen
    ]
    places = [(g[0], g[3], g[4], g[2]) for g in chosen]
    return groups, SignalBlock(keys, timestamps, values), places


def _cloud(demand_now: float) -> list[dict[str, Any]]:
    per_instance = demand_now / (
        len(catalog.CLOUD_REGIONS) * CLOUD_INSTANCES * (1 - CLOUD_HEADROOM) * CLOUD_UTILISATION_NOW
    )
    return [
        {
            "name": code,
            "kind": "cloud",
            "instances": CLOUD_INSTANCES,
            "throughput_per_instance": round(per_instance, 3),
            "max_instances": CLOUD_MAX_INSTANCES,
            "headroom": CLOUD_HEADROOM,
            "readiness_seconds": 180.0,
            "aws_region": code,
            "description": name,
        }
        for code, name, *_ in catalog.CLOUD_REGIONS
    ]


def _costs(
    seed: int, places: list[tuple[str, float, float, str]], info: dict[str, dict[str, Any]]
) -> list[tuple[str, str, float]]:
    """Latency (ms) from each group to each CDN site and cloud region; on-net sites are closer."""
    rng = _rng(seed, 5)
    out = []
    for group, lat, lon, isp in places:
        for code, site in sorted(info.items()):
            ms = 4.0 + _km(lat, lon, site["lat"], site["lon"]) / 100.0 + float(rng.uniform(0, 3))
            if isp and site["isp"] == isp:
                ms = max(2.0, ms - 4.0)
            out.append((group, code, round(ms, 2)))
        for code, _name, _country, _city, c_lat, c_lon in catalog.CLOUD_REGIONS:
            ms = 12.0 + _km(lat, lon, c_lat, c_lon) / 100.0 + float(rng.uniform(0, 3))
            out.append((group, code, round(ms, 2)))
    return out


def _serving(
    costs: list[tuple[str, str, float]], site: str, sites: set[str]
) -> list[tuple[str, str, float]]:
    """The costs with the incident's site the closest CDN site of its nearest client group,
    so the failed appliance's site serves real load that a shift then visibly moves."""
    to_site = {g: ms for g, code, ms in costs if code == site}
    if not to_site:
        return costs
    group = min(to_site, key=lambda g: (to_site[g], g))
    best = min(ms for g, code, ms in costs if g == group and code in sites)
    closest = round(max(1.0, best - 1.0), 2)
    return [(g, code, closest if (g, code) == (group, site) else ms) for g, code, ms in costs]


def generate(seed: int, *, fast: bool, now: float) -> World:
    """The whole world for `seed`; `now` anchors the samples (they end a minute before it)."""
    size = FAST if fast else FULL
    end = int(now) // STEP_SECONDS * STEP_SECONDS - STEP_SECONDS
    document, info = _inventory(size, seed)
    signals, incident = _signals(size, seed, end, document, info)
    cdn_gbps = float(sum(site["gbps"] for site in info.values()))
    groups, demand, places = _demand(size, seed, end, cdn_gbps)
    window = int(groups[0]["demand_window_seconds"]) // STEP_SECONDS
    demand_now = float(demand.values[:, -window:].mean(axis=1).sum())
    counts = {
        "regions": len(catalog.CLOUD_REGIONS),
        "sites": len(info),
        "device_models": len(document["device_models"]),
        "devices": len(document["devices"]),
        "components": sum(_components(d["model"]) for d in document["devices"]),
        "links": len(document["links"]),
        "signals": len(signals.keys),
        "samples": signals.samples,
        "client_groups": len(groups),
    }
    return World(
        seed=seed,
        fast=fast,
        inventory=document,
        cloud_regions=_cloud(demand_now),
        groups=groups,
        demand=demand,
        costs=_serving(_costs(seed, places, info), incident.site, set(info)),
        signals=signals,
        incident=incident,
        counts=counts,
    )


def inventory_json(world: World) -> str:
    return json.dumps(world.inventory, indent=1)


ProgressFn = Callable[[str, int, int], None]
