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

The clustered baseline (what Diffy advertised and never built): hosts are first grouped
by the Jaccard similarity of their row sets (average linkage, a threshold), and each host
is scored against its own cluster, so a group mixing web and database hosts does not
accuse every database host of lacking nginx.

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
    """One array entry per (host, key) piece of evidence; `count` hosts have the key among
    `peers` (the host's cluster, or the group)."""

    host: np.ndarray
    code: np.ndarray
    kind: np.ndarray  # EXTRA or MISSING
    score: np.ndarray
    count: np.ndarray
    peers: np.ndarray


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
    counts: np.ndarray  # per code: hosts having it...
    peers: np.ndarray  # ...among how many


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
    return _ranking(base.n_hosts, host, code, kind, score, base.counts[code], base.peers[code])


def _ranking(n: int, host: np.ndarray, code: np.ndarray, kind: np.ndarray, score: np.ndarray,
             count: np.ndarray, peers: np.ndarray) -> Ranking:  # fmt: skip
    order = np.lexsort((-score, host))
    evidence = Evidence(
        host[order], code[order], kind[order], score[order], count[order], peers[order]
    )
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
    count, peers = ev.count[order], ev.peers[order]
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
                counts=count[starts[keys]],
                peers=peers[starts[keys]],
            )
        )
    return out


# --- the clustered baseline -------------------------------------------------------------------

SPARSE_SHARE = 8  # a key on at most n/8 hosts (or lacking from at most n/8) goes sparse
DENSE_CHUNK = 2048  # keys per dense block
MAX_CLUSTER_HOSTS = 5000  # above this the group is one cluster (the distance matrix is n^2)
MIN_CLUSTER_ROWS = 20  # hosts with fewer rows (median) are not clustered


