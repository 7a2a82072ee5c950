"""Recommendations: implicit-feedback matrix factorisation (ALS) over a viewing log.

`generate_log` makes a viewing log with planted taste clusters and a popularity skew
(members mostly watch their cluster's titles, weighted by a Zipf popularity), each play
with a watch fraction and a time. `train_als` is the alternating least squares of Hu,
Koren and Volinsky (confidence 1 + alpha x watch fraction), solved in batches of members
with numpy so a million plays trains in a minute. `Recommender` is the servable model:
top titles for a member, and predicted plays per title and region for traffic placement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
FloatArray = NDArray[np.float32]


@dataclass
class ViewingLog:
    member: NDArray[np.int64]
    title: NDArray[np.int64]
    fraction: NDArray[np.float32]
    day: NDArray[np.float32]
    member_region: NDArray[np.int64]
    member_cluster: NDArray[np.int64]
    title_cluster: NDArray[np.int64]
    members: int
    titles: int
    days: int


def generate_log(
    *,
    members: int,
    titles: int,
    plays: int,
    clusters: int = 8,
    days: int = 28,
    affinity: float = 0.8,
    seed: int = 7,
) -> ViewingLog:
    """Plays with taste clusters (`affinity` of a member's plays go to their cluster's titles)
    and Zipf popularity; more active members watch more (a log-normal activity)."""
    rng = np.random.default_rng(seed)
    title_cluster = rng.integers(0, clusters, titles)
    popularity = 1.0 / np.arange(1, titles + 1) ** 0.9
    popularity = popularity[rng.permutation(titles)]
    member_cluster = rng.integers(0, clusters, members)
    member_region = rng.integers(0, len(REGIONS), members)
    activity = rng.lognormal(0.0, 1.0, members)
    member = rng.choice(members, size=plays, p=activity / activity.sum())
    own = rng.random(plays) < affinity
    title = np.empty(plays, dtype=np.int64)
    title[~own] = rng.choice(titles, size=int((~own).sum()), p=popularity / popularity.sum())
    for c in range(clusters):
        pick = own & (member_cluster[member] == c)
        in_cluster = np.flatnonzero(title_cluster == c)
        if len(in_cluster) == 0 or not pick.any():
            continue
        weights = popularity[in_cluster] / popularity[in_cluster].sum()
        title[pick] = in_cluster[rng.choice(len(in_cluster), size=int(pick.sum()), p=weights)]
    fraction = rng.beta(2.0, 1.2, plays).astype(np.float32)
    day = rng.uniform(0, days, plays).astype(np.float32)
    return ViewingLog(
        member.astype(np.int64),
        title,
        fraction,
        day,
        member_region,
        member_cluster,
        title_cluster,
        members,
        titles,
        days,
    )


def split_by_time(log: ViewingLog, test_days: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Train on plays before the last `test_days`, test on the plays after (members x
    titles; values are summed watch fractions)."""
    cut = log.days - test_days
    shape = (log.members, log.titles)

    def matrix(mask: NDArray[np.bool_]) -> sp.csr_matrix:
        m = sp.csr_matrix((log.fraction[mask], (log.member[mask], log.title[mask])), shape=shape)
        m.sum_duplicates()
        return m

    return matrix(log.day < cut), matrix(log.day >= cut)


def _half_step(conf: sp.csr_matrix, fixed: FloatArray, reg: float, chunk: int) -> FloatArray:
    """Solve every row's factors given the other side's: (YtY + Yt(Cu-I)Y + reg I) x = Yt Cu p.

    Rows are taken in chunks of about `chunk` plays; each row's Yt(Cu-I)Y is one sparse
    (rows x plays) product with the plays' outer products, so the sums run in compiled code."""
    k = fixed.shape[1]
    gram = fixed.T @ fixed + reg * np.eye(k, dtype=np.float32)
    out = np.zeros((conf.shape[0], k), dtype=np.float32)
    indptr, indices, data = conf.indptr, conf.indices, conf.data
    start = 0
    n = conf.shape[0]
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + chunk, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        lo, hi = int(indptr[start]), int(indptr[stop])
        rows = stop - start
        b = np.zeros((rows, k), dtype=np.float32)
        a = np.broadcast_to(gram, (rows, k, k)).copy()
        if hi > lo:
            y = fixed[indices[lo:hi]]
            c = data[lo:hi].astype(np.float32)
            local = (indptr[start : stop + 1] - lo).astype(np.int64)
            columns = np.arange(hi - lo)
            weights = sp.csr_matrix((c, columns, local), shape=(rows, hi - lo))
            ones = sp.csr_matrix((c + 1.0, columns, local), shape=(rows, hi - lo))
            b = np.asarray(ones @ y, dtype=np.float32)
            outer = (y[:, :, None] * y[:, None, :]).reshape(hi - lo, k * k)
            a += np.asarray(weights @ outer, dtype=np.float32).reshape(rows, k, k)
        out[start:stop] = np.linalg.solve(a, b[..., None])[..., 0]
        start = stop
    return out


