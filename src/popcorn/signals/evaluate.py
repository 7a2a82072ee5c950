"""Accuracy of change-point detectors on series labelled by several annotators.

Popcorn measures its detector the way the Turing change-point benchmark (TCPDBench, van den
Burg & Williams) does, so its figures can be compared with published ones:

- **F1 with a margin** (default 5 samples): index 0 counts as a change point in the
  predictions and in every annotation; a prediction matches at most one annotated point
  within the margin (one-to-one, closest first). Precision is measured against the union of
  all annotators' points, recall is averaged over annotators, and F1 is their harmonic mean.
- **Segmentation cover**: each annotator's partition of ``[0, n)`` is covered by the
  predicted partition (for every true segment, the best Jaccard overlap with a predicted
  segment, weighted by the true segment's length), then averaged over annotators.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from popcorn.signals.generate import LabelledSeries


class EvaluationError(ValueError):
    """Invalid labels or predictions; the message names the field."""


@dataclass(frozen=True)
class FScore:
    f1: float
    precision: float
    recall: float


@dataclass
class Evaluation:
    """Scores of one detector over a labelled data set."""

    name: str
    f1: float
    cover: float
    precision: float
    recall: float
    seconds: float
    per_series: list[tuple[float, float]] = field(default_factory=list)  # (f1, cover)

    def row(self) -> str:
        return (
            f"| {self.name} | {self.f1:.3f} | {self.cover:.3f} | {self.precision:.3f} "
            f"| {self.recall:.3f} | {self.seconds:.2f} |"
        )


def _points(values: Sequence[int] | npt.NDArray[np.integer], what: str) -> list[int]:
    out = []
    for v in values:
        iv = int(v)
        if iv != v or iv < 0:
            raise EvaluationError(f"{what}: change points must be non-negative integers, got {v!r}")
        out.append(iv)
    return sorted(set(out))


def matched(truth: Iterable[int], predicted: Iterable[int], margin: int = 5) -> int:
    """Number of true points matched one-to-one by a prediction within ``margin`` samples.

    True points are taken in increasing order; each takes the closest unused prediction
    (the earlier one on a tie).
    """
    free = sorted(set(predicted))
    count = 0
    for tau in sorted(set(truth)):
        best: int | None = None
        for x in free:
            if abs(tau - x) <= margin and (best is None or abs(tau - x) < abs(tau - best)):
                best = x
        if best is not None:
            free.remove(best)
            count += 1
    return count


def f_measure(
    annotations: Sequence[Sequence[int]],
    predictions: Sequence[int],
    margin: int = 5,
    alpha: float = 0.5,
) -> FScore:
    """TCPDBench F-measure of ``predictions`` against several annotators' change points."""
    if not annotations:
        raise EvaluationError("annotations: at least one annotator is required")
    if margin < 0:
        raise EvaluationError(f"margin: must be non-negative, got {margin}")
    users = [set(_points(a, "annotations")) | {0} for a in annotations]
    pred = set(_points(predictions, "predictions")) | {0}
    union = set().union(*users)
    precision = matched(union, pred, margin) / len(pred)
    recall = float(np.mean([matched(u, pred, margin) / len(u) for u in users]))
    if precision <= 0 or recall <= 0:
        return FScore(0.0, precision, recall)
    f1 = precision * recall / (alpha * recall + (1 - alpha) * precision)
    return FScore(f1, precision, recall)


def _segments(cps: Sequence[int], n: int) -> list[tuple[int, int]]:
    bounds = [0, *sorted({c for c in cps if 0 < c < n}), n]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def cover_single(truth: Sequence[int], predicted: Sequence[int], n: int) -> float:
    """How well the predicted partition covers one true partition of ``[0, n)``."""
    true_segs = _segments(truth, n)
    pred_segs = _segments(predicted, n)
    total = 0.0
    for a, b in true_segs:
        best = 0.0
        for c, d in pred_segs:
            inter = min(b, d) - max(a, c)
            if inter > 0:
                best = max(best, inter / ((b - a) + (d - c) - inter))
        total += (b - a) * best
    return total / n


def covering(annotations: Sequence[Sequence[int]], predictions: Sequence[int], n: int) -> float:
    """TCPDBench segmentation cover, averaged over annotators."""
    if n <= 0:
        raise EvaluationError(f"n: the series length must be positive, got {n}")
    if not annotations:
        raise EvaluationError("annotations: at least one annotator is required")
    pred = _points(predictions, "predictions")
    return sum(cover_single(_points(a, "annotations"), pred, n) for a in annotations) / len(
        annotations
    )


Detector = Callable[[npt.NDArray[np.float64]], Sequence[int]]


def evaluate(
    detector: Detector, dataset: Sequence[LabelledSeries], name: str = "", margin: int = 5
) -> Evaluation:
    """Run ``detector`` on every series and average F1, cover, precision and recall."""
    if not dataset:
        raise EvaluationError("dataset: no series to evaluate")
    scores: list[tuple[float, float]] = []
    precisions: list[float] = []
    recalls: list[float] = []
    spent = 0.0
    for series in dataset:
        started = time.perf_counter()
        predicted = list(detector(series.values))
        spent += time.perf_counter() - started
        f = f_measure(series.annotations, predicted, margin)
        scores.append((f.f1, covering(series.annotations, predicted, series.values.size)))
        precisions.append(f.precision)
        recalls.append(f.recall)
    return Evaluation(
        name=name or getattr(detector, "__name__", "detector"),
        f1=float(np.mean([s[0] for s in scores])),
        cover=float(np.mean([s[1] for s in scores])),
        precision=float(np.mean(precisions)),
        recall=float(np.mean(recalls)),
        seconds=spent,
        per_series=scores,
    )
