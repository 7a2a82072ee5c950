"""Regional content placement: which titles to pre-position at which CDN site.

Each site serves the requests of its own region, so the share of requests served locally is
the sum over sites of the requests for the titles stored there. With a site's storage as the
knapsack capacity the sites are independent knapsacks, and each is filled greedily by
popularity density (requests per byte): the titles that serve the most requests for the space
they take come first, and titles that no longer fit are skipped so smaller ones can still use
the space. The fractional bound (the greedy prefix plus the fitting fraction of the first
title that does not fit) is reported with it, so every plan states how close to the best
possible fill it is.

Per site only a band of titles around the density threshold is sorted: a sample of the
titles estimates where the best ones fill 80% and 125% of the storage, titles above the band
are taken without sorting, and the estimate is checked (with a full sort as the fallback), so
100,000 titles x 1,000 sites takes seconds. The popularity-only greedy (most requested first,
ignoring size) is the baseline every plan is compared against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import scipy.sparse as sp

from popcorn.traffic.optimize import FloatArray, PlanInputError

IntArray = NDArray[np.intp]
Strategy = Literal["density", "popularity"]


@dataclass(frozen=True)
class SiteFill:
    """What to change at one site: titles to fetch (most valuable first) and to evict."""

    site: str
    fetch: IntArray
    evict: IntArray
    fetch_bytes: float

    def to_dict(self, titles: Sequence[str] | None = None) -> dict[str, Any]:
        def named(idx: IntArray) -> list[Any]:
            return [titles[i] for i in idx.tolist()] if titles is not None else idx.tolist()

        return {
            "site": self.site,
            "fetch": named(self.fetch),
            "evict": named(self.evict),
            "fetch_bytes": self.fetch_bytes,
        }


@dataclass
class PlacementPlan:
    """Titles chosen per site, with the requests they serve locally.

    ``selected[i]`` is the set of title indices for site i in no particular order;
    ``fill_order`` gives them most valuable first, the order to copy them in.
    """

    strategy: Strategy
    sites: tuple[str, ...]
    titles: tuple[str, ...] | None
    selected: list[IntArray]
    storage: FloatArray
    used: FloatArray
    requests: FloatArray
    served: FloatArray
    bound: FloatArray
    sizes: FloatArray
    popularity: FloatArray | sp.csr_matrix = field(repr=False)

    @property
    def local_share(self) -> float:
        """Share of all requests served by the site of their own region."""
        total = float(self.requests.sum())
        return float(self.served.sum()) / total if total > 0 else 0.0

    @property
    def bound_share(self) -> float:
        """No placement can serve a larger share than this (fractional-knapsack bound)."""
        total = float(self.requests.sum())
        return float(self.bound.sum()) / total if total > 0 else 0.0

    @property
    def site_shares(self) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.requests > 0, self.served / self.requests, 0.0)

    def fill_order(self, site: str) -> IntArray:
        """The site's titles, most requests per byte (or most requests, for the baseline) first."""
        if site not in self.sites:
            raise PlanInputError("site", f"unknown site {site!r}")
        i = self.sites.index(site)
        chosen = np.sort(self.selected[i])  # equal values keep catalogue order
        if isinstance(self.popularity, np.ndarray):
            pop = np.asarray(self.popularity[i, chosen], dtype=np.float64)
        else:
            pop = np.asarray(self.popularity[i, chosen].toarray(), dtype=np.float64).ravel()
        key = pop / self.sizes[chosen] if self.strategy == "density" else pop
        return chosen[np.argsort(-key, kind="stable")]

    def fill_plan(self, site: str, current: ArrayLike | None = None) -> SiteFill:
        """Titles to fetch (in fill order) and evict at ``site`` given what it holds now."""
        chosen = self.fill_order(site)
        held = np.zeros(0, dtype=np.intp) if current is None else np.asarray(current, np.intp)
        fetch = chosen[~np.isin(chosen, held)]
        evict = np.setdiff1d(held, chosen)
        return SiteFill(site, fetch, evict, float(self.sizes[fetch].sum()))

    def to_dict(self, *, include_titles: bool = True) -> dict[str, Any]:
        shares = self.site_shares
        sites = []
        for i, name in enumerate(self.sites):
            entry: dict[str, Any] = {
                "site": name,
                "storage": float(self.storage[i]),
                "used": float(self.used[i]),
                "requests": float(self.requests[i]),
                "served": float(self.served[i]),
                "local_share": float(shares[i]),
                "count": int(self.selected[i].size),
            }
            if include_titles:
                idx = self.fill_order(name).tolist()
                entry["titles"] = [self.titles[j] for j in idx] if self.titles else idx
            sites.append(entry)
        return {
            "strategy": self.strategy,
            "local_share": self.local_share,
            "bound_share": self.bound_share,
            "sites": sites,
        }


