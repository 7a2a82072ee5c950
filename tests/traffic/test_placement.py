"""Content placement: fill each site's storage with the titles that serve the most requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from popcorn.traffic.optimize import PlanInputError
from popcorn.traffic.placement import plan_placement


def _catalogue(sites: int, titles: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = 1 / np.arange(1, titles + 1) ** 0.8
    rng.shuffle(base)
    popularity = base * rng.lognormal(0, 1, (sites, titles))
    sizes = rng.lognormal(1, 0.8, titles)
    storage = sizes.sum() * rng.uniform(0.05, 0.2, sites)
    return popularity, sizes, storage


def _reference_greedy(pop: np.ndarray, sizes: np.ndarray, storage: float) -> set[int]:
    """The textbook greedy, one title at a time."""
    room = storage
    chosen = set()
    for t in np.argsort(-(pop / sizes), kind="stable"):
        if pop[t] > 0 and sizes[t] <= room:
            chosen.add(int(t))
            room -= sizes[t]
    return chosen


def test_every_site_is_filled_within_its_storage() -> None:
    popularity, sizes, storage = _catalogue(5, 2000)
    plan = plan_placement(popularity, sizes, storage)

    for i in range(5):
        assert sizes[plan.selected[i]].sum() <= storage[i] * (1 + 1e-9)
        assert plan.used[i] == pytest.approx(sizes[plan.selected[i]].sum())
        assert plan.served[i] == pytest.approx(popularity[i, plan.selected[i]].sum())
        # Full: nothing left out would still fit.
        left = np.setdiff1d(np.arange(2000), plan.selected[i])
        assert sizes[left].min() > storage[i] - plan.used[i]
    assert 0 < plan.local_share <= plan.bound_share <= 1


@pytest.mark.parametrize("titles", [3000, 40_000])
def test_fill_matches_the_one_title_at_a_time_greedy(titles: int) -> None:
    popularity, sizes, storage = _catalogue(2, titles, seed=titles)
    plan = plan_placement(popularity, sizes, storage)

    for i in range(2):
        assert set(plan.selected[i].tolist()) == _reference_greedy(popularity[i], sizes, storage[i])


def test_density_beats_size_blind_popularity() -> None:
    # One big hit fills the site by itself; ten small titles serve five times more.
    popularity = np.array([[10.0] + [5.0] * 10])
    sizes = np.array([10.0] + [1.0] * 10)
    density = plan_placement(popularity, sizes, 10.0)
    naive = plan_placement(popularity, sizes, 10.0, strategy="popularity")

    assert density.served[0] == 50.0
    assert naive.served[0] == 10.0
    assert density.local_share == pytest.approx(50 / 60)


def test_on_a_realistic_catalogue_density_serves_more_than_popularity_greedy() -> None:
    popularity, sizes, storage = _catalogue(4, 5000, seed=3)
    density = plan_placement(popularity, sizes, storage)
    naive = plan_placement(popularity, sizes, storage, strategy="popularity")

    assert density.local_share > naive.local_share


def test_bound_says_how_far_from_the_best_fill_the_plan_can_be() -> None:
    # Greedy takes the densest title (6 bytes) and nothing else fits; 5+5 would serve more.
    plan = plan_placement(np.array([[7.0, 5.0, 5.0]]), np.array([6.0, 5.0, 5.0]), 10.0)

    assert plan.served[0] == 7.0
    assert plan.bound[0] == pytest.approx(7 + 5 * 4 / 5)


def test_sparse_popularity_gives_the_same_plan_as_dense() -> None:
    popularity, sizes, storage = _catalogue(3, 3000, seed=5)
    popularity[popularity < np.quantile(popularity, 0.7)] = 0.0
    dense = plan_placement(popularity, sizes, storage)
    sparse = plan_placement(sp.csr_matrix(popularity), sizes, storage)

    for a, b in zip(dense.selected, sparse.selected, strict=True):
        assert set(a.tolist()) == set(b.tolist())
    assert sparse.local_share == pytest.approx(dense.local_share)


def test_fill_plan_fetches_in_value_order_and_evicts_the_rest() -> None:
    popularity = np.array([[1.0, 9.0, 4.0, 8.0]])
    sizes = np.array([1.0, 3.0, 1.0, 2.0])
    plan = plan_placement(popularity, sizes, 6.0, sites=["lhr-1"], titles=["a", "b", "c", "d"])

    # Densities: c=4, d=4, b=3, a=1 -> c, d, b fill 6 bytes.
    assert plan.fill_order("lhr-1").tolist() == [2, 3, 1]
    fill = plan.fill_plan("lhr-1", current=[0, 1])
    assert fill.fetch.tolist() == [2, 3]
    assert fill.evict.tolist() == [0]
    assert fill.fetch_bytes == 3.0
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["sites"][0]["titles"] == ["c", "d", "b"]
    assert fill.to_dict(plan.titles)["evict"] == ["a"]


def test_site_with_room_for_everything_takes_every_requested_title() -> None:
    plan = plan_placement(np.array([[1.0, 0.0, 2.0]]), np.array([1.0, 1.0, 1.0]), 100.0)

    assert sorted(plan.selected[0].tolist()) == [0, 2]
    assert plan.local_share == 1.0


@pytest.mark.parametrize(
    ("popularity", "sizes", "storage", "field"),
    [
        (np.ones((2, 3)), np.ones(2), 1.0, "sizes"),
        (np.ones((2, 3)), np.array([1.0, 0.0, 1.0]), 1.0, "sizes"),
        (-np.ones((2, 3)), np.ones(3), 1.0, "popularity"),
        (np.full((2, 3), np.nan), np.ones(3), 1.0, "popularity"),
        (np.ones(3), np.ones(3), 1.0, "popularity"),
        (np.ones((2, 3)), np.ones(3), [1.0, 2.0, 3.0], "storage"),
        (np.ones((2, 3)), np.ones(3), -1.0, "storage"),
    ],
)
def test_bad_inputs_name_the_field(
    popularity: np.ndarray, sizes: np.ndarray, storage: object, field: str
) -> None:
    with pytest.raises(PlanInputError) as err:
        plan_placement(popularity, sizes, storage)  # type: ignore[arg-type]
    assert err.value.field == field


def test_names_must_match_the_matrix() -> None:
    with pytest.raises(PlanInputError, match="sites"):
        plan_placement(np.ones((2, 3)), np.ones(3), 1.0, sites=["only-one"])
    with pytest.raises(PlanInputError, match="unknown site"):
        plan_placement(np.ones((1, 3)), np.ones(3), 1.0).fill_plan("nowhere")