def train_als(
    train: sp.csr_matrix,
    *,
    factors: int = 16,
    iterations: int = 8,
    reg: float = 10.0,
    alpha: float = 10.0,
    seed: int = 3,
    chunk: int = 20_000,
) -> tuple[FloatArray, FloatArray]:
    """Member and title factors for implicit feedback (confidence 1 + alpha x fraction)."""
    rng = np.random.default_rng(seed)
    conf = train.astype(np.float32) * np.float32(alpha)
    conf_t = conf.T.tocsr()
    users = (rng.standard_normal((train.shape[0], factors)) * 0.01).astype(np.float32)
    items = (rng.standard_normal((train.shape[1], factors)) * 0.01).astype(np.float32)
    for _ in range(iterations):
        users = _half_step(conf, items, reg, chunk)
        items = _half_step(conf_t, users, reg, chunk)
    return users, items


def _top_k(scores: NDArray[Any], k: int) -> NDArray[np.int64]:
    part = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def evaluate(
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    user_factors: FloatArray | None,
    item_factors: FloatArray | None,
    k: int = 20,
    max_members: int = 20_000,
    seed: int = 5,
) -> dict[str, float]:
    """recall@k and NDCG@k over members with test plays (titles already seen excluded);
    with no factors, the popularity baseline (most played titles in training)."""
    rng = np.random.default_rng(seed)
    members = np.flatnonzero(np.diff(test.indptr))
    if len(members) > max_members:
        members = np.sort(rng.choice(members, max_members, replace=False))
    popularity = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float32)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    recall = ndcg = 0.0
    for lo in range(0, len(members), 2048):
        batch = members[lo : lo + 2048]
        if user_factors is None or item_factors is None:
            scores = np.broadcast_to(popularity, (len(batch), len(popularity))).copy()
        else:
            scores = user_factors[batch] @ item_factors.T
        seen = train[batch]
        scores[seen.nonzero()] = -np.inf
        top = _top_k(scores, k)
        truth = test[batch]
        for row, member_top in enumerate(top):
            relevant = set(truth.indices[truth.indptr[row] : truth.indptr[row + 1]].tolist())
            relevant -= set(seen.indices[seen.indptr[row] : seen.indptr[row + 1]].tolist())
            if not relevant:
                continue
            hits = np.array([t in relevant for t in member_top.tolist()], dtype=float)
            recall += hits.sum() / min(len(relevant), k)
            ideal = discount[: min(len(relevant), k)].sum()
            ndcg += float((hits * discount).sum() / ideal)
    n = max(len(members), 1)
    return {f"recall@{k}": recall / n, f"ndcg@{k}": ndcg / n, "members": float(len(members))}


class Recommender:
    """The served recommendations model: top titles for a member (the most popular for a
    member it has not seen) and `demand`, predicted plays per region and title next week."""

    def __init__(
        self,
        user_factors: FloatArray,
        item_factors: FloatArray,
        seen: sp.csr_matrix,
        popularity: NDArray[np.float32],
        demand: dict[str, dict[str, float]],
        k: int = 10,
    ) -> None:
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.seen = seen
        self.popular = np.argsort(-popularity)[:100]
        self.demand = demand
        self.k = k

    @staticmethod
    def title_name(index: int) -> str:
        return f"title-{index:05d}"

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        answers: list[Any] = []
        for row in rows:
            member = int(row["member"])
            known = 0 <= member < self.user_factors.shape[0]
            seen = (
                self.seen.indices[self.seen.indptr[member] : self.seen.indptr[member + 1]]
                if known
                else []
            )
            if len(seen):
                scores = self.item_factors @ self.user_factors[member]
                scores[seen] = -np.inf
                top = _top_k(scores[None, :], self.k)[0]
            else:
                top = self.popular[: self.k]
            answers.append([self.title_name(int(t)) for t in top])
        return answers


def regional_demand(
    log: ViewingLog, user_factors: FloatArray, item_factors: FloatArray, *, days: float = 7.0
) -> dict[str, dict[str, float]]:
    """Predicted plays per title in each region over the next `days`: the region's members'
    summed affinity for each title, scaled to the region's recent play rate."""
    demand: dict[str, dict[str, float]] = {}
    recent = log.day >= log.days - days
    for r, region in enumerate(REGIONS):
        in_region = log.member_region == r
        affinity = np.clip(user_factors[in_region].sum(axis=0) @ item_factors.T, 0, None)
        plays = float((in_region[log.member] & recent).sum())
        total = float(affinity.sum()) or 1.0
        demand[region] = {
            Recommender.title_name(int(t)): round(float(v) * plays / total, 3)
            for t, v in enumerate(affinity)
            if v > 0
        }
    return demand