def plan_placement(
    popularity: ArrayLike | sp.spmatrix | sp.sparray,
    sizes: ArrayLike,
    storage: ArrayLike,
    *,
    sites: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    strategy: Strategy = "density",
) -> PlacementPlan:
    """Fill every site's storage to serve as many of its region's requests as possible.

    ``popularity`` is (sites x titles) expected requests, dense or scipy.sparse; ``sizes`` the
    bytes of each title; ``storage`` the bytes of each site (or one number for all).
    ``strategy="popularity"`` is the size-blind baseline.
    """
    if strategy not in ("density", "popularity"):
        raise PlanInputError("strategy", "must be 'density' or 'popularity'")
    matrix, size, capacity = _check(popularity, sizes, storage)
    n_sites, n_titles = matrix.shape
    site_names = (
        tuple(f"site-{i}" for i in range(n_sites))
        if sites is None
        else _names(sites, n_sites, "sites", "site")
    )
    title_names = None if titles is None else _names(titles, n_titles, "titles", "title")

    selected: list[IntArray] = []
    used = np.zeros(n_sites)
    served = np.zeros(n_sites)
    bound = np.zeros(n_sites)
    requests = np.zeros(n_sites)
    for i in range(n_sites):
        idx, pop = _row(matrix, i)
        requests[i] = float(pop.sum(dtype=np.float64))
        keep = pop > 0
        if not keep.all():
            idx, pop = idx[keep], pop[keep]
        key = pop / size[idx] if strategy == "density" else pop.astype(np.float64)
        chosen, got, fraction_bound = _fill(idx, key, pop, size, float(capacity[i]))
        selected.append(chosen)
        used[i] = float(size[chosen].sum())
        served[i] = got
        bound[i] = fraction_bound if strategy == "density" else math.nan
    return PlacementPlan(
        strategy,
        site_names,
        title_names,
        selected,
        capacity,
        used,
        requests,
        served,
        bound,
        size,
        matrix,
    )


def _fill(
    idx: IntArray,
    key: FloatArray,
    pop: FloatArray,
    size: FloatArray,
    capacity: float,
) -> tuple[IntArray, float, float]:
    """Greedy fill by ``key`` (highest first), skipping titles that no longer fit.

    Returns the chosen titles (as a set, not in fill order), the requests they serve and the
    fractional bound. Titles well above the density threshold are taken without sorting; only
    a band around the threshold, estimated from a sample, is sorted.
    """
    if idx.size == 0 or capacity <= 0:
        return np.zeros(0, dtype=np.intp), 0.0, 0.0
    sizes = size[idx]
    limit = capacity * (1 + 1e-12)
    if float(sizes.sum()) <= limit:
        return idx, float(pop.sum(dtype=np.float64)), float(pop.sum(dtype=np.float64))
    split = _threshold_band(key, sizes, capacity)
    if split is None:
        sure = np.zeros(0, dtype=np.intp)
        band = np.arange(idx.size)
        low = np.zeros(0, dtype=np.intp)
    else:
        sure, band, low = split
    band = band[np.argsort(-key[band])]
    filled = float(sizes[sure].sum())
    running = filled + np.cumsum(sizes[band])
    prefix = int(np.searchsorted(running, limit, side="right"))
    room = capacity - (float(running[prefix - 1]) if prefix else filled)
    chosen = [sure, band[:prefix]]
    bound = float(pop[sure].sum(dtype=np.float64) + pop[band[:prefix]].sum(dtype=np.float64))
    if prefix < band.size:
        brk = band[prefix]
        bound += float(pop[brk]) * min(1.0, room / float(sizes[brk]))
    # After the first title that does not fit, only titles small enough for the room left can
    # still go in, so filter by size before ordering the rest.
    later = band[prefix + 1 :]
    later = later[sizes[later] <= room]
    small = low[sizes[low] <= room]
    small = small[np.argsort(-key[small])]
    rest = np.concatenate([later, small])
    while rest.size and room > 0:
        rest = rest[sizes[rest] <= room]
        if not rest.size:
            break
        cum = np.cumsum(sizes[rest])
        count = int(np.searchsorted(cum, room * (1 + 1e-12), side="right"))
        chosen.append(rest[:count])
        room -= float(cum[count - 1]) if count else 0.0
        rest = rest[count + 1 :]
    positions = np.concatenate(chosen)
    return idx[positions], float(pop[positions].sum(dtype=np.float64)), bound


