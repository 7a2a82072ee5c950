"""Role usage for least privilege: CloudTrail log files (gzip JSON, one `Records` array per
file, as AWS delivers them to S3) read with DuckDB, streaming and columnar, into the last use
of each action by each role; and service-level last access from the IAM Access Advisor.

Why this query shape: `read_json_objects` + one multi-path `json_extract_string` per record,
aggregated in the same query per batch of files, parses each record once and never
materialises the records. The earlier typed `read_json` (STRUCT columns, temp table per
batch of 64) was 2.5x slower than a plain `json.load` loop; this is 1.8-2.75x faster than
that loop at 1 M records (benchmarks/bench_security.py, figures in docs/security.md), for
about 200 MiB peak memory against the loop's 34 MiB.

Records that are not objects or lack the role, source, name or a parseable time are skipped
and counted; a file that is not JSON at all is skipped and counted. Calls AWS refused
(AccessDenied) are not use.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput
from popcorn.security.cloud import Clients
from popcorn.security.models import SecurityAccount, SecurityRole

BATCH = 512
DENIED = ("AccessDenied", "Client.UnauthorizedOperation", "UnauthorizedOperation")

_FIELDS = (
    "'$.userIdentity.sessionContext.sessionIssuer.arn', '$.eventSource', '$.eventName', "
    "'$.eventTime', '$.errorCode'"
)
# One streaming pass per batch of files: DuckDB reads each file as one JSON value, unnests its
# Records, pulls the five fields with one parse per record and aggregates straight into
# (role, action) groups, so memory is bounded by the number of pairs, not of records. A record
# that is not an object, or lacks a field, has NULLs there and is counted as skipped.
_QUERY = """
select role, action,
       max(t) filter (where ok and (err is null or err not in {denied})) as last,
       count(*) as total, count(*) filter (where not ok) as skipped,
       count(*) filter (where err in {denied}) as refused
from (
  select f[1] as role, split_part(f[2], '.', 1) || ':' || lower(f[3]) as action,
         try_cast(f[4] as timestamptz) as t, f[5] as err,
         f[1] is not null and f[2] is not null and f[3] is not null
           and try_cast(f[4] as timestamptz) is not null as ok
  from (
    select json_extract_string(r, [{fields}]) as f
    from (
      select unnest(json_extract(json, '$.Records[*]')) as r
      from read_json_objects({files}, format='auto', compression='gzip',
                             maximum_object_size=268435456)
    )
  )
)
group by all
"""


def _sql_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def read_cloudtrail(paths: Sequence[Path], *, threads: int = 2) -> dict[str, Any]:
    """Last use per (role ARN, action) over the files, with what was read and skipped."""
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    con.execute("SET enable_progress_bar = false")  # no terminal noise from the CLI
    usage: dict[str, dict[str, datetime]] = {}
    stats = {"files": 0, "files_skipped": 0, "records": 0, "skipped": 0, "denied": 0}
    denied = "(" + ", ".join(f"'{d}'" for d in DENIED) + ")"
    started = time.monotonic()

    def run(batch: Sequence[str]) -> None:
        sql = _QUERY.format(files=_sql_list(batch), fields=_FIELDS, denied=denied)
        rows = con.execute(sql).fetchall()
        stats["files"] += len(batch)
        for role, action, last, total, skipped, refused in rows:
            stats["records"] += int(total)
            stats["skipped"] += int(skipped)
            stats["denied"] += int(refused)
            if last is None:
                continue
            per = usage.setdefault(role, {})
            if action not in per or per[action] < last:
                per[action] = last

    names = [str(p) for p in paths]
    for start in range(0, len(names), BATCH):
        batch = names[start : start + BATCH]
        try:
            run(batch)
        except duckdb.Error:
            for one in batch:  # find the bad file(s); the rest still count
                try:
                    run([one])
                except duckdb.Error:
                    stats["files_skipped"] += 1
    con.close()
    return {
        "usage": usage,
        **stats,
        "seconds": round(time.monotonic() - started, 3),
    }


def local_files(directory: str) -> list[Path]:
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise InvalidInput(f"directory {directory!r} does not exist")
    return sorted(p for p in root.rglob("*.json.gz") if p.is_file())


def fetch_s3(clients: Clients, bucket: str, prefix: str, into: Path) -> list[Path]:
    """Download the CloudTrail files under a bucket prefix (one at a time, to disk)."""
    s3 = clients("s3")
    keys = [
        o["Key"]
        for o in clients.pages("s3", "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix)
        if o["Key"].endswith(".json.gz")
    ]
    out = []
    for n, key in enumerate(keys):
        path = into / f"{n:08d}.json.gz"
        clients.call(partial(s3.download_file, bucket, key, str(path)))
        out.append(path)
    return out


def import_usage(
    *,
    session: Session,
    account: SecurityAccount,
    clients: Clients | None,
    bucket: str = "",
    prefix: str = "",
    directory: str = "",
) -> dict[str, Any]:
    """Read CloudTrail files (S3 or a directory) and merge each role's last use of each action."""
    with tempfile.TemporaryDirectory(prefix="popcorn-cloudtrail-") as tmp:
        if bucket:
            if clients is None:
                raise InvalidInput("an S3 bucket needs an AWS account")
            files = fetch_s3(clients, bucket, prefix, Path(tmp))
        else:
            files = local_files(directory)
        result = read_cloudtrail(files)
    roles = merge_usage(session=session, account=account, usage=result.pop("usage"))
    return {**result, "roles": roles}


