"""Synthetic CloudTrail files shaped exactly as AWS delivers them to S3 (gzip JSON, one
`Records` array per file), for the demo and the benchmark: many roles, each using a few
actions of a few services over a year, with a share of malformed records."""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ACTIONS = [
    "s3:GetObject", "s3:PutObject", "s3:ListBucket", "dynamodb:GetItem", "dynamodb:PutItem",
    "dynamodb:Query", "sqs:SendMessage", "sqs:ReceiveMessage", "sns:Publish", "kms:Decrypt",
    "ec2:DescribeInstances", "lambda:InvokeFunction", "logs:PutLogEvents", "sts:AssumeRole",
]  # fmt: skip


def role_arn(account: str, n: int) -> str:
    return f"arn:aws:iam::{account}:role/service-{n:05d}"


def record(arn: str, action: str, when: datetime) -> dict[str, Any]:
    service, name = action.split(":", 1)
    account = arn.split(":")[4]
    return {
        "eventVersion": "1.08",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "10.0.0.1",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:session",
            "arn": f"arn:aws:sts::{account}:assumed-role/{arn.rsplit('/', 1)[-1]}/session",
            "accountId": account,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": arn, "accountId": account}},
        },
        "requestID": "00000000-0000-0000-0000-000000000000",
        "eventType": "AwsApiCall",
    }


def records(
    *,
    account: str,
    roles: int,
    total: int,
    seed: int = 7,
    malformed: float = 0.001,
    now: datetime | None = None,
) -> Iterator[dict[str, Any] | str]:
    """`total` records over a year; each role uses a stable subset of the actions."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    habits = [rng.sample(ACTIONS, 4) for _ in range(roles)]
    for _ in range(total):
        if rng.random() < malformed:
            bad: list[dict[str, Any] | str] = ["truncated", {"eventTime": "soon"}]
            yield rng.choice(bad)
            continue
        n = rng.randrange(roles)
        yield record(
            role_arn(account, n),
            rng.choice(habits[n]),
            now - timedelta(seconds=rng.randrange(365 * 86400)),
        )


def write_files(
    directory: Path, items: Iterator[dict[str, Any] | str], per_file: int
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    batch: list[Any] = []

    def flush() -> None:
        path = directory / f"{len(paths):06d}_CloudTrail_us-east-1.json.gz"
        data = json.dumps({"Records": batch}, separators=(",", ":")).encode()
        path.write_bytes(gzip.compress(data, compresslevel=1))
        paths.append(path)

    for item in items:
        batch.append(item)
        if len(batch) >= per_file:
            flush()
            batch = []
    if batch:
        flush()
    return paths


def _trail_part(
    args: tuple[Path, str, int, int, int, int, int, float, float],
) -> list[Path]:
    """Files [first, last) of a trail, written as JSON text from per-role and per-action
    fragments (the same records as `record` makes, without a dict per record)."""
    directory, account, roles, first, last, per_file, seed, malformed, now = args
    rng = random.Random(seed * 1_000_003 + first)
    habits = [random.Random(seed + n).sample(ACTIONS, 4) for n in range(roles)]
    who = [
        json.dumps(record(role_arn(account, n), "s3:GetObject", datetime.now(UTC))["userIdentity"])
        .replace(" ", "")
        .encode()
        for n in range(roles)
    ]
    what = {
        a: ('"eventSource":"{}.amazonaws.com","eventName":"{}"'.format(*a.split(":", 1))).encode()
        for a in ACTIONS
    }
    bad = (b'"truncated"', b'{"eventTime":"soon"}')
    year = 365 * 86400
    draw = rng.random
    paths = []
    for number in range(first, last):
        parts = []
        for _ in range(per_file):
            if draw() < malformed:
                parts.append(bad[int(draw() * 2)])
                continue
            n = int(draw() * roles)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - int(draw() * year)))
            parts.append(
                b'{"eventVersion":"1.08","eventTime":"%s",%s,"awsRegion":"us-east-1",'
                b'"sourceIPAddress":"10.0.0.1","userIdentity":%s,'
                b'"requestID":"00000000-0000-0000-0000-000000000000","eventType":"AwsApiCall"}'
                % (stamp.encode(), what[habits[n][int(draw() * 4)]], who[n])
            )
        path = directory / f"{number:06d}_CloudTrail_us-east-1.json.gz"
        path.write_bytes(gzip.compress(b'{"Records":[' + b",".join(parts) + b"]}", compresslevel=1))
        paths.append(path)
    return paths


def write_trail(
    directory: Path,
    *,
    account: str,
    roles: int,
    total: int,
    per_file: int = 2000,
    seed: int = 7,
    malformed: float = 0.001,
    processes: int = 1,
) -> list[Path]:
    """A year of CloudTrail files for `roles` roles, `total` records (rounded up to whole
    files), written file by file so memory stays flat at any size; `processes` share the
    files (the benchmark's 20 M records are 10,000 files)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = -(-total // per_file)
    step = -(-files // max(1, processes))
    now = time.time()
    jobs = [
        (directory, account, roles, lo, min(files, lo + step), per_file, seed, malformed, now)
        for lo in range(0, files, step)
    ]
    if processes <= 1:
        return [p for job in jobs for p in _trail_part(job)]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return [p for part in pool.map(_trail_part, jobs) for p in part]
