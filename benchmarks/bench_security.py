"""Security benchmark: a full poll and audit of an account in moto, CloudTrail usage with
DuckDB beside a plain Python loop over the same gzip files, and the repo computation.

1. Poll: `--resources` resources (security groups, IAM roles with an inline policy, S3
   buckets, SQS queues in equal parts) in a moto server over real HTTP; one full poll of
   every watcher (store + audit), then the audit alone over the stored configurations.
2. Usage: `--records` CloudTrail records for `--roles` roles over a year, in gzip files of
   2,000 records as AWS writes them (0.1 % malformed), written file by file
   (`sample.write_trail`, memory flat at any size; `--trail-dir` keeps them for the next run).
   Popcorn's reader (DuckDB read_json_objects + one json_extract_string of five paths
   per record, aggregated per batch
   of 512 files in one streaming query) beside the baseline a user would write: gzip +
   json.load per file and a dict of last use. Each runs in its own process, so peak memory is that
   process's maximum resident set (DuckDB allocates outside Python's tracemalloc).
3. Repo: `repo.compute` for every role from the usage of step 2.

Run: .venv/bin/python benchmarks/bench_security.py [--part all|poll|cloudtrail]
     [--resources 10000] [--records 20000000] [--roles 5000] [--per-file 2000]
     [--trail-dir DIR] [--processes 2]
Parts write results/security.md (poll) and results/security-cloudtrail.md (usage, repo).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import LoadWatch, git_revision, machine, write_result

ACCOUNT = "123456789012"


def _env(home: str) -> None:
    os.environ.update(
        {
            "POPCORN_HOME": home,
            "POPCORN_LOG_LEVEL": "WARNING",
            "POPCORN_OUTBOUND_ALLOW": "127.0.0.0/8",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )


def poll_bench(resources: int) -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    from popcorn.config import reset_settings
    from popcorn.db import session_scope, upgrade
    from popcorn.security import schemas as s
    from popcorn.security import service
    from popcorn.security.auditors import audit_item
    from popcorn.security.models import SecurityItem, SecurityRevision

    reset_settings()
    upgrade()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        ec2, iam, s3, sqs = (boto3.client(x, **kw) for x in ("ec2", "iam", "s3", "sqs"))
        each = resources // 4
        started = time.perf_counter()
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::999988887777:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        inline = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:*", "sqs:SendMessage"], "Resource": "*"}
                ],
            }
        )
        for n in range(each):
            sg = ec2.create_security_group(GroupName=f"sg-{n}", Description="bench", VpcId=vpc)[
                "GroupId"
            ]
            if n % 10 == 0:
                ec2.authorize_security_group_ingress(
                    GroupId=sg,
                    IpPermissions=[
                        {
                            "IpProtocol": "tcp",
                            "FromPort": 22,
                            "ToPort": 22,
                            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                        }
                    ],
                )
            iam.create_role(RoleName=f"role-{n}", AssumeRolePolicyDocument=trust)
            iam.put_role_policy(RoleName=f"role-{n}", PolicyName="p", PolicyDocument=inline)
            s3.create_bucket(Bucket=f"bench-bucket-{n}")
            sqs.create_queue(QueueName=f"queue-{n}")
        setup = time.perf_counter() - started
        with session_scope() as session:
            account = service.create_account(
                session=session,
                spec=s.AccountCreate(
                    name="bench",
                    endpoint_url=endpoint,
                    watchers=["ec2_security_group", "iam_role", "s3_bucket", "sqs_queue"],
                ),
            ).id
        started = time.perf_counter()
        result = service.poll(account)
        poll_s = time.perf_counter() - started
        with session_scope(readonly=True) as session:
            rows = session.execute(
                __import__("sqlalchemy")
                .select(SecurityItem.watcher, SecurityRevision.config)
                .join(SecurityRevision, SecurityRevision.item_id == SecurityItem.id)
            ).all()
        from popcorn.security.auditors import Context

        ctx = Context(account_id=ACCOUNT)
        started = time.perf_counter()
        findings = sum(len(audit_item(w, c, ctx)) for w, c in rows)
        audit_s = time.perf_counter() - started
        started = time.perf_counter()
        again = service.poll(account)
        unchanged_s = time.perf_counter() - started
    finally:
        server.stop()
    return {
        "resources": resources,
        "items": sum(r["items"] for r in result.values()),
        "setup_s": setup,
        "poll_s": poll_s,
        "unchanged_s": unchanged_s,
        "changed_again": sum(r["changed"] for r in again.values()),
        "audited": len(rows),
        "findings": findings,
        "audit_s": audit_s,
    }


def python_loop(paths: list[str]) -> dict[str, Any]:
    """The baseline: one file at a time, every record a dict, a dict of last use."""
    usage: dict[tuple[str, str], str] = {}
    records = skipped = 0
    for path in paths:
        try:
            with gzip.open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        for rec in data.get("Records", []):
            records += 1
            try:
                role = rec["userIdentity"]["sessionContext"]["sessionIssuer"]["arn"]
                action = rec["eventSource"].split(".", 1)[0] + ":" + rec["eventName"].lower()
                when = datetime.fromisoformat(rec["eventTime"].replace("Z", "+00:00")).isoformat()
            except (KeyError, TypeError, AttributeError, ValueError):
                skipped += 1
                continue
            if rec.get("errorCode") in ("AccessDenied", "Client.UnauthorizedOperation"):
                continue
            key = (role, action)
            if usage.get(key, "") < when:
                usage[key] = when
    return {"records": records, "skipped": skipped, "pairs": len(usage)}


def duckdb_reader(paths: list[str]) -> dict[str, Any]:
    from popcorn.security.usage import read_cloudtrail

    found = read_cloudtrail([Path(p) for p in paths])
    pairs = sum(len(v) for v in found["usage"].values())
    return {
        "records": found["records"],
        "skipped": found["skipped"],
        "pairs": pairs,
        "usage": {r: {a: t.isoformat() for a, t in v.items()} for r, v in found["usage"].items()},
    }


def _peak_mib() -> float:
    """This process's peak resident set (VmHWM starts afresh at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(name: str, paths: list[str], out: Any) -> None:
    started = time.perf_counter()
    result = python_loop(paths) if name == "python" else duckdb_reader(paths)
    result["seconds"] = time.perf_counter() - started
    result["peak_mib"] = _peak_mib()
    out.put(result)


