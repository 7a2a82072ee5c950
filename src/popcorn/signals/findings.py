"""What an alert analysis answers: its options, findings, clusters and result, as plain data.

rank.py computes them; they travel between chunk jobs and the merge as dicts
(`to_dict`/`from_dict`), so nothing here refers to numpy arrays, the database or Flask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from popcorn.numbers import number
from popcorn.signals.detect import (
    DetectOptions,
)

VERDICTS = ("changed", "appeared", "disappeared", "unchanged", "not_analysable")
INTERESTING = ("changed", "appeared", "disappeared")
_SHAPE_POINTS = 64


class AnalysisError(ValueError):
    """Invalid analysis input; the message names the offending field."""


@dataclass(frozen=True)
class AnalysisOptions:
    """What to analyse and how to rank it; the defaults need no tuning."""

    detect: DetectOptions = field(default_factory=DetectOptions)
    # "auto": history if given, else "detrend" for windows of 12 h or more, else "none";
    # "history" (required), "detrend" (remove a fitted daily cycle) or "none".
    seasonality: str = "auto"
    min_samples: int = 20
    max_gap_fraction: float = 0.5
    appear_fraction: float = 0.05
    lead_seconds: float | None = None  # default: max(15 min, 10 steps)
    grace_seconds: float | None = None  # default: max(2 min, 2 steps)
    correlation_window: int = 30  # samples on each side of the change
    effect_weight: float = 1.0
    correlation_weight: float = 1.0
    proximity_weight: float = 0.5
    cluster_seconds: float | None = None  # default: max(5 min, 5 steps)
    cluster_similarity: float = 0.8

    def __post_init__(self) -> None:
        if self.seasonality not in ("auto", "history", "detrend", "none"):
            raise AnalysisError("seasonality: must be 'auto', 'history', 'detrend' or 'none'")
        if self.min_samples < 2 * self.detect.min_size:
            raise AnalysisError("min_samples: must be at least twice detect.min_size")
        for name in ("max_gap_fraction", "appear_fraction", "cluster_similarity"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise AnalysisError(f"{name}: must be between 0 and 1, got {value!r}")
        for name in ("lead_seconds", "grace_seconds", "cluster_seconds"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise AnalysisError(f"{name}: must be a non-negative number of seconds")
        for name in ("effect_weight", "correlation_weight", "proximity_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise AnalysisError(f"{name}: must be a non-negative number")
        if self.effect_weight + self.correlation_weight + self.proximity_weight <= 0:
            raise AnalysisError("effect_weight: at least one weight must be positive")
        if self.correlation_window < 3:
            raise AnalysisError("correlation_window: must be at least 3 samples")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AnalysisOptions:
        """Options from plain data (JSON), with nested ``detect`` options."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AnalysisError(f"unknown option(s): {', '.join(unknown)}")
        detect = data.pop("detect", None)
        if isinstance(detect, DetectOptions):
            return cls(detect=detect, **data)
        return cls(detect=DetectOptions.from_kwargs(**(detect or {})), **data)


@dataclass
class SignalFinding:
    """What happened to one signal, why it matters, and in words."""

    index: int
    name: str
    verdict: str
    change_time: int | None = None
    offset_seconds: int | None = None  # change_time - alert_time
    kind: str | None = None  # "level", "trend", "variance" or "presence"
    effect_size: float | None = None  # in the signal's own noise units
    direction: str | None = None  # "up" or "down"
    magnitude: float | None = None  # shift in the signal's units (ratio for variance)
    before: float | None = None
    after: float | None = None
    noise: float | None = None
    pearson: float | None = None
    spearman: float | None = None
    proximity: float | None = None
    score: float = 0.0
    explanation: str = ""
    change_points: list[int] = field(default_factory=list)  # times (s) of every change
    cluster: int | None = None
    shape: list[float] | None = None  # the signal around the alert, for clustering

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalFinding:
        return cls(**{f.name: data.get(f.name, f.default) for f in fields(cls) if f.name in data})


@dataclass
class Cluster:
    """Signals that changed together, led by the one that moved first."""

    id: int
    members: list[int]
    representative: int
    change_time: int | None
    score: float
    explanation: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cluster:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass
class AnalysisResult:
    """Ranked findings (best first) and clusters for one alert, as plain data."""

    alert_time: int
    onset_time: int
    start: int
    end: int
    step: int
    n_signals: int
    findings: list[SignalFinding]
    clusters: list[Cluster] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    trigger_name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    def top(self, n: int = 10) -> list[SignalFinding]:
        """The ``n`` best findings that are worth a look (never unchanged ones)."""
        return [f for f in self.findings if f.verdict in INTERESTING][:n]

    def to_dict(self, include_unchanged: bool = True) -> dict[str, Any]:
        """JSON-ready data; ``include_unchanged=False`` keeps only what an operator reads."""
        findings = [
            asdict(f) for f in self.findings if include_unchanged or f.verdict in INTERESTING
        ]
        return {
            "alert_time": self.alert_time,
            "onset_time": self.onset_time,
            "start": self.start,
            "end": self.end,
            "step": self.step,
            "n_signals": self.n_signals,
            "trigger_name": self.trigger_name,
            "counts": dict(self.counts),
            "clusters": [asdict(c) for c in self.clusters],
            "findings": findings,
            "options": self.options,
            "elapsed_seconds": self.elapsed_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisResult:
        try:
            return cls(
                alert_time=int(data["alert_time"]),
                onset_time=int(data["onset_time"]),
                start=int(data["start"]),
                end=int(data["end"]),
                step=int(data["step"]),
                n_signals=int(data["n_signals"]),
                findings=[SignalFinding.from_dict(f) for f in data.get("findings", [])],
                clusters=[Cluster.from_dict(c) for c in data.get("clusters", [])],
                counts=dict(data.get("counts", {})),
                trigger_name=data.get("trigger_name"),
                options=dict(data.get("options", {})),
                elapsed_seconds=float(data.get("elapsed_seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AnalysisError(f"result: not an analysis result ({exc})") from exc


# --------------------------------------------------------------------------- formatting


def _duration(seconds: float) -> str:
    s = abs(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _when(offset: float) -> str:
    if abs(offset) < 1:
        return "at the alert"
    return f"{_duration(offset)} {'before' if offset < 0 else 'after'} the alert"


def _num(value: float) -> str:
    """`10,080`, not `1.008e+04`: explanations are read by people (`popcorn.numbers`)."""
    return number(value, 4)
