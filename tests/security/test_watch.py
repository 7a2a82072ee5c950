"""Watching a moto-served account: items, revisions only on change, diffs, deletions kept,
scored issues that open, fix and regress, and failures reported per watcher and account."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.outbox import OutboxEvent
from popcorn.security import issues, service
from popcorn.security import schemas as s

OTHER = "999988887777"


def _trust(principal: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def _create(sandbox: Any, **extra: Any) -> int:
    with session_scope() as session:
        return service.create_account(
            session=session, spec=s.AccountCreate.model_validate(sandbox.account_spec(**extra))
        ).id


def _items(account_id: int) -> dict[tuple[str, str], Any]:
    with session_scope(readonly=True) as session:
        page = service.list_items(
            session=session,
            params=ListParams(limit=1000, filters={"account_id": [str(account_id)]}),
        )
        return {(i.watcher, i.name): s.ItemRead.model_validate(i) for i in page.items}


def _open(account_id: int) -> dict[str, int]:
    with session_scope(readonly=True) as session:
        page = issues.list_issues(
            session=session,
            params=ListParams(
                limit=1000, filters={"account_id": [str(account_id)], "status": ["open"]}
            ),
        )
        return {i.title: i.score for i in page.items}


def _events(kind: str) -> list[dict[str, Any]]:
    with session_scope(readonly=True) as session:
        return [
            e.payload for e in session.scalars(select(OutboxEvent).where(OutboxEvent.type == kind))
        ]


@pytest.fixture
def world(sandbox: Any) -> dict[str, Any]:
    """One of each kind of resource, several of them risky."""
    iam, s3, ec2 = sandbox.client("iam"), sandbox.client("s3"), sandbox.client("ec2")
    iam.create_role(
        RoleName="deploy", AssumeRolePolicyDocument=_trust(f"arn:aws:iam::{OTHER}:root")
    )
    iam.put_role_policy(
        RoleName="deploy",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    iam.create_user(UserName="ci")
    iam.create_access_key(UserName="ci")
    iam.create_group(GroupName="ops")
    iam.add_user_to_group(GroupName="ops", UserName="ci")
    iam.create_policy(
        PolicyName="kms-admin",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
            }
        ),
    )
    s3.create_bucket(Bucket=f"logs-{sandbox.account_id}")
    s3.put_bucket_acl(Bucket=f"logs-{sandbox.account_id}", ACL="public-read")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    sg = ec2.create_security_group(GroupName="ssh", Description="ssh", VpcId=vpc)["GroupId"]
    ssh = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=ssh)
    sqs = sandbox.client("sqs")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    queue_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(queue_policy)})
    sandbox.client("sns").create_topic(Name="alerts")
    sandbox.client("kms").create_key(Description="data")
    return {"sg": sg, "ssh": ssh, "bucket": f"logs-{sandbox.account_id}"}


def test_poll_stores_items_and_opens_scored_issues(sandbox: Any, world: dict[str, Any]) -> None:
    account = _create(sandbox, friendly_accounts=[], allowed_networks=[])
    result = service.poll(account)
    assert {w: r["status"] for w, r in result.items()} == {w: "ok" for w in result}
    items = _items(account)
    for key in [
        ("iam_role", "deploy"),
        ("iam_user", "ci"),
        ("iam_group", "ops"),
        ("iam_policy", "kms-admin"),
        ("s3_bucket", world["bucket"]),
        ("ec2_security_group", "ssh"),
        ("sqs_queue", "jobs"),
        ("sns_topic", "alerts"),
    ]:
        assert key in items, key
    assert any(w == "kms_key" for w, _ in items)
    found = _open(account)
    assert found[f"trust policy lets unknown account {OTHER} in"] == 10
    assert found["inline policy all is admin-equivalent (* on *)"] == 10
    assert found["default version allows every kms action (kms:*)"] == 5
    assert found["ACL grants READ to AllUsers"] == 10
    assert found["ingress tcp/22 open to the internet (0.0.0.0/0)"] == 10
    assert found["access policy lets anyone in (Principal *)"] == 10
    assert items[("iam_role", "deploy")].score == 20
    opened = _events("security.issue.opened")
    assert len(opened) == sum(1 for _ in found) and opened[0]["account_id"] == account

    # Nothing changed: no new revision, no new event.
    again = service.poll(account)
    assert all(r["changed"] == 0 for r in again.values())
    assert _items(account)[("iam_role", "deploy")].revisions == 1

    with session_scope(readonly=True) as session:
        report = issues.report(
            session=session, account=service.get_account(session=session, ref="prod")
        )
    assert report["items"][0]["score"] == 20 and report["items"][0]["name"] == "deploy"
    assert [i["score"] for i in report["items"]] == sorted(
        (i["score"] for i in report["items"]), reverse=True
    )


def test_issue_fixed_then_regressed_with_diffs_and_history(
    sandbox: Any, world: dict[str, Any]
) -> None:
    account = _create(sandbox, watchers=["ec2_security_group", "s3_bucket"])
    service.poll(account)
    ec2, s3 = sandbox.client("ec2"), sandbox.client("s3")
    title = "ingress tcp/22 open to the internet (0.0.0.0/0)"

    ec2.revoke_security_group_ingress(GroupId=world["sg"], IpPermissions=world["ssh"])
    service.poll(account, ["ec2_security_group"])
    assert title not in _open(account)
    fixed = _events("security.issue.fixed")
    assert [e["title"] for e in fixed] == [title]
    sg = _items(account)[("ec2_security_group", "ssh")]
    assert sg.revisions == 2 and sg.score == 0
    with session_scope(readonly=True) as session:
        d = service.diff(session=session, item_id=sg.id)
    assert d["changes"] == [
        {"path": "ingress", "op": "changed", "before": d["changes"][0]["before"], "after": []}
    ]
    assert '"0.0.0.0/0"' in d["text"] and d["text"].startswith("--- ssh@1")

    ec2.authorize_security_group_ingress(GroupId=world["sg"], IpPermissions=world["ssh"])
    service.poll(account, ["ec2_security_group"])
    assert _open(account)[title] == 10
    regressed = _events("security.issue.regressed")
    assert [e["title"] for e in regressed] == [title]
    with session_scope(readonly=True) as session:
        one_three = service.diff(session=session, item_id=sg.id, before=1, after=3)
    assert one_three["changes"] == []

    # A deleted bucket keeps its history; its issues are fixed.
    s3.put_bucket_acl(Bucket=world["bucket"], ACL="private")
    s3.delete_bucket(Bucket=world["bucket"])
    service.poll(account, ["s3_bucket"])
    bucket = _items(account)[("s3_bucket", world["bucket"])]
    assert not bucket.active and bucket.revisions == 2 and bucket.score == 0
    with session_scope(readonly=True) as session:
        revisions = service.list_revisions(session=session, item_id=bucket.id)
    assert [r.active for r in revisions] == [True, False]
    assert revisions[0].config["grants"]


def test_friendly_accounts_and_allowed_networks_suppress(
    sandbox: Any, world: dict[str, Any]
) -> None:
    account = _create(
        sandbox,
        watchers=["iam_role", "ec2_security_group"],
        friendly_accounts=[OTHER],
        allowed_networks=["0.0.0.0/0"],
    )
    service.poll(account)
    found = _open(account)
    assert found == {
        f"trust policy trusts the whole of account {OTHER} (root)": 6,
        "inline policy all is admin-equivalent (* on *)": 10,
    }


def test_justified_issue_leaves_the_score_and_reopens_when_expired(
    sandbox: Any, world: dict[str, Any]
) -> None:
    from datetime import timedelta

    from popcorn.db import utcnow
    from popcorn.security.models import SecurityIssue

    account = _create(sandbox, watchers=["ec2_security_group"])
    service.poll(account)
    with session_scope() as session:
        issue = session.scalars(
            select(SecurityIssue).where(SecurityIssue.account_id == account)
        ).one()
        issues.justify(
            session=session, issue_id=issue.id, reason="bastion", until=utcnow() + timedelta(days=1)
        )
        issue_id = issue.id
    assert _items(account)[("ec2_security_group", "ssh")].score == 0
    from popcorn import jobs

    with session_scope(readonly=True) as session:
        names = {x.name for x in jobs.list_schedules(session=session)}
    assert "security:expire-justifications" in names
    with session_scope() as session:
        issue = session.get(SecurityIssue, issue_id)
        assert (
            issue is not None and issue.status == "justified" and issue.justification == "bastion"
        )
        issue.justified_until = utcnow() - timedelta(seconds=1)
    with session_scope() as session:
        assert issues.expire_justifications(session=session) == 1
    assert _items(account)[("ec2_security_group", "ssh")].score == 10


def test_bad_credentials_degrade_one_account_only(sandbox: Any, world: dict[str, Any]) -> None:
    good = _create(sandbox, watchers=["sqs_queue"])
    with session_scope() as session:
        bad = service.create_account(
            session=session,
            spec=s.AccountCreate(
                name="lost", profile="no-such-profile", endpoint_url=sandbox.endpoint
            ),
        ).id
    assert service.poll(bad)["iam_role"]["status"] == "failed"
    assert service.poll(good)["sqs_queue"]["status"] == "ok"
    with session_scope(readonly=True) as session:
        lost = service.get_account(session=session, ref=bad)
        assert lost.status == "degraded" and "no-such-profile" in lost.status_reason
        assert {st.status for st in service.watcher_states(session=session, account=lost)} == {
            "failed"
        }
        assert service.get_account(session=session, ref=good).status == "ok"
    assert [e["name"] for e in _events("security.account.degraded")] == ["lost"]


def test_each_watcher_is_scheduled_with_the_account_interval(sandbox: Any) -> None:
    from popcorn import jobs

    _create(sandbox, watchers=["iam_role", "s3_bucket"], interval_seconds=900)
    with session_scope(readonly=True) as session:
        scheds = {x.name: x for x in jobs.list_schedules(session=session)}
    assert set(scheds) == {
        "security:prod:iam_role",
        "security:prod:s3_bucket",
        "security:daily-report",
    }
    assert scheds["security:daily-report"].cron == "0 6 * * *"
    assert scheds["security:prod:iam_role"].interval_seconds == 900
    assert scheds["security:prod:iam_role"].arguments["watchers"] == ["iam_role"]


def test_throttling_is_retried_with_backoff() -> None:
    from botocore.exceptions import ClientError

    from popcorn.security.cloud import CloudFailed, Target

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ClientError(
                {"Error": {"Code": "Throttling", "Message": "slow down"}}, "ListRoles"
            )
        return "ok"

    counter = [0]
    assert Target(base_delay=0.001).call(flaky, counter=counter) == "ok"
    assert counter == [2]

    def always() -> str:
        raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "ListRoles")

    with pytest.raises(CloudFailed, match="Throttling"):
        Target(base_delay=0.001, retries=2).call(always)


def test_stale_active_access_keys_are_issues() -> None:
    from datetime import timedelta

    from popcorn.db import utcnow
    from popcorn.security.auditors import Context, audit_item

    old = (utcnow() - timedelta(days=200)).isoformat()
    new = (utcnow() - timedelta(days=2)).isoformat()
    config = {
        "access_keys": [
            {"id": "AKIAOLD", "status": "Active", "created": old},
            {"id": "AKIAOFF", "status": "Inactive", "created": old},
            {"id": "AKIANEW", "status": "Active", "created": new},
        ]
    }
    found = audit_item("iam_user", config, Context(account_id="123456789012"))
    assert [(f.title, f.score) for f in found] == [
        ("active access key AKIAOLD older than 90 days", 5)
    ]


def test_an_endpoint_no_longer_allowed_degrades_the_account(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from popcorn.config import reset_settings

    account = _create(sandbox, watchers=["sqs_queue"])
    monkeypatch.setenv("POPCORN_OUTBOUND_ALLOW", "")
    reset_settings()
    try:
        result = service.poll(account)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert result["sqs_queue"]["status"] == "failed"
    with session_scope(readonly=True) as session:
        found = service.get_account(session=session, ref=account)
        assert found.status == "degraded" and "not allowed" in found.status_reason


def test_daily_reports_are_events(sandbox: Any, world: dict[str, Any]) -> None:
    account = _create(sandbox, watchers=["ec2_security_group"])
    service.poll(account)
    with session_scope() as session:
        assert service.daily_reports(session=session) == [{"account": "prod", "total_score": 10}]
    [report] = _events("security.report.daily")
    assert report["items"][0]["name"] == "ssh" and report["items"][0]["score"] == 10


@pytest.mark.slow
def test_more_than_a_thousand_queues_are_all_listed(sandbox: Any) -> None:
    """ListQueues answers 1,000 queues and no NextToken unless MaxResults is given."""
    sqs = sandbox.client("sqs")
    for n in range(1005):
        sqs.create_queue(QueueName=f"q-{n:04d}")
    account = _create(sandbox, watchers=["sqs_queue"])
    assert service.poll(account)["sqs_queue"]["items"] == 1005