_SAMPLE = 8192


def _threshold_band(
    key: FloatArray, sizes: FloatArray, capacity: float
) -> tuple[IntArray, IntArray, IntArray] | None:
    """Split titles into sure (key above the band), band, and low, around the fill threshold.

    A sample estimates the keys at which the best titles fill 80% and 125% of the storage.
    The split is used only if the sure titles fit and sure plus band overflow the storage, so
    the threshold lies inside the band; otherwise None (sort everything).
    """
    n = key.size
    if n <= 4 * _SAMPLE:
        return None
    rng = np.random.default_rng(n)
    sample = rng.integers(0, n, _SAMPLE)
    order = np.argsort(-key[sample])
    scaled = np.cumsum(sizes[sample][order]) * (n / _SAMPLE)
    hi_at = int(np.searchsorted(scaled, 0.8 * capacity))
    lo_at = int(np.searchsorted(scaled, 1.25 * capacity))
    if hi_at == 0 or lo_at >= _SAMPLE:
        return None
    hi = key[sample[order[hi_at]]]
    lo = key[sample[order[lo_at]]]
    above = key > hi
    below = key < lo
    sure = np.flatnonzero(above)
    band = np.flatnonzero(~above & ~below)
    if float(sizes[sure].sum()) > capacity or float(sizes[sure].sum() + sizes[band].sum()) <= (
        capacity * (1 + 1e-12)
    ):
        return None
    return sure, band, np.flatnonzero(below)


def _row(matrix: FloatArray | sp.csr_matrix, i: int) -> tuple[IntArray, FloatArray]:
    if isinstance(matrix, np.ndarray):
        row = matrix[i]
        return np.arange(row.size, dtype=np.intp), row
    start, end = matrix.indptr[i], matrix.indptr[i + 1]
    return matrix.indices[start:end].astype(np.intp), matrix.data[start:end]


def _check(
    popularity: ArrayLike | sp.spmatrix | sp.sparray, sizes: ArrayLike, storage: ArrayLike
) -> tuple[FloatArray | sp.csr_matrix, FloatArray, FloatArray]:
    import scipy.sparse as sp  # here, not at the top: the CLI imports this module

    matrix: FloatArray | sp.csr_matrix
    if sp.issparse(popularity):
        matrix = sp.csr_matrix(popularity)
        matrix.sum_duplicates()
        values = matrix.data
    else:
        try:
            matrix = np.asarray(popularity)
            if matrix.dtype.kind not in "fiu":
                matrix = matrix.astype(np.float64)
        except (TypeError, ValueError):
            raise PlanInputError("popularity", "is not a numeric matrix") from None
        values = matrix
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise PlanInputError("popularity", f"must be (sites x titles), got shape {matrix.shape}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise PlanInputError("popularity", "requests must be finite and >= 0")
    n_sites, n_titles = matrix.shape
    try:
        size = np.asarray(sizes, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlanInputError("sizes", "is not a numeric list") from None
    if size.shape != (n_titles,):
        raise PlanInputError("sizes", f"has shape {size.shape}, expected ({n_titles},)")
    if not np.isfinite(size).all() or (size <= 0).any():
        raise PlanInputError("sizes", "every title size must be finite and > 0")
    try:
        capacity = np.broadcast_to(np.asarray(storage, dtype=np.float64), (n_sites,)).copy()
    except (TypeError, ValueError):
        raise PlanInputError("storage", f"must be one number or one per site ({n_sites})") from None
    if not np.isfinite(capacity).all() or (capacity < 0).any():
        raise PlanInputError("storage", "must be finite and >= 0")
    return matrix, size, capacity


def _names(names: Sequence[str], n: int, field: str, kind: str) -> tuple[str, ...]:
    out = tuple(names)
    if len(out) != n:
        raise PlanInputError(field, f"has {len(out)} names for {n} {kind}s")
    if len(set(out)) != n:
        raise PlanInputError(field, f"has duplicate {kind} names")
    return out