def role_row(*, session: Session, account: SecurityAccount, arn: str) -> SecurityRole:
    name = arn.rsplit("/", 1)[-1]
    row = session.scalar(
        select(SecurityRole).where(SecurityRole.account_id == account.id, SecurityRole.name == name)
    )
    if row is None:
        row = SecurityRole(account_id=account.id, name=name, arn=arn, action_usage={})
        session.add(row)
    return row


def merge_usage(
    *, session: Session, account: SecurityAccount, usage: dict[str, dict[str, datetime]]
) -> int:
    count = 0
    for arn, actions in usage.items():
        if account.aws_account_id and f":{account.aws_account_id}:" not in arn:
            continue
        row = role_row(session=session, account=account, arn=arn)
        merged = dict(row.action_usage or {})
        for action, last in actions.items():
            stamp = last.isoformat()
            if action not in merged or merged[action] < stamp:
                merged[action] = stamp
        row.action_usage = merged
        count += 1
    session.flush()
    return count


def access_advisor(clients: Clients, role_arn: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Service-level last access of one role, from GenerateServiceLastAccessedDetails and
    GetServiceLastAccessedDetails (polled until the job completes)."""
    iam = clients("iam")
    job = clients.call(lambda: iam.generate_service_last_accessed_details(Arn=role_arn))["JobId"]
    deadline = time.monotonic() + timeout
    services: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"JobId": job}
        if marker:
            kwargs["Marker"] = marker
        page = clients.call(partial(iam.get_service_last_accessed_details, **kwargs))
        status = page.get("JobStatus")
        if status == "FAILED":
            raise InvalidInput(f"Access Advisor job failed: {page.get('Error', {})}")
        if status == "COMPLETED":
            services.extend(page.get("ServicesLastAccessed", []))
            if page.get("IsTruncated") and page.get("Marker"):
                marker = page["Marker"]
                continue
            break
        if time.monotonic() > deadline:
            raise InvalidInput(f"Access Advisor job {job} did not complete in {timeout:.0f}s")
        time.sleep(0.2)
    return {
        s["ServiceNamespace"]: (
            s["LastAuthenticated"].isoformat() if s.get("LastAuthenticated") else None
        )
        for s in services
    }


def import_advisor(
    *, session: Session, account: SecurityAccount, clients: Clients, roles: Iterable[str]
) -> int:
    count = 0
    for arn in roles:
        row = role_row(session=session, account=account, arn=arn)
        row.service_usage = access_advisor(clients, arn)
        count += 1
    session.flush()
    return count
