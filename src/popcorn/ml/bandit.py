"""Artwork personalization: a contextual bandit choosing which artwork to show a member.

`generate_impressions` logs impressions under a uniform-random logging policy: the member's
taste cluster, the title, the hour, the artwork shown and whether it was clicked (true click
rates depend on the artwork, the cluster's taste for its style and the time of day).
`ArtworkBandit` keeps Beta posteriors of click rate per (cluster, title, daypart,
artwork), shrunk level by level toward the cluster's and then the title's artwork
averages, and shows the best posterior mean (or a Thompson sample, to explore).
`replay` is Li et al.'s offline replay: walk the logged events,
keep those where the policy picks the artwork that was shown, and let it learn from them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

ARTWORKS = 4


def daypart(hour: int) -> int:
    return 0 if 6 <= hour < 18 else 1


def generate_impressions(
    *, events: int, clusters: int = 6, titles: int = 50, seed: int = 13
) -> dict[str, NDArray[Any]]:
    rng = np.random.default_rng(seed)
    style = rng.integers(0, 3, (titles, ARTWORKS))
    base = rng.uniform(0.03, 0.06, (titles, ARTWORKS))
    # each taste cluster has a favourite artwork style (+8 points) and mild views of the rest
    taste = rng.uniform(0.0, 0.02, (clusters, 3))
    taste[np.arange(clusters), rng.integers(0, 3, clusters)] += 0.08
    night = rng.uniform(-0.01, 0.03, 3)
    cluster = rng.integers(0, clusters, events)
    title = rng.integers(0, titles, events)
    hour = rng.integers(0, 24, events)
    shown = rng.integers(0, ARTWORKS, events)
    part = (hour < 6) | (hour >= 18)
    ctr = (
        base[title, shown] + taste[cluster, style[title, shown]] + part * night[style[title, shown]]
    )
    clicked = rng.random(events) < np.clip(ctr, 0, 1)
    return {"cluster": cluster, "title": title, "hour": hour, "shown": shown, "clicked": clicked}


class ArtworkBandit:
    """Click rates per (taste cluster, title, daypart, artwork), each level shrunk toward
    the one above it (cluster, title, artwork; then title, artwork), so a sparse context
    borrows from its neighbours; `predict` shows the best estimate."""

    def __init__(self, clusters: int, titles: int, prior_strength: float = 20.0) -> None:
        self.shape = (clusters, titles, 2, ARTWORKS)
        self.clicks = np.zeros(self.shape)
        self.views = np.zeros(self.shape)
        self.prior_strength = prior_strength

    def update(self, c: int, t: int, hour: int, arm: int, reward: bool) -> None:
        self.clicks[c, t, daypart(hour), arm] += reward
        self.views[c, t, daypart(hour), arm] += 1

    def fit(self, log: dict[str, NDArray[Any]]) -> ArtworkBandit:
        parts = ((log["hour"] < 6) | (log["hour"] >= 18)).astype(int)
        index = (log["cluster"], log["title"], parts, log["shown"])
        np.add.at(self.clicks, index, log["clicked"].astype(float))
        np.add.at(self.views, index, 1.0)
        return self

    @property
    def title_clicks(self) -> NDArray[Any]:
        return self.clicks.sum(axis=(0, 2))

    @property
    def title_views(self) -> NDArray[Any]:
        return self.views.sum(axis=(0, 2))

    def _posterior(self, c: int, t: int, hour: int) -> tuple[NDArray[Any], NDArray[Any]]:
        s = self.prior_strength
        overall = (self.clicks.sum() + 1) / (self.views.sum() + 10)
        title = (self.clicks[:, t].sum(axis=(0, 1)) + s * overall) / (
            self.views[:, t].sum(axis=(0, 1)) + s
        )
        cluster = (self.clicks[c, t].sum(axis=0) + s * title) / (self.views[c, t].sum(axis=0) + s)
        clicks, views = self.clicks[c, t, daypart(hour)], self.views[c, t, daypart(hour)]
        return clicks + s * cluster, views - clicks + s * (1 - cluster)

    def choose(self, c: int, t: int, hour: int, rng: np.random.Generator | None = None) -> int:
        alpha, beta = self._posterior(c, t, hour)
        if rng is not None:
            return int(np.argmax(rng.beta(alpha, beta)))
        return int(np.argmax(alpha / (alpha + beta)))

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            c, t = int(row["cluster"]), int(row["title"])
            if not (0 <= c < self.shape[0] and 0 <= t < self.shape[1]):
                out.append(None)
                continue
            out.append(self.choose(c, t, int(row["hour"]) % 24))
        return out


def replay(
    log: dict[str, NDArray[Any]],
    choose: Any,
    *,
    learn: Any = None,
) -> dict[str, float]:
    """Replay CTR of a policy on logged uniform-random impressions."""
    matched = clicks = 0
    for c, t, h, shown, clicked in zip(
        log["cluster"].tolist(),
        log["title"].tolist(),
        log["hour"].tolist(),
        log["shown"].tolist(),
        log["clicked"].tolist(),
        strict=True,
    ):
        if choose(c, t, h) != shown:
            continue
        matched += 1
        clicks += bool(clicked)
        if learn is not None:
            learn(c, t, h, shown, bool(clicked))
    return {"ctr": clicks / matched if matched else 0.0, "matched": float(matched)}
