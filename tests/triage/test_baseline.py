"""The baseline's scoring and the collectors' parsers, without agents."""

from __future__ import annotations

import numpy as np

from popcorn.triage import baseline as bl
from popcorn.triage.collectors import (
    parse_authorized_key,
    parse_crontab,
    parse_dpkg_status,
    parse_proc_net,
)
from popcorn.triage.tables import Normaliser


def group(rows_per_host: dict[int, list[int]], n_tables: int = 1) -> bl.Baseline:
    host = np.concatenate([np.full(len(r), h) for h, r in rows_per_host.items()])
    key = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows_per_host.values()])
    return bl.build_baseline(
        host, np.zeros(len(key), dtype=np.int64), key,
        n_hosts=len(rows_per_host), n_tables=n_tables,
    )  # fmt: skip


def test_a_row_on_one_host_ranks_it_first_with_its_peers_count() -> None:
    rows = {h: [1, 2, 3] for h in range(10)}
    rows[7] = [1, 2, 3, 99]
    ranking = bl.rank_hosts(group(rows))
    assert ranking.order[0] == 7
    assert ranking.max_score[7] == np.log2(10)
    assert ranking.max_score[[h for h in range(10) if h != 7]].max() == 0


def test_a_row_on_all_but_one_host_ranks_the_odd_host_as_missing_it() -> None:
    rows = {h: [1, 2, 3] for h in range(10)}
    rows[4] = [1, 3]
    ranking = bl.rank_hosts(group(rows))
    assert ranking.order[0] == 4
    assert ranking.missing[4] == 1 and ranking.extra.sum() == 0
    assert [bl.KINDS[k] for k in ranking.evidence.kind] == ["missing"]


def test_hosts_sharing_the_same_rare_rows_are_one_finding() -> None:
    rows = {h: [1, 2, 3] for h in range(20)}
    for h in (3, 11):
        rows[h] = [1, 2, 3, 50, 51, 52]
    rows[15] = [1, 2, 3, 77]
    found = bl.findings(bl.rank_hosts(group(rows), rare_fraction=0.1))
    assert sorted(f.hosts for f in found) == [[3, 11], [15]]
    cluster = next(f for f in found if f.hosts == [3, 11])
    assert len(cluster.codes) == 3


def test_a_table_a_host_did_not_return_is_not_counted_missing() -> None:
    host = np.array([0, 0, 1, 1, 2, 2, 3])
    table = np.array([0, 1, 0, 1, 0, 1, 0])
    key = np.array([1, 10, 1, 10, 1, 10, 1])
    base = bl.build_baseline(host, table, key, n_hosts=4, n_tables=2)
    assert bl.rank_hosts(base).max_score.max() == 0


def test_too_small_a_group_accuses_nobody() -> None:
    assert bl.rank_hosts(group({0: [1, 2], 1: [1, 3]})).max_score.max() == 0


def test_normalising_drops_noise_and_host_names() -> None:
    a = Normaliser(["web-01"])
    b = Normaliser(["web-02"])
    row = {"protocol": "tcp", "address": "10.0.0.1", "port": 40001, "pid": 1, "inode": 5,
           "process": "nginx", "exe": "/usr/sbin/nginx", "user": "www"}  # fmt: skip
    other = {**row, "address": "10.0.0.2", "port": 50123, "pid": 7, "inode": 9}
    assert a.key("listening_sockets", row) == b.key("listening_sockets", other)
    assert a.key("listening_sockets", row) != a.key("listening_sockets", {**row, "port": 22})
    key = {"user": "deploy", "path": "/home/deploy/.ssh/authorized_keys", "options": "",
           "key_type": "ssh-ed25519", "fingerprint": "SHA256:x"}  # fmt: skip
    assert a.key("authorized_keys", {**key, "comment": "deploy@web-01"}) == b.key(
        "authorized_keys", {**key, "comment": "deploy@web-02"}
    )


