"""CloudTrail files as AWS writes them (gzip JSON, one `Records` array per file)."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any


def record(role_arn: str, action: str, when: datetime, error: str | None = None) -> dict[str, Any]:
    service, name = action.split(":", 1)
    account = role_arn.split(":")[4]
    out: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role_arn.rsplit('/', 1)[-1]}/s",
            "accountId": account,
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "arn": role_arn, "accountId": account}
            },
        },
    }
    if error:
        out["errorCode"] = error
    return out


def gz(records: list[Any]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as f:
        f.write(json.dumps({"Records": records}).encode())
    return buf.getvalue()


def days_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)
