"""Collectors that read package databases and osquery's answers.

`data/rpmdb.sqlite` is a real RPM database: written by rpm 4.18 (`rpmbuild -bb` of two
noarch packages, `rpm --root R --dbpath /var/lib/rpm -i`), then re-paged with sqlite's
VACUUM to keep it small; `rpm -qa` still reads it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from remediation_kit import make_pki, start_agent

from popcorn.remediation.agent import AgentClient
from popcorn.triage import rpmdb
from popcorn.triage.collectors import parse_osquery
from popcorn.triage.planting import plant

RPMDB = Path(__file__).parent / "data" / "rpmdb.sqlite"
EXPECTED = [
    {"name": "nginx", "version": "1.24.0-2.el9", "arch": "noarch", "status": "installed",
     "manager": "rpm"},
    {"name": "openssh-server", "version": "1:9.6p1-3.el9", "arch": "noarch",
     "status": "installed", "manager": "rpm"},
]  # fmt: skip


def test_a_real_sqlite_rpmdb_is_read_without_writing_to_it(tmp_path: Path) -> None:
    directory = tmp_path / "var" / "lib" / "rpm"
    directory.mkdir(parents=True)
    db = directory / "rpmdb.sqlite"
    shutil.copy(RPMDB, db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert rpmdb.find_dbpath(tmp_path) == ("/var/lib/rpm", "sqlite")
    assert sorted(rpmdb.read_sqlite(db), key=lambda r: r["name"]) == EXPECTED
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in directory.iterdir()) == ["rpmdb.sqlite"]  # no -wal, -shm


def test_a_broken_rpmdb_is_an_error_not_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "rpmdb.sqlite"
    db.write_bytes(b"SQLite format 3\0" + b"\xff" * 600)
    with pytest.raises(rpmdb.RpmDbError):
        list(rpmdb.read_sqlite(db))
    with pytest.raises(rpmdb.RpmDbError):
        rpmdb.parse_header(b"\x00\x00\x00\x05\x00\x00\x10\x00short")


def test_other_rpm_formats_are_found_and_rpm_query_output_parses(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/sysimage/rpm").mkdir(parents=True)
    (tmp_path / "usr/lib/sysimage/rpm/Packages.db").write_bytes(b"ndb")
    assert rpmdb.find_dbpath(tmp_path) == ("/usr/lib/sysimage/rpm", "ndb")
    assert rpmdb.find_dbpath(tmp_path / "usr") is None
    text = "nginx\t0\t1.24.0\t2.el9\tnoarch\nopenssh-server\t1\t9.6p1\t3.el9\tnoarch\n" \
           "gpg-pubkey\t0\tfd431d51\t4ae0493b\t(none)\nnot a line\n"  # fmt: skip
    rows = list(rpmdb.parse_query_output(text))
    assert rows[:2] == EXPECTED
    assert rows[2]["arch"] is None and rows[2]["version"] == "fd431d51-4ae0493b"
    assert len(rows) == 3


# `osqueryi --json` prints a list of objects whose values are all strings ("" for NULL),
# as below (the shapes of osquery 5's processes, listening_ports, kernel_modules tables).
OSQUERY_PROCESSES = """[
  {"cmdline":"nginx: master process","exe":"/usr/sbin/nginx","name":"nginx","parent":"systemd",
   "pid":"812","ppid":"1","sha256":"9f2c","user":"root"},
  {"cmdline":"","exe":"","name":"kworker/0:1","parent":"","pid":"77","ppid":"-1",
   "sha256":"","user":""}
]"""
OSQUERY_SOCKETS = """[
  {"address":"0.0.0.0","exe":"/usr/sbin/sshd","inode":"21834","pid":"601","port":"22",
   "process":"sshd","protocol":"tcp","user":"root"}
]"""
OSQUERY_MODULES = """[
  {"name":"nf_tables","refcount":"","size":"372736","state":"Live","used_by":"nft_chain_nat,"},
  {"name":"ext4","refcount":"","size":"1081344","state":"Live","used_by":"-"}
]"""


def test_osquery_answers_take_the_collectors_shape() -> None:
    processes = parse_osquery("processes", OSQUERY_PROCESSES)
    assert processes is not None
    assert processes[0]["pid"] == 812 and processes[0]["ppid"] == 1
    assert processes[1]["ppid"] == -1 and processes[1]["exe"] is None
    assert processes[1]["sha256"] is None
    sockets = parse_osquery("listening_sockets", OSQUERY_SOCKETS)
    assert sockets == [{"address": "0.0.0.0", "exe": "/usr/sbin/sshd", "inode": 21834,
                        "pid": 601, "port": 22, "process": "sshd", "protocol": "tcp",
                        "user": "root"}]  # fmt: skip
    modules = parse_osquery("kernel_modules", OSQUERY_MODULES)
    assert modules is not None
    assert [(m["name"], m["used_by"], m["refcount"]) for m in modules] == [
        ("nf_tables", ["nft_chain_nat"], None), ("ext4", [], None)
    ]  # fmt: skip
    assert parse_osquery("processes", "Error: no such table") is None
    assert parse_osquery("processes", json.dumps({"rows": []})) is None
    assert parse_osquery("processes", "[1, 2]") is None


@pytest.mark.slow
def test_an_agent_lists_rpm_and_dpkg_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:  # fmt: skip
    if shutil.which("rpm"):
        pytest.skip("rpm is installed here: this test covers reading the sqlite rpmdb alone")
    root = plant(tmp_path / "root", "rpm-01", 1)
    (root / "var/lib/rpm").mkdir(parents=True)
    shutil.copy(RPMDB, root / "var/lib/rpm/rpmdb.sqlite")
    pki = make_pki(tmp_path / "pki")
    monkeypatch.setenv("POPCORN_TRIAGE_ROOT", str(root))
    agent = start_agent(tmp_path / "agent", pki, action_modules=["popcorn.triage.collectors"])
    try:
        with AgentClient(agent.url, pki.client_cert, pki.client_key, pki.ca) as client:
            run = client.run("triage.packages", {})
    finally:
        agent.stop()
    assert run.ok, run
    table = run.result["tables"]["packages"]
    assert table["error"] is None
    got = {(r["manager"], r["name"], r["version"]) for r in table["rows"]}
    assert got == {
        ("dpkg", "nginx", "1.24.0-2"), ("dpkg", "openssh-server", "1:9.6p1-3"),
        ("rpm", "nginx", "1.24.0-2.el9"), ("rpm", "openssh-server", "1:9.6p1-3.el9"),
    }  # fmt: skip
