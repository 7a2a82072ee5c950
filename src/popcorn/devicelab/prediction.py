"""The failure model: features of a (test, device family, change), a gradient-boosting
classifier of failure, the threshold that keeps failing-test recall at a target, and a
history generator with planted causes to train and measure it on.

Shared by the service (test selection), the Metaflow flow (`flows/test_failure.py`) and
the benchmark, so all three compute the same features the same way. A history record
is a plain dict: build (ordered id), components (of the change), test, test_components,
family, failed (a real failure: it did not pass on retry), flaky (failed, then passed).
numpy and scikit-learn are imported inside functions: the CLI imports this module.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

INPUT_SCHEMA: dict[str, str] = {
    "touched": "int",
    "touched_any": "bool",
    "change_size": "int",
    "test_fail_rate": "float",
    "test_flaky_rate": "float",
    "family_fail_rate": "float",
    "test_family_fail_rate": "float",
    "touched_break_rate": "float",
    "family_component_rate": "float",
    "failing_on_last": "bool",
    "runs_seen": "int",
}
FEATURES = list(INPUT_SCHEMA)
RECALL_TARGETS = (0.9, 0.95, 0.98, 0.99, 0.995)  # thresholds a trained model carries
COMPONENTS = [
    "playback", "drm", "ui", "search", "login", "audio", "subtitles", "downloads",
    "profiles", "billing", "network", "player-controls", "hdr", "ads", "recommendations",
    "voice", "accessibility", "telemetry", "startup", "artwork",
]  # fmt: skip


class History:
    """Running counts over past results, from which a row's features are read.

    Fed build by build in order, so a row only ever sees the builds before its own.
    """

    def __init__(self) -> None:
        self.test: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # runs, fails, flaky
        self.family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.test_family: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.touched: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # when touched
        self.family_component: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.last: dict[tuple[str, str], bool] = {}

    @staticmethod
    def _rate(pair: Sequence[int], prior: float = 0.02, weight: float = 5.0) -> float:
        return (pair[1] + prior * weight) / (pair[0] + weight)

    def features(
        self, test: str, test_components: Iterable[str], family: str, components: Iterable[str]
    ) -> dict[str, Any]:
        touched = len(set(test_components) & set(components))
        stats = self.test[test]
        fc = [0, 0]
        for comp in set(test_components) & set(components):
            pair = self.family_component[(family, comp)]
            fc = [fc[0] + pair[0], fc[1] + pair[1]]
        return {
            "touched": touched,
            "touched_any": touched > 0,
            "change_size": len(set(components)),
            "test_fail_rate": self._rate(stats[:2]),
            "test_flaky_rate": (stats[2] + 0.1) / (stats[0] + 5.0),
            "family_fail_rate": self._rate(self.family[family]),
            "test_family_fail_rate": self._rate(self.test_family[(test, family)]),
            "touched_break_rate": self._rate(self.touched[test], prior=0.1) if touched else 0.0,
            "family_component_rate": self._rate(fc, prior=0.1) if touched else 0.0,
            "failing_on_last": self.last.get((test, family), False),
            "runs_seen": stats[0],
        }

    def add(self, record: dict[str, Any]) -> None:
        test, family = record["test"], record["family"]
        failed = bool(record["failed"])
        stats = self.test[test]
        stats[0] += 1
        stats[1] += failed
        stats[2] += bool(record.get("flaky"))
        for pair in (self.family[family], self.test_family[(test, family)]):
            pair[0] += 1
            pair[1] += failed
        touched = set(record["test_components"]) & set(record["components"])
        if touched:
            self.touched[test][0] += 1
            self.touched[test][1] += failed
            for comp in touched:
                self.family_component[(family, comp)][0] += 1
                self.family_component[(family, comp)][1] += failed
        self.last[(test, family)] = failed


def rows_from_history(
    records: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """Features (each from the builds before it), labels and build ids, in build order."""
    history = History()
    rows: list[dict[str, Any]] = []
    labels: list[int] = []
    builds: list[int] = []
    ordered = sorted(records, key=lambda r: r["build"])
    i = 0
    while i < len(ordered):
        build = ordered[i]["build"]
        j = i
        while j < len(ordered) and ordered[j]["build"] == build:
            j += 1
        chunk = ordered[i:j]
        for rec in chunk:
            rows.append(
                history.features(
                    rec["test"], rec["test_components"], rec["family"], rec["components"]
                )
            )
            labels.append(int(bool(rec["failed"])))
            builds.append(build)
        for rec in chunk:
            history.add(rec)
        i = j
    return rows, labels, builds


def matrix(rows: Sequence[dict[str, Any]]) -> Any:
    import numpy as np

    return np.array([[float(row.get(f) or 0.0) for f in FEATURES] for row in rows], dtype=float)


@dataclass
class FailureModel:
    """A trained classifier: `predict(rows)` is each row's probability of failing."""

    estimator: Any
    kind: str = "hist_gradient_boosting"
    threshold: float = 0.0
    recall_target: float = 0.99
    metrics: dict[str, float] = field(default_factory=dict)

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        if not rows:
            return []
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        with threadpool_limits(limits=1):  # no OpenMP spinning inside a web worker
            proba = self.estimator.predict_proba(matrix(rows))
        return [float(p) for p in proba[:, 1]]