def in_process(name: str, paths: list[str]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, paths, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return dict(result)


def repo_bench(usage: dict[str, dict[str, str]]) -> dict[str, Any]:
    from popcorn.security import repo
    from popcorn.security import schemas as s
    from popcorn.security.sample import ACTIONS

    rules = s.RepoRules(min_age_days=0)
    wide = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": sorted({a.split(":")[0] + ":*" for a in ACTIONS}),
                "Resource": "*",
            }
        ],
    }
    exact = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ACTIONS, "Resource": "*"}],
    }
    started = time.perf_counter()
    removed = 0
    for arn, actions in usage.items():
        role = repo.RolePolicies(
            name=arn.rsplit("/", 1)[-1],
            arn=arn,
            created=None,
            tags={},
            inline={"wide": wide},
            managed={f"{arn}-policy": exact},
        )
        removed += len(
            repo.compute(role, action_usage=actions, service_usage={}, rules=rules).repoable
        )
    return {"roles": len(usage), "seconds": time.perf_counter() - started, "removed": removed}


def _header(watch: LoadWatch) -> str:
    return f"Machine: {machine()}; revision {git_revision()}; SQLite;\n{watch.note()}."


def poll_part(resources: int) -> None:
    watch = LoadWatch()
    with tempfile.TemporaryDirectory(prefix="popcorn-bench-security-") as home:
        _env(home)
        poll = poll_bench(resources)
        print(f"poll: {poll}")
    rows = [
        (
            f"moto setup: {poll['resources']:,} resources created over HTTP (not Popcorn)",
            f"{poll['setup_s']:.0f} s",
        ),
        (
            f"full poll of {poll['items']:,} items (4 watchers over HTTP to moto, store, audit)",
            f"{poll['poll_s']:.1f} s ({poll['items'] / poll['poll_s']:,.0f} items/s)",
        ),
        (
            f"the same poll again, nothing changed ({poll['changed_again']} changes stored)",
            f"{poll['unchanged_s']:.1f} s",
        ),
        (
            f"audit alone ({poll['findings']:,} findings)",
            f"{poll['audit_s'] * 1000:.0f} ms ({poll['audited'] / poll['audit_s']:,.0f} items/s)",
        ),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    md = f"""## Security: poll and audit of an account

{_header(watch)}

One account in a moto server (real boto3 HTTP calls) holding {poll["resources"]:,} resources:
security groups (one in ten open to 0.0.0.0/0 on SSH), IAM roles trusted by another account
with an inline `s3:*` policy, S3 buckets and SQS queues, in equal parts. There is no other
tool doing the same work to compare with (Security Monkey is archived); the audit alone is
measured beside the poll, which is mostly moto answering one HTTP call per resource and
attribute.

| measure | figure |
|---|---|
{table}
"""
    print(md)
    write_result("security", md)


def trail_part(records: int, roles: int, per_file: int, trail_dir: str, processes: int) -> None:
    from popcorn.security import sample

    watch = LoadWatch()
    with tempfile.TemporaryDirectory(prefix="popcorn-bench-security-") as home:
        _env(home)
        folder = Path(trail_dir) if trail_dir else Path(home) / "trail"
        wanted = -(-records // per_file)
        existing = sorted(folder.glob("*.json.gz")) if folder.is_dir() else []
        started = time.perf_counter()
        if len(existing) == wanted:  # the same trail as a previous run: reuse it
            paths, gen_note = [str(p) for p in existing], f"reused from {folder}"
        else:
            for old in existing:
                old.unlink()
            paths = [
                str(p)
                for p in sample.write_trail(
                    folder,
                    account=ACCOUNT,
                    roles=roles,
                    total=records,
                    per_file=per_file,
                    processes=processes,
                )
            ]
            gen_note = f"generated in {time.perf_counter() - started:.0f} s"
        size_mb = sum(os.path.getsize(p) for p in paths) / 2**20
        print(f"trail: {len(paths)} files, {size_mb:.0f} MiB, {gen_note}")
        duck = in_process("duckdb", paths)
        usage = duck.pop("usage")
        print(f"duckdb: {duck}")
        base = in_process("python", paths)
        print(f"python loop: {base}")
        assert (duck["records"], duck["skipped"], duck["pairs"]) == (
            base["records"],
            base["skipped"],
            base["pairs"],
        )
        rep = repo_bench(usage)
        print(f"repo: {rep}")
    from popcorn.security.usage import BATCH

    rate = lambda r: r["records"] / r["seconds"]  # noqa: E731
    rows = [
        (
            "Popcorn's reader: DuckDB read_json_objects + json_extract_string, "
            f"aggregated per batch of {BATCH} files in one query, 2 threads",
            f"{duck['seconds']:.1f} s, {rate(duck):,.0f} records/s, "
            f"peak {duck['peak_mib']:.0f} MiB",
        ),
        (
            "baseline: plain Python loop (gzip + json.load per file, dict of last use)",
            f"{base['seconds']:.1f} s, {rate(base):,.0f} records/s, "
            f"peak {base['peak_mib']:.0f} MiB",
        ),
        (
            "plain Python loop time / DuckDB time (above 1: DuckDB faster)",
            f"{base['seconds'] / duck['seconds']:.2f}",
        ),
        (
            f"repo computation, {rep['roles']:,} roles (inline wildcards + a managed policy each)",
            f"{rep['seconds'] * 1000:.0f} ms ({rep['roles'] / rep['seconds']:,.0f} roles/s), "
            f"{rep['removed']:,} permissions repoable",
        ),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    md = f"""## Security: CloudTrail usage and repo computation

{_header(watch)}

A year of CloudTrail logs for {roles:,} roles: {duck["records"]:,} records in
{len(paths):,} gzip files of {per_file:,} records as AWS writes them ({size_mb:,.0f} MiB,
{gen_note}; 0.1 % malformed). Each reader runs in its own process, so peak memory is that
process's maximum resident set (DuckDB allocates outside Python's tracemalloc). Both
stream: memory is bounded by a batch of files and the (role, action) pairs, not by the
records.

| measure | figure |
|---|---|
{table}

Both readers agree: {duck["records"]:,} records, {duck["skipped"]:,} malformed skipped,
{duck["pairs"]:,} (role, action) pairs.
"""
    print(md)
    write_result("security-cloudtrail", md)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("all", "poll", "cloudtrail"), default="all")
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=20_000_000)
    parser.add_argument("--roles", type=int, default=5000)
    parser.add_argument("--per-file", type=int, default=2000)
    parser.add_argument(
        "--trail-dir", default="", help="Keep the generated files here and reuse them next run."
    )
    parser.add_argument("--processes", type=int, default=2, help="Processes writing the trail.")
    args = parser.parse_args()
    if args.part in ("all", "poll"):
        poll_part(args.resources)
    if args.part in ("all", "cloudtrail"):
        trail_part(args.records, args.roles, args.per_file, args.trail_dir, args.processes)


if __name__ == "__main__":
    main()
