"""Synthetic CloudTrail files shaped exactly as AWS delivers them to S3 (gzip JSON, one
`Records` array per file), for the demo and the benchmark: many roles, each using a few
actions of a few services over a year, with a share of malformed records."""

from __future__ import annotations

import gzip
import json
import random
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