def train(rows: Sequence[dict[str, Any]], labels: Sequence[int], *, seed: int = 0) -> FailureModel:
    """Gradient boosting (scikit-learn's HistGradientBoostingClassifier) on the features."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, max_leaf_nodes=31, random_state=seed
    )
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # no OpenMP spinning inside a web worker
        estimator.fit(matrix(rows), list(labels))
    return FailureModel(estimator=estimator)


def threshold_at(thresholds: dict[str, float], recall: float) -> tuple[float, float]:
    """(target, threshold) of the lowest calibrated recall target at or above `recall`;
    the highest target's when `recall` is above all of them."""
    targets = sorted((float(k), float(v)) for k, v in thresholds.items())
    if not targets:
        raise ValueError("the model carries no calibrated thresholds")
    return next(((k, v) for k, v in targets if k >= recall - 1e-9), targets[-1])


def threshold_for_recall(scores: Sequence[float], labels: Sequence[int], recall: float) -> float:
    """The highest score threshold that keeps at least `recall` of the failures above it."""
    failing = sorted((s for s, y in zip(scores, labels, strict=True) if y), reverse=True)
    if not failing:
        return 0.0
    keep = max(1, int(-(-recall * len(failing) // 1)))
    return failing[min(keep, len(failing)) - 1]


def fraction_at_recall(
    scores: Sequence[float], labels: Sequence[int], threshold: float
) -> dict[str, float]:
    """What running every row scored at or above `threshold` costs and catches."""
    chosen = [s >= threshold for s in scores]
    failures = sum(labels)
    caught = sum(1 for c, y in zip(chosen, labels, strict=True) if c and y)
    return {
        "fraction_run": sum(chosen) / max(1, len(scores)),
        "recall": caught / failures if failures else 1.0,
        "failures": float(failures),
        "rows": float(len(scores)),
    }


def random_fraction_at_recall(labels: Sequence[int], recall: float, *, seed: int = 0) -> float:
    """The fraction a random order must run to catch `recall` of the failures."""
    rng = random.Random(seed)
    order = list(range(len(labels)))
    rng.shuffle(order)
    need = -(-recall * sum(labels) // 1)
    caught = 0
    for ran, index in enumerate(order, 1):
        caught += labels[index]
        if caught >= need:
            return ran / len(labels)
    return 1.0


def fit_and_evaluate(
    records: Sequence[dict[str, Any]], *, recall: float = 0.99, seed: int = 0
) -> tuple[FailureModel, dict[str, Any]]:
    """Train on the first 60% of builds, calibrate the threshold on the next 20%, and
    measure recall and fraction run on the last 20% (then refit on everything)."""
    rows, labels, builds = rows_from_history(records)
    order = sorted(set(builds))
    if len(order) < 5 or sum(labels) < 10:
        raise ValueError("not enough history to train (need 5 builds and 10 failures)")
    cut_a, cut_b = order[int(len(order) * 0.6)], order[int(len(order) * 0.8)]
    part = {"train": [], "calib": [], "test": []}  # type: dict[str, list[int]]
    for i, build in enumerate(builds):
        part["train" if build < cut_a else "calib" if build < cut_b else "test"].append(i)

    def pick(idx: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
        return [rows[i] for i in idx], [labels[i] for i in idx]

    model = train(*pick(part["train"]), seed=seed)
    calib_rows, calib_labels = pick(part["calib"])
    threshold = threshold_for_recall(model.predict(calib_rows), calib_labels, recall)
    test_rows, test_labels = pick(part["test"])
    measured = fraction_at_recall(model.predict(test_rows), test_labels, threshold)
    measured["random_fraction"] = random_fraction_at_recall(test_labels, recall, seed=seed)
    measured["recall_target"] = recall
    touched = [1.0 if r["touched_any"] or r["failing_on_last"] else 0.0 for r in test_rows]
    measured["touched_fraction"] = sum(touched) / max(1, len(touched))
    measured["touched_recall"] = fraction_at_recall(touched, test_labels, 1.0)["recall"]
    final = train(rows, labels, seed=seed)
    # The refit model scores the calibration builds as seen; keep the lower of its own
    # threshold there and the held-out one, for the target and for the other usual targets.
    first_scores, final_scores = model.predict(calib_rows), final.predict(calib_rows)
    thresholds = {
        f"{target:g}": min(
            threshold_for_recall(final_scores, calib_labels, target),
            threshold_for_recall(first_scores, calib_labels, target),
        )
        for target in sorted({*RECALL_TARGETS, recall})
    }
    final.threshold = thresholds[f"{recall:g}"]
    final.recall_target = recall
    final.metrics = {k: float(v) for k, v in measured.items()}
    return final, {
        "threshold": threshold,
        "thresholds": thresholds,
        **measured,
        "builds": len(order),
        "train_rows": len(part["train"]),
    }


# --- generated history with planted causes ----------------------------------------------------


@dataclass
class World:
    tests: list[dict[str, Any]]
    families: list[str]
    prone: dict[str, str]  # family -> the component it breaks on


def make_world(*, tests: int = 200, families: int = 12, seed: int = 0) -> World:
    """A catalog whose tests cover components, some flaky, and device families of which a
    few are prone to break when one component changes (the planted causes)."""
    rng = random.Random(seed)
    fams = [f"family-{i:02d}" for i in range(families)]
    prone = {fams[i]: rng.choice(COMPONENTS[:8]) for i in range(max(1, families // 5))}
    catalog = []
    for i in range(tests):
        comps = rng.sample(COMPONENTS, k=rng.choice((1, 1, 2, 3)))
        flaky = rng.random() < 0.12
        catalog.append(
            {
                "name": f"{comps[0]}.case_{i:04d}",
                "components": comps,
                "flaky_rate": rng.uniform(0.05, 0.25) if flaky else 0.0,
                "break_p": rng.uniform(0.1, 0.45),
                "duration": rng.choice((30, 60, 90, 120, 240, 480, 900)),
            }
        )
    return World(tests=catalog, families=fams, prone=prone)


def behaviour_for(test: dict[str, Any], world: World) -> dict[str, Any]:
    """The behaviour a simulated agent plays for a test (see `agent.outcome`)."""
    return {
        "flaky_rate": test["flaky_rate"],
        "breaks_with": test["components"],
        "break_p": test["break_p"],
        "prone": {f: c for f, c in world.prone.items() if c in test["components"]},
        "base_fail": 0.0,
    }


def breaks(behaviour: dict[str, Any], key: str, family: str, components: Sequence[str]) -> bool:
    """Whether this change breaks this test on this family: decided once per (build, test,
    family), so a real break fails every attempt while a flaky failure comes and goes."""
    touched = set(behaviour.get("breaks_with", [])) & set(components)
    p = float(behaviour.get("base_fail", 0.0))
    if touched:
        p = max(p, float(behaviour.get("break_p", 0.3)))
        prone = behaviour.get("prone", {}).get(family)
        if prone and prone in touched:
            p = min(0.95, p * 2.5)
    return random.Random(f"{key}:{family}").random() < p


def outcome(
    behaviour: dict[str, Any],
    key: str,
    family: str,
    components: Sequence[str],
    rng: random.Random,
) -> tuple[str, str, str]:
    """(status, failure kind, message) of one attempt of a test with planted causes;
    `key` names the (build, test) so a break is the same on every attempt."""
    if breaks(behaviour, key, family, components):
        touched = sorted(set(behaviour.get("breaks_with", [])) & set(components))
        return "failed", "assertion", f"assertion failed in {', '.join(touched) or 'setup'}"
    if rng.random() < float(behaviour.get("flaky_rate", 0.0)):
        kind = rng.choice(("network", "infra", "assertion"))
        return "failed", kind, f"intermittent {kind} failure"
    return "passed", "", ""


def generate_history(world: World, *, builds: int = 120, seed: int = 1) -> list[dict[str, Any]]:
    """Results of `builds` changes, every test on every family, with planted causes, each
    failure retried once (a flaky one passes); a tenth of real breaks stay broken for a
    few builds (already failing before the next change)."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    broken: dict[tuple[str, str], int] = {}
    for build in range(1, builds + 1):
        components = rng.sample(COMPONENTS, k=rng.choice((1, 1, 2, 3)))
        for test in world.tests:
            behaviour = behaviour_for(test, world)
            key = f"{seed}:{build}:{test['name']}"
            for family in world.families:
                still_broken = broken.get((test["name"], family), 0) > build
                status, _, _ = outcome(behaviour, key, family, components, rng)
                failed, flaky = status == "failed" or still_broken, False
                if failed and not still_broken:
                    again, _, _ = outcome(behaviour, key, family, components, rng)
                    failed, flaky = again == "failed", again == "passed"
                    if failed and rng.random() < 0.1:  # not fixed at once: stays broken
                        broken[(test["name"], family)] = build + rng.randint(2, 8)
                records.append(
                    {
                        "build": build,
                        "components": components,
                        "test": test["name"],
                        "test_components": test["components"],
                        "family": family,
                        "failed": failed,
                        "flaky": flaky,
                    }
                )
    return records


# --- the flow's helpers -----------------------------------------------------------------------


def lab_history() -> list[dict[str, Any]]:
    """The lab's own results as history records (empty when there is no database)."""
    try:
        from popcorn.db import session_scope
        from popcorn.devicelab import analysis

        with session_scope(readonly=True) as session:
            return analysis.history_records(session=session)
    except Exception:  # no installation reachable from this process: generate instead
        return []


def keras_comparison(
    records: Sequence[dict[str, Any]], *, recall: float, seed: int = 0
) -> dict[str, Any]:
    """The same split scored by a small Keras network, when TensorFlow is installed."""
    try:
        import tensorflow as tf
    except ImportError:
        return {"available": False, "reason": "tensorflow is not installed (an optional extra)"}
    import numpy as np

    rows, labels, builds = rows_from_history(records)
    order = sorted(set(builds))
    cut_a, cut_b = order[int(len(order) * 0.6)], order[int(len(order) * 0.8)]
    x, y = matrix(rows), np.array(labels)
    b = np.array(builds)
    train_i, calib_i, test_i = b < cut_a, (b >= cut_a) & (b < cut_b), b >= cut_b
    tf.random.set_seed(seed)
    norm = tf.keras.layers.Normalization()
    norm.adapt(x[train_i])
    net = tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=(x.shape[1],)),
            norm,
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    net.compile(optimizer="adam", loss="binary_crossentropy")
    net.fit(x[train_i], y[train_i], epochs=5, batch_size=256, verbose=0)
    calib = net.predict(x[calib_i], verbose=0).ravel().tolist()
    threshold = threshold_for_recall(calib, y[calib_i].tolist(), recall)
    scored = net.predict(x[test_i], verbose=0).ravel().tolist()
    return {"available": True, **fraction_at_recall(scored, y[test_i].tolist(), threshold)}


def card_html(
    evaluation: dict[str, Any], measured: dict[str, Any], keras: dict[str, Any], source: str
) -> str:
    """The flow's card: static HTML (the console shows cards with scripts off)."""
    from html import escape

    rows = card_rows(measured, keras)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    note = "" if keras.get("available") else f"<p>Keras: {escape(keras.get('reason', ''))}</p>"
    return (
        "<html><body style='font-family:sans-serif'>"
        f"<h1>Device test failure model</h1><p>History: {escape(source)}, "
        f"{int(measured['rows'])} held-out (test, family) rows, "
        f"{int(measured['failures'])} failures.</p>"
        f"<p>{escape(str(evaluation['metric']))}: model {evaluation['model']:.3f} vs random "
        f"{evaluation['baseline']:.3f} (lower is better)</p>"
        "<table border='1' cellpadding='4'><tr><th>selection</th><th>tests run</th>"
        f"<th>failing-test recall</th></tr>{body}</table>{note}</body></html>"
    )


def card_rows(measured: dict[str, Any], keras: dict[str, Any]) -> list[list[str]]:
    """Selection strategies with the share of tests each runs and the recall it keeps."""

    def pct(value: float) -> str:
        return f"{100 * value:.1f} %"

    rows = [
        ["gradient boosting", pct(measured["fraction_run"]), pct(measured["recall"])],
        ["random order", pct(measured["random_fraction"]), pct(evaluation_recall(measured))],
        [
            "tests of touched components",
            pct(measured["touched_fraction"]),
            pct(measured["touched_recall"]),
        ],
    ]
    if keras.get("available"):
        rows.append(["Keras network", pct(keras["fraction_run"]), pct(keras["recall"])])
    return rows


def evaluation_recall(measured: dict[str, Any]) -> float:
    """Random order is run until it reaches the same recall target as the model's."""
    return float(measured.get("recall_target", 0.99))
