"""Triage benchmark: clustered baseline and outlier ranking of 1,000 hosts x 5,000 rows (5 M rows).

Baseline, in the same run: the original Diffy's method, a pairwise diff of every host
against one baseline host (the first), as Python set differences per host.

The fleet: 5,000 common rows per host over 11 tables, each host swapping 2 % of them
for rows drawn from a pool shared by random subsets (ordinary drift), a cluster of three
hosts sharing five planted rows, and one host lacking 50 common rows. Timings cover the
analysis only (arrays in memory, as `triage.analysis` builds them from stored keys);
peak memory is what tracemalloc sees allocated by each method (numpy and pandas report
to it).

Ours includes clustering the hosts by the Jaccard similarity of their row sets and
ranking each host against its cluster.

Run: .venv/bin/python benchmarks/bench_triage.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from popcorn.triage import baseline as bl

sys.path.insert(0, str(Path(__file__).parent))
from common import git_revision, machine, write_result

CLUSTER = (101, 202, 303)
LACKING = 404


def fleet(hosts: int, rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    common = rng.integers(-(2**62), 2**62, size=rows)
    tables = np.arange(rows) % 11
    pool = rng.integers(-(2**62), 2**62, size=rows // 2)
    host = np.repeat(np.arange(hosts), rows)
    key = np.tile(common, hosts)
    table = np.tile(tables, hosts)
    drift = rng.choice(hosts * rows, hosts * rows // 50, replace=False)
    key[drift] = pool[rng.integers(0, len(pool), size=len(drift))]
    for h in CLUSTER:
        key[h * rows : h * rows + 5] = np.arange(5) + 1_000_003
    keep = np.ones(len(key), dtype=bool)
    keep[LACKING * rows + 100 : LACKING * rows + 150] = False
    return host[keep], table[keep], key[keep]


def measured(func: Callable[[], Any]) -> tuple[Any, float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="500 hosts x 5,000 rows")
    options = parser.parse_args()
    hosts, rows = (500, 5000) if options.quick else (1000, 5000)
    host, table, key = fleet(hosts, rows)

    def ours() -> tuple[bl.Ranking, list[bl.Finding], np.ndarray]:
        base = bl.build_baseline(host, table, key, n_hosts=hosts, n_tables=11)
        labels = bl.cluster_hosts(base, threshold=0.7)
        ranking = bl.rank_clustered(base, labels, rare_fraction=0.01)
        return ranking, bl.findings(ranking), labels

    def similarity_only() -> np.ndarray:
        base = bl.build_baseline(host, table, key, n_hosts=hosts, n_tables=11)
        return bl.similarity(base)

    (ranking, found, labels), t_ours, m_ours = measured(ours)
    _, t_sim, _ = measured(similarity_only)
    (added, removed), t_naive, m_naive = measured(
        lambda: bl.naive_pairwise(host, key, n_hosts=hosts)
    )
    cluster = next((f for f in found if f.hosts == list(CLUSTER)), None)
    lacking_rank = int(np.nonzero(ranking.order == LACKING)[0][0]) + 1
    naive_order = np.argsort(-(added + removed), kind="stable")
    naive_lacking = int(np.nonzero(naive_order == LACKING)[0][0]) + 1
    naive_cluster = sorted(int(np.nonzero(naive_order == h)[0][0]) + 1 for h in CLUSTER)
    cluster_ranks = sorted(int(np.nonzero(ranking.order == h)[0][0]) + 1 for h in CLUSTER)
    lines = [
        "## Triage: baseline and outlier ranking",
        "",
        f"Machine: {machine()}; revision {git_revision()}.",
        "",
        f"{hosts:,} hosts x {rows:,} rows ({len(key):,} rows), 2 % drift per host, a "
        "cluster of 3 hosts sharing 5 planted rows, one host lacking 50 common rows.",
        "",
        "| method | time | peak memory (tracemalloc) |",
        "|---|---:|---:|",
        f"| clustered baseline + ranking + findings (numpy/pandas/scipy) | {t_ours:.2f} s | "
        f"{m_ours:.0f} MiB |",
        "| of which: building the baseline and the Jaccard similarity of every host pair | "
        f"{t_sim:.2f} s | |",
        f"| naive: diff each host against the first (Python sets) | {t_naive:.2f} s | "
        f"{m_naive:.0f} MiB |",
        "",
        "What each finds:",
        "",
        f"- clusters at Jaccard 0.7: {len(set(labels.tolist()))} (sizes "
        f"{sorted(np.bincount(labels).tolist(), reverse=True)[:5]}); every host is ranked "
        "against its own cluster.",
        f"- baseline: the 3-host cluster is {'one finding' if cluster else 'NOT found'}"
        f" (hosts ranked {cluster_ranks}); the host lacking 50 rows ranks {lacking_rank}: "
        "with 2 % drift every common row is already absent from about 20 hosts, so 50 more "
        "absences are drift-level and, at rare fraction 0.01, not evidence.",
        f"- naive: the cluster hosts rank {naive_cluster} and the lacking host "
        f"{naive_lacking} of {hosts} by rows differing from host 0 (every host differs from "
        "host 0 by its own drift plus host 0's, so the ranking is mostly noise).",
        "",
        "Goal: under 5 s for the baseline and ranking of 5 M rows.",
        "",
        f"Load average at the end (1, 5, 15 min): {[round(x, 2) for x in os.getloadavg()]}"
        "; both methods ran in the same conditions.",
    ]
    text = "\n".join(lines)
    print(text)
    if not options.quick:
        write_result("triage", text)


if __name__ == "__main__":
    main()