def similarity(base: Baseline) -> np.ndarray:
    """Jaccard similarity of every pair of hosts over their sets of row keys (n x n).

    Intersections are counted three ways so that no step costs n^2 per key: keys few
    hosts have as a sparse presence product, keys few hosts lack as a sparse absence
    product (|both| = |K| - |a lacks| - |b lacks| + |both lack|), the rest as dense
    float32 blocks through BLAS.
    """
    from scipy import sparse

    n = base.n_hosts
    counts = base.counts
    sizes = np.bincount(base.pair_host, minlength=n).astype(np.float64)
    inter = np.zeros((n, n), dtype=np.float64)
    few = n // SPARSE_SHARE
    rare = counts <= few
    common = (n - counts <= few) & ~rare
    dense = ~rare & ~common

    def columns(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        slot = np.full(len(counts), -1, dtype=np.int64)
        picked = np.nonzero(chosen)[0]
        slot[picked] = np.arange(len(picked))
        cols = slot[base.pair_code]
        keep = cols >= 0
        return base.pair_host[keep].astype(np.int64), cols[keep], len(picked)

    hosts, cols, width = columns(rare)
    if width:
        m = sparse.csr_matrix((np.ones(len(hosts), np.float32), (hosts, cols)), shape=(n, width))
        inter += (m @ m.T).toarray()
    hosts, cols, width = columns(common)
    if width:
        absent_h, absent_c = [], []
        step = max(1, MISSING_CHUNK // max(n, 1))
        for start in range(0, width, step):
            stop = min(start + step, width)
            grid = np.zeros((stop - start, n), dtype=bool)
            inside = (cols >= start) & (cols < stop)
            grid[cols[inside] - start, hosts[inside]] = True
            c, h = np.nonzero(~grid)
            absent_c.append(c + start)
            absent_h.append(h)
        ah, ac = np.concatenate(absent_h), np.concatenate(absent_c)
        lacks = np.bincount(ah, minlength=n).astype(np.float64)
        a = sparse.csr_matrix((np.ones(len(ah), np.float32), (ah, ac)), shape=(n, width))
        inter += width - lacks[:, None] - lacks[None, :] + (a @ a.T).toarray()
    hosts, cols, width = columns(dense)
    for start in range(0, width, DENSE_CHUNK):
        stop = min(start + DENSE_CHUNK, width)
        block = np.zeros((n, stop - start), dtype=np.float32)
        inside = (cols >= start) & (cols < stop)
        block[hosts[inside], cols[inside] - start] = 1.0
        inter += block @ block.T
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    np.fill_diagonal(result, 1.0)
    return result


def cluster_hosts(base: Baseline, *, threshold: float = 0.7) -> np.ndarray:
    """A cluster label per host: average-linkage clusters whose members are on average at
    least `threshold` Jaccard-similar. Labels are 0.. by size, largest first."""
    n = base.n_hosts
    if n < 2 or n > MAX_CLUSTER_HOSTS:
        return np.zeros(n, dtype=np.int64)
    if np.median(np.bincount(base.pair_host, minlength=n)) < MIN_CLUSTER_ROWS:
        # Over a handful of rows one planted row moves a host's similarity a lot, and
        # hosts sharing it could become their own cluster and hide it: one group.
        return np.zeros(n, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distance = 1.0 - similarity(base)
    np.fill_diagonal(distance, 0.0)
    distance = np.clip((distance + distance.T) / 2, 0.0, 1.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    raw = fcluster(tree, t=1.0 - threshold, criterion="distance") - 1
    sizes = np.bincount(raw)
    order = np.lexsort((np.arange(len(sizes)), -sizes))  # largest first, stable
    relabel = np.empty(len(sizes), dtype=np.int64)
    relabel[order] = np.arange(len(sizes))
    return relabel[raw]


def subset(base: Baseline, hosts: np.ndarray) -> Baseline:
    """The baseline of some hosts only; its `keys` are the parent's key codes."""
    hosts = np.sort(np.asarray(hosts, dtype=np.int64))
    local = np.full(base.n_hosts, -1, dtype=np.int64)
    local[hosts] = np.arange(len(hosts))
    keep = local[base.pair_host] >= 0
    codes, inverse = np.unique(base.pair_code[keep], return_inverse=True)
    reported = base.host_tables[hosts]
    return Baseline(
        n_hosts=len(hosts),
        keys=codes,
        key_table=base.key_table[codes],
        counts=np.bincount(inverse, minlength=len(codes)).astype(np.int64),
        peers=reported.sum(axis=0).astype(np.int64)[base.key_table[codes]],
        pair_host=local[base.pair_host[keep]].astype(np.int32),
        pair_code=inverse.astype(np.int64),
        host_tables=reported,
    )


def rank_clustered(base: Baseline, labels: np.ndarray, *, rare_fraction: float = 0.1) -> Ranking:
    """Rank each host against its own cluster; hosts of clusters smaller than MIN_HOSTS
    (nobody, or too few, look like them) are ranked against the whole group."""
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    if len(sizes) <= 1:
        return rank_hosts(base, rare_fraction=rare_fraction)
    parts: list[tuple[np.ndarray, ...]] = []
    small = np.isin(labels, np.nonzero(sizes < MIN_HOSTS)[0])
    if small.any():
        whole = rank_hosts(base, rare_fraction=rare_fraction).evidence
        chosen = small[whole.host]
        parts.append(tuple(getattr(whole, f)[chosen] for f in EVIDENCE_FIELDS))
    for label in np.nonzero(sizes >= MIN_HOSTS)[0]:
        members = np.nonzero(labels == label)[0]
        sub = subset(base, members)
        ev = rank_hosts(sub, rare_fraction=rare_fraction).evidence
        parts.append((members[ev.host], sub.keys[ev.code], ev.kind, ev.score, ev.count, ev.peers))
    host, code, kind, score, count, peers = (
        np.concatenate([p[i] for p in parts]) for i in range(len(EVIDENCE_FIELDS))
    )
    return _ranking(base.n_hosts, host.astype(np.int64), code.astype(np.int64),
                    kind.astype(np.int8), score, count, peers)  # fmt: skip


EVIDENCE_FIELDS = ("host", "code", "kind", "score", "count", "peers")


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