def test_parsers_read_what_hosts_write() -> None:
    entry = parse_authorized_key(
        'command="/bin/true",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== me@host'
    )
    assert entry is not None
    assert (entry["options"], entry["key_type"], entry["comment"]) == (
        'command="/bin/true",no-pty',
        "ssh-ed25519",
        "me@host",
    )
    assert entry["fingerprint"].startswith("SHA256:")
    assert parse_authorized_key("# a comment") is None
    assert parse_authorized_key("garbage") is None
    cron = parse_crontab("MAILTO=x\n@reboot root /bin/up\n*/5 * * * * root run it\n", "/x", None)
    assert [(c["schedule"], c["user"], c["command"]) for c in cron] == [
        ("@reboot", "root", "/bin/up"),
        ("*/5 * * * *", "root", "run it"),
    ]
    user_cron = parse_crontab("0 1 * * * backup.sh --now\n", "/var/spool/cron/crontabs/bob", "bob")
    assert user_cron[0]["user"] == "bob" and user_cron[0]["command"] == "backup.sh --now"
    status = (
        "Package: a\nStatus: install ok installed\nVersion: 1\n\n"
        "Package: b\nStatus: deinstall ok config-files\n"
    )
    assert [p["name"] for p in parse_dpkg_status(status)] == ["a"]
    tcp = (
        "header\n 0: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 0 0 123 1\n"
        " 1: 0100007F:1F91 0A000001:0050 01 0:0 00:0 0 0 0 9 1\n"
    )
    assert parse_proc_net(tcp, "tcp") == [
        {"protocol": "tcp", "address": "127.0.0.1", "port": 8080, "uid": 0, "inode": 123}
    ]


# --- the clustered baseline -------------------------------------------------------------------


def test_similarity_is_the_jaccard_index_of_the_hosts_row_sets() -> None:
    """Rows on few hosts, on most hosts and on about half take three different paths."""
    rng = np.random.default_rng(3)
    n = 40
    sets = {h: set() for h in range(n)}
    for key in range(300):
        share = (0.05, 0.5, 0.95)[key % 3]
        for h in np.nonzero(rng.random(n) < share)[0]:
            sets[int(h)].add(key)
    sets[0] = set()  # a host with no rows at all
    base = group({h: sorted(s) for h, s in sets.items()})
    got = bl.similarity(base)
    for a in range(n):
        for b in range(n):
            union = sets[a] | sets[b]
            want = len(sets[a] & sets[b]) / len(union) if union else 1.0
            assert abs(got[a, b] - want) < 1e-9, (a, b)


def mixed_group() -> dict[int, list[int]]:
    """27 web hosts and 3 database hosts; web host 5 has a planted row, database host 28
    lacks one of the database rows."""
    web, db = list(range(100, 140)), list(range(200, 240))
    rows = {h: [*web, 1000 + h % 4] for h in range(27)}  # + a little drift
    rows.update({h: [*db, 7] for h in range(27, 30)})
    rows[5] = [*rows[5], 666]
    rows[28] = [k for k in rows[28] if k != 210]
    return rows


def test_hosts_cluster_by_similarity_and_rank_against_their_own_cluster() -> None:
    base = group(mixed_group())
    labels = bl.cluster_hosts(base, threshold=0.7)
    assert len(set(labels[:27])) == 1 and len(set(labels[27:])) == 1
    assert labels[0] != labels[27]
    # Against the whole group, every database host is odd: its own rows are rare, and it
    # lacks every web row.
    flat = bl.rank_hosts(base, rare_fraction=0.1)
    assert (flat.max_score[[27, 28, 29]] > 0).all()
    assert (flat.extra[27], flat.missing[27]) == (41, 40)  # its rows, and the web rows
    clustered = bl.rank_clustered(base, labels, rare_fraction=0.1)
    top = [int(h) for h in clustered.order[:2]]
    assert set(top) == {5, 28}
    ev = clustered.evidence
    planted = (ev.host == 5) & (ev.kind == bl.EXTRA)
    assert base.keys[ev.code[planted]].tolist() == [666]
    assert (ev.count[planted], ev.peers[planted]) == ([1], [27])
    lacking = ev.host == 28
    assert base.keys[ev.code[lacking]].tolist() == [210]
    assert (ev.kind[lacking], ev.count[lacking], ev.peers[lacking]) == ([bl.MISSING], [2], [3])
    assert set(np.unique(ev.host).tolist()) == {5, 28}


def test_a_cluster_too_small_for_a_baseline_is_judged_by_the_whole_group() -> None:
    rows = mixed_group()
    rows.pop(29)  # two database hosts: too few to be each other's baseline
    base = group(rows)
    labels = bl.cluster_hosts(base, threshold=0.7)
    ranking = bl.rank_clustered(base, labels, rare_fraction=0.1)
    assert set(ranking.order[:3].tolist()) == {5, 27, 28}
    assert ranking.extra[27] >= 40 and ranking.extra[28] >= 40  # unlike the group
    assert ranking.evidence.peers[ranking.evidence.host == 27].max() == 29
    assert ranking.extra[5] == 1  # the planted row still counts in its own cluster
    assert ranking.max_score[[h for h in range(27) if h != 5]].max() == 0
    assert (bl.cluster_hosts(base, threshold=0.0) == 0).all()  # 0: one cluster
    few = group({h: [1, 2, 3] + ([9] if h < 3 else []) for h in range(10)})
    assert (bl.cluster_hosts(few, threshold=0.9) == 0).all()  # too few rows to cluster on
