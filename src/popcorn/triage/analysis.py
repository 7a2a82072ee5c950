"""A collection's analysis: the group's hosts clustered by similarity, each host ranked
against its cluster's baseline by its rarest evidence, findings (hosts sharing the same
odd rows), and diffs of one host (against its cluster, or another collection).

Only the row keys are loaded to build the baseline; the rows themselves are read for
the few keys that end up as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from popcorn.db import utcnow
from popcorn.errors import InvalidInput
from popcorn.outbox import emit_many
from popcorn.triage import baseline as bl
from popcorn.triage.models import TriageCollection, TriageFinding, TriageHost, TriageHostTable
from popcorn.triage.tables import TABLE_NAMES, Normaliser

OUTLIER_EVENT = "security.triage.outlier"
EVIDENCE_PER_HOST = 20
ROWS_PER_FINDING = 50
MAX_FINDINGS = 100
EVENTS_PER_ANALYSIS = 50
DEFAULT_SIMILARITY = 0.7
TABLE_INDEX = {name: i for i, name in enumerate(TABLE_NAMES)}


@dataclass
class Loaded:
    hosts: list[TriageHost]
    record_ids: np.ndarray  # per row: its host table record
    offsets: np.ndarray  # per row: its position in the record's rows
    base: bl.Baseline
    host_index: np.ndarray  # per row
    keys: np.ndarray  # per row


def load(session: Session, collection_id: int) -> Loaded:
    """The baseline of a collection's `ok` hosts, from their row keys only."""
    hosts = list(
        session.scalars(
            select(TriageHost)
            .where(TriageHost.collection_id == collection_id, TriageHost.status == "ok")
            .order_by(TriageHost.device)
        )
    )
    index = {h.id: i for i, h in enumerate(hosts)}
    records = session.execute(
        select(
            TriageHostTable.id, TriageHostTable.host_id, TriageHostTable.table, TriageHostTable.keys
        ).where(
            TriageHostTable.collection_id == collection_id,
            TriageHostTable.host_id.in_(list(index) or [-1]),
            TriageHostTable.error.is_(None),
        )
    ).all()
    reported = np.zeros((len(hosts), len(TABLE_NAMES)), dtype=bool)
    parts_key, lengths, rec_host, rec_table, rec_id = [], [], [], [], []
    for record_id, host_id, table, keys in records:
        if table not in TABLE_INDEX:
            continue
        reported[index[host_id], TABLE_INDEX[table]] = True
        parts_key.append(np.asarray(keys, dtype=np.int64))
        lengths.append(len(keys))
        rec_host.append(index[host_id])
        rec_table.append(TABLE_INDEX[table])
        rec_id.append(record_id)
    counts = np.asarray(lengths, dtype=np.int64)
    keys_arr = np.concatenate(parts_key) if parts_key else np.zeros(0, np.int64)
    host_arr = np.repeat(np.asarray(rec_host, dtype=np.int64), counts)
    table_arr = np.repeat(np.asarray(rec_table, dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    offsets = np.arange(len(keys_arr)) - np.repeat(starts, counts)
    base = bl.build_baseline(
        host_arr,
        table_arr,
        keys_arr,
        n_hosts=max(len(hosts), 1),
        n_tables=len(TABLE_NAMES),
        reported=reported,
    )
    return Loaded(
        hosts=hosts,
        record_ids=np.repeat(np.asarray(rec_id, dtype=np.int64), counts),
        offsets=offsets,
        base=base,
        host_index=host_arr,
        keys=keys_arr,
    )


def _sample_rows(session: Session, data: Loaded, codes: np.ndarray) -> dict[int, dict[str, Any]]:
    """One normalised row per key code (as seen on some host that has it)."""
    if len(codes) == 0:
        return {}
    wanted = data.base.keys[codes]
    hit = np.nonzero(np.isin(data.keys, wanted))[0]
    _, first = np.unique(data.keys[hit], return_index=True)
    picks = hit[first]
    needed = sorted({int(r) for r in data.record_ids[picks]})
    records = {
        rid: (table, rows, host_id)
        for rid, table, rows, host_id in session.execute(
            select(
                TriageHostTable.id,
                TriageHostTable.table,
                TriageHostTable.rows,
                TriageHostTable.host_id,
            ).where(TriageHostTable.id.in_(needed))
        )
    }
    names = {h.id: h.device for h in data.hosts}
    by_key: dict[int, dict[str, Any]] = {}
    for pick in picks:
        table, rows, host_id = records[int(data.record_ids[pick])]
        device = names.get(host_id, "")
        row = Normaliser([device, device.split(".")[0]]).normalise(
            table, rows[int(data.offsets[pick])]
        )
        by_key[int(data.keys[pick])] = {"table": table, "row": row}
    code_of = {int(k): int(c) for c, k in zip(codes, wanted, strict=True)}
    return {code_of[k]: v for k, v in by_key.items()}


@dataclass
class Ranked:
    """A collection's analysis, computed from reads only and not yet stored."""

    hosts: dict[int, tuple[int, int, float, list[dict[str, Any]]]]  # id: rank, cluster, score, ev
    findings: list[dict[str, Any]]
    summary: dict[str, Any]


def rank(
    *,
    session: Session,
    collection_id: int,
    rare_fraction: float = 0.1,
    similarity: float = DEFAULT_SIMILARITY,
) -> Ranked:
    """Cluster the collection's hosts by similarity and rank each against its cluster.

    Reads only, so callers run it in a read-only session: on SQLite the long clustering
    then holds no write lock, and `store` writes the outcome in one short transaction.
    """
    data = load(session, collection_id)
    labels = bl.cluster_hosts(data.base, threshold=similarity)
    ranking = bl.rank_clustered(data.base, labels, rare_fraction=rare_fraction)
    groups = bl.findings(ranking, limit=MAX_FINDINGS)
    ev = ranking.evidence
    per_host = {i: bl.top_evidence(ranking, i, EVIDENCE_PER_HOST) for i in range(len(data.hosts))}
    wanted = [ev.code[idx] for idx in per_host.values()]
    wanted += [g.codes[:ROWS_PER_FINDING] for g in groups]
    codes = np.unique(np.concatenate(wanted)) if wanted else np.zeros(0, np.int64)
    samples = _sample_rows(session, data, codes)
    base = data.base

    def evidence_of(code: int, kind: str, score: float, count: int, peers: int
                    ) -> dict[str, Any]:  # fmt: skip
        sample = samples.get(code, {"table": TABLE_NAMES[base.key_table[code]], "row": {}})
        return {
            **sample,
            "kind": kind,
            "hosts_with": int(count),
            "peers": int(peers),
            "score": round(float(score), 3),
        }

    hosts = {}
    for position, i in enumerate(ranking.order[: len(data.hosts)]):
        hosts[data.hosts[int(i)].id] = (
            position + 1,
            int(labels[i]),
            round(float(ranking.max_score[i]), 3),
            [
                evidence_of(
                    int(ev.code[j]),
                    bl.KINDS[int(ev.kind[j])],
                    float(ev.score[j]),
                    int(ev.count[j]),
                    int(ev.peers[j]),
                )
                for j in per_host[int(i)]
            ],
        )
    findings = []
    names = [h.device for h in data.hosts]
    for position, group in enumerate(groups):
        rows = [
            evidence_of(int(c), group.kind, group.score, int(n), int(p))
            for c, n, p in zip(
                group.codes[:ROWS_PER_FINDING], group.counts, group.peers, strict=False
            )
        ]
        findings.append(
            {
                "rank": position + 1,
                "kind": group.kind,
                "score": round(group.score, 3),
                "hosts": [names[h] for h in group.hosts],
                "peers": max((r["peers"] for r in rows), default=len(names)),
                "tables": sorted({r["table"] for r in rows}),
                "rows": rows,
            }
        )
    summary = {
        "rare_fraction": rare_fraction,
        "similarity": similarity,
        "clusters": _clusters(labels, names),
        "baseline_hosts": len(data.hosts),
        "distinct_rows": len(base.keys),
        "rows": len(data.keys),
        "evidence": len(ev.host),
        "findings": len(findings),
        "top": [
            {"device": data.hosts[int(i)].device, "score": round(float(ranking.max_score[i]), 3)}
            for i in ranking.order[:5]
            if ranking.max_score[i] > 0
        ],
    }
    return Ranked(hosts=hosts, findings=findings, summary=summary)


def store(*, session: Session, collection: TriageCollection, ranked: Ranked) -> dict[str, Any]:
    """Replace the collection's host ranks and findings with `ranked`; emit one event per
    finding. Returns the collection's new summary."""
    for host in session.scalars(
        select(TriageHost).where(TriageHost.collection_id == collection.id)
    ):
        host.score, host.rank, host.evidence, host.cluster = 0.0, None, [], None
        if host.id in ranked.hosts:
            host.rank, host.cluster, host.score, host.evidence = ranked.hosts[host.id]
    session.execute(delete(TriageFinding).where(TriageFinding.collection_id == collection.id))
    stored = [TriageFinding(collection_id=collection.id, **f) for f in ranked.findings]
    session.add_all(stored)
    session.flush()
    emit_many(
        session,
        [
            (
                OUTLIER_EVENT,
                "triage_finding",
                f.id,
                {
                    "collection_id": collection.id,
                    "collection": collection.name,
                    "rank": f.rank,
                    "kind": f.kind,
                    "score": f.score,
                    "hosts": f.hosts,
                    "peers": f.peers,
                    "tables": f.tables,
                    "rows": f.rows[:5],
                    "row_count": len(f.rows),
                },
            )
            for f in stored[:EVENTS_PER_ANALYSIS]
        ],
    )
    from popcorn.triage.service import host_counts

    summary = {
        "analysed_at": utcnow().isoformat(),
        **ranked.summary,
        "hosts": host_counts(session, collection.id),
    }
    collection.summary = summary
    return summary


def _clusters(labels: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """The clusters, largest first: size and (up to 20) members."""
    out = []
    for label in range(int(labels.max()) + 1 if len(labels) else 0):
        members = [names[i] for i in np.nonzero(labels == label)[0]]
        out.append({"cluster": label, "hosts": len(members), "members": members[:20],
                    "own_baseline": len(members) >= bl.MIN_HOSTS})  # fmt: skip
    return out


# --- diffs ------------------------------------------------------------------------------------


def _rows_by_key(host: TriageHost, tables: list[TriageHostTable]) -> dict[int, tuple[str, Any]]:
    normaliser = Normaliser([host.device, host.device.split(".")[0]])
    out: dict[int, tuple[str, Any]] = {}
    for record in tables:
        for key, row in zip(record.keys, record.rows, strict=False):
            out.setdefault(int(key), (record.table, normaliser.normalise(record.table, row)))
    return out


def diff_hosts(
    *,
    before: tuple[TriageHost, list[TriageHostTable]],
    after: tuple[TriageHost, list[TriageHostTable]],
) -> dict[str, Any]:
    """What changed on one host between two collections (normalised rows, per table);
    tables missing from either side are left out rather than reported as all removed."""
    old, new = _rows_by_key(*before), _rows_by_key(*after)
    common = {t.table for t in before[1] if not t.error} & {
        t.table for t in after[1] if not t.error
    }
    changes = [
        {"table": table, "change": "added", "row": row}
        for key, (table, row) in new.items()
        if key not in old and table in common
    ] + [
        {"table": table, "change": "removed", "row": row}
        for key, (table, row) in old.items()
        if key not in new and table in common
    ]
    changes.sort(key=lambda c: (c["table"], c["change"], str(c["row"])))
    return {
        "device": after[0].device,
        "before": before[0].collection_id,
        "after": after[0].collection_id,
        "changes": changes,
        "counts": _count(changes),
    }


def host_vs_group(*, session: Session, collection: TriageCollection, device: str) -> dict[str, Any]:
    """A host against its group: its rows that at most half the group has, and the rows
    more than half the group has that it lacks, each with how many hosts share it."""
    data = load(session, collection.id)
    names = [h.device for h in data.hosts]
    if device not in names:
        raise InvalidInput(
            f"{device!r} is not an ok host of collection {collection.id}",
            details={"device": device, "collection": collection.id},
        )
    me = names.index(device)
    cluster = data.hosts[me].cluster
    peers = [i for i, h in enumerate(data.hosts) if h.cluster == cluster]
    if cluster is not None and len(peers) >= bl.MIN_HOSTS:
        base = bl.subset(data.base, np.asarray(peers))
        me, to_global = peers.index(me), base.keys
    else:
        base, to_global = data.base, np.arange(len(data.base.keys))
    mine = np.unique(base.pair_code[base.pair_host == me])
    has = np.zeros(len(base.keys), dtype=bool)
    has[mine] = True
    expected = base.host_tables[me][base.key_table]
    extra = np.nonzero(has & (2 * base.counts <= base.peers) & (base.counts < base.peers))[0]
    missing = np.nonzero(~has & expected & (2 * base.counts > base.peers))[0]
    samples = _sample_rows(session, data, to_global[np.concatenate([extra, missing])])
    changes = [
        {
            **samples[int(to_global[code])],
            "change": change,
            "hosts_with": int(base.counts[code]),
            "peers": int(base.peers[code]),
        }
        for change, codes in (("extra", extra), ("missing", missing))
        for code in codes[np.argsort(base.counts[codes] * (1 if change == "extra" else -1))]
        if int(to_global[code]) in samples
    ]
    return {
        "device": device,
        "collection": collection.id,
        "cluster": cluster,
        "changes": changes,
        "counts": _count(changes),
    }


def _count(changes: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for change in changes:
        counts[change["change"]] = counts.get(change["change"], 0) + 1
    return counts
