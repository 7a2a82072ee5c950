"""Baseline and rarity, vectorised: which hosts of a group are odd, and why.

Input: one array entry per observed row, (host index, table index, 64-bit key of the
normalised row). The baseline counts, for every key, how many hosts have it; the
prevalence is taken among the hosts that returned that table at all, so a host whose
collector failed for one table is not accused of missing all its rows.

Scores are surprisal in bits. A row present on `c` of `n` hosts scores log2(n / c) on
those hosts when `c` is at most the rare threshold; a row present on `c` hosts but absent
from the few others (n - c at most the threshold) scores log2(n / (n - c)) on the hosts
that lack it. Hosts rank by their rarest evidence, then by the sum of it. Keys that are
rare on exactly the same set of hosts form one finding: a cluster of hosts sharing odd
rows reads as one story instead of many.

Everything is numpy/pandas over whole arrays; Python loops only touch the results (a
few hundred hosts and findings), never the millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXTRA, MISSING = 0, 1
KINDS = ("extra", "missing")
MIN_HOSTS = 3
MISSING_CHUNK = 20_000_000  # cells of the (missing key x host) presence grid per step


@dataclass
class Baseline:
    """Per distinct key: its value, table, how many hosts have it, among how many."""

    n_hosts: int
    keys: np.ndarray  # int64, distinct keys
    key_table: np.ndarray  # int32
    counts: np.ndarray  # int64, hosts having the key
    peers: np.ndarray  # int64, hosts that returned the key's table
    pair_host: np.ndarray  # int32, deduplicated (host, key) pairs...
    pair_code: np.ndarray  # int64  ...sorted by key code, then host
    host_tables: np.ndarray  # bool (n_hosts, n_tables): which tables a host returned


@dataclass
class Evidence:
    """One array entry per (host, key) piece of evidence."""

    host: np.ndarray
    code: np.ndarray
    kind: np.ndarray  # EXTRA or MISSING
    score: np.ndarray


@dataclass
class Ranking:
    order: np.ndarray  # host indices, most odd first
    max_score: np.ndarray  # per host
    total_score: np.ndarray
    extra: np.ndarray  # rare rows per host
    missing: np.ndarray  # common rows absent per host
    evidence: Evidence  # sorted by host, then score (highest first)


@dataclass
class Finding:
    kind: str
    hosts: list[int]
    codes: np.ndarray  # keys of the finding, highest score first
    score: float


def build_baseline(
    host: np.ndarray,
    table: np.ndarray,
    key: np.ndarray,
    *,
    n_hosts: int,
    n_tables: int,
    reported: np.ndarray | None = None,
) -> Baseline:
    """Count hosts per key. `reported` (n_hosts x n_tables bool) says which tables each host
    returned, even empty ones; by default a host returned the tables it has rows in."""
    import pandas as pd  # here, not at the top: the CLI imports this module

    host = np.asarray(host, dtype=np.int64)
    codes, uniques = pd.factorize(np.asarray(key, dtype=np.int64), sort=False)
    codes = codes.astype(np.int64)
    n_keys = len(uniques)
    key_table = np.zeros(n_keys, dtype=np.int32)
    key_table[codes] = table
    pairs = pd.unique(codes * n_hosts + host)
    pairs.sort()
    pair_code = pairs // n_hosts
    pair_host = (pairs % n_hosts).astype(np.int32)
    counts = np.bincount(pair_code, minlength=n_keys).astype(np.int64)
    if reported is None:
        reported = np.zeros((n_hosts, n_tables), dtype=bool)
        reported[host, np.asarray(table, dtype=np.int64)] = True
    peers = reported.sum(axis=0).astype(np.int64)[key_table]
    return Baseline(
        n_hosts=n_hosts,
        keys=np.asarray(uniques, dtype=np.int64),
        key_table=key_table,
        counts=counts,
        peers=peers,
        pair_host=pair_host,
        pair_code=pair_code,
        host_tables=reported,
    )


def thresholds(base: Baseline, rare_fraction: float) -> np.ndarray:
    return np.maximum(1, np.floor(rare_fraction * base.peers)).astype(np.int64)


def _missing(base: Baseline, missing_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(host, code) of every host that returned a key's table but lacks the key."""
    hosts_out, codes_out = [], []
    n = base.n_hosts
    if len(missing_codes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    slot = np.full(len(base.keys), -1, dtype=np.int64)
    slot[missing_codes] = np.arange(len(missing_codes))
    pair_slot = slot[base.pair_code]
    chosen = pair_slot >= 0
    p_slot, p_host = pair_slot[chosen], base.pair_host[chosen]
    step = max(1, MISSING_CHUNK // max(n, 1))
    for start in range(0, len(missing_codes), step):
        stop = min(start + step, len(missing_codes))
        present = np.zeros((stop - start, n), dtype=bool)
        inside = (p_slot >= start) & (p_slot < stop)
        present[p_slot[inside] - start, p_host[inside]] = True
        expected = base.host_tables[:, base.key_table[missing_codes[start:stop]]].T
        rows, hosts = np.nonzero(expected & ~present)
        hosts_out.append(hosts.astype(np.int64))
        codes_out.append(missing_codes[start:stop][rows])
    return np.concatenate(hosts_out), np.concatenate(codes_out)


def rank_hosts(base: Baseline, *, rare_fraction: float = 0.1) -> Ranking:
    """Score every host by its rare rows and the common rows it lacks."""
    limit = thresholds(base, rare_fraction)
    usable = (base.peers >= MIN_HOSTS) & (base.counts < base.peers)
    extra_key = usable & (base.counts <= limit)
    missing_key = usable & (base.peers - base.counts <= limit) & ~extra_key
    with np.errstate(divide="ignore"):
        extra_score = np.log2(base.peers / np.maximum(base.counts, 1))
        missing_score = np.log2(base.peers / np.maximum(base.peers - base.counts, 1))
    chosen = extra_key[base.pair_code]
    e_host = base.pair_host[chosen].astype(np.int64)
    e_code = base.pair_code[chosen]
    m_host, m_code = _missing(base, np.nonzero(missing_key)[0])
    host = np.concatenate([e_host, m_host])
    code = np.concatenate([e_code, m_code])
    kind = np.concatenate(
        [np.full(len(e_host), EXTRA, np.int8), np.full(len(m_host), MISSING, np.int8)]
    )
    score = np.concatenate([extra_score[e_code], missing_score[m_code]])
    order = np.lexsort((-score, host))
    evidence = Evidence(host[order], code[order], kind[order], score[order])
    n = base.n_hosts
    max_score = np.zeros(n)
    np.maximum.at(max_score, evidence.host, evidence.score)
    total = np.bincount(evidence.host, weights=evidence.score, minlength=n)
    extra = np.bincount(evidence.host[evidence.kind == EXTRA], minlength=n)
    missing = np.bincount(evidence.host[evidence.kind == MISSING], minlength=n)
    ranked = np.lexsort((np.arange(n), -total, -max_score))
    return Ranking(ranked, max_score, total, extra, missing, evidence)


def top_evidence(ranking: Ranking, host: int, limit: int = 20) -> np.ndarray:
    """Indices into the evidence arrays of one host's strongest evidence."""
    ev = ranking.evidence
    start, stop = np.searchsorted(ev.host, [host, host + 1])
    return np.arange(start, min(stop, start + limit))


def findings(ranking: Ranking, *, limit: int = 100, seed: int = 7) -> list[Finding]:
    """Group evidence keys by the exact set of hosts they single out (per kind); the
    `limit` strongest groups, highest score first, then the most rows."""
    import pandas as pd  # here, not at the top: the CLI imports this module

    ev = ranking.evidence
    total = len(ev.host)
    if total == 0:
        return []
    order = np.lexsort((ev.host, ev.code, ev.kind))
    kind, code, host, score = ev.kind[order], ev.code[order], ev.host[order], ev.score[order]
    new = np.ones(total, dtype=bool)
    new[1:] = (kind[1:] != kind[:-1]) | (code[1:] != code[:-1])
    starts = np.nonzero(new)[0]
    sizes = np.diff(np.append(starts, total))
    # A host set's signature: the XOR of random 64-bit weights of its hosts.
    weights = np.random.default_rng(seed).integers(
        1, np.iinfo(np.int64).max, size=int(host.max()) + 1, dtype=np.int64
    )
    signature = np.bitwise_xor.reduceat(weights[host], starts)
    group = (
        pd.DataFrame({"kind": kind[starts], "sig": signature, "n": sizes})
        .groupby(["kind", "sig", "n"], sort=False)
        .ngroup()
        .to_numpy()
    )
    key_score = score[starts]
    group_score = pd.Series(key_score).groupby(group).max().to_numpy()
    group_size = np.bincount(group)
    best = np.lexsort((-group_size, -group_score))[:limit]
    by_group = np.lexsort((-key_score, group))
    bounds = np.searchsorted(group[by_group], np.arange(len(group_size) + 1))
    out = []
    for g in best:
        keys = by_group[bounds[g] : bounds[g + 1]]
        first = starts[keys[0]]
        out.append(
            Finding(
                kind=KINDS[int(kind[first])],
                hosts=sorted(int(h) for h in host[first : first + sizes[keys[0]]]),
                codes=code[starts[keys]],
                score=float(group_score[g]),
            )
        )
    return out


def naive_pairwise(
    host: np.ndarray, key: np.ndarray, *, n_hosts: int
) -> tuple[np.ndarray, np.ndarray]:
    """What the original Diffy did: diff every host against one baseline host (the first).

    Returns per host the number of rows it has that the baseline lacks, and the reverse.
    One set difference per host, in a Python loop over hosts.
    """
    order = np.argsort(host, kind="stable")
    host, key = np.asarray(host)[order], np.asarray(key)[order]
    bounds = np.searchsorted(host, np.arange(n_hosts + 1))
    reference = set(key[bounds[0] : bounds[1]].tolist())
    added, removed = np.zeros(n_hosts, np.int64), np.zeros(n_hosts, np.int64)
    for h in range(n_hosts):
        rows = set(key[bounds[h] : bounds[h + 1]].tolist())
        added[h] = len(rows - reference)
        removed[h] = len(reference - rows)
    return added, removed
