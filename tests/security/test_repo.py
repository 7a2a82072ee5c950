"""Least privilege: usage from CloudTrail files in a moto S3 bucket, then repo of a role's
inline and customer-managed policies with a dry run, schedule, cancel, rollback and refusals."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cloudtrail_kit import days_ago, gz, record
from sqlalchemy import select

from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict
from popcorn.outbox import OutboxEvent
from popcorn.security import roles, service
from popcorn.security import schemas as s
from popcorn.security.models import SecurityPolicyVersion, SecurityRole

INLINE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Data",
            "Effect": "Allow",
            "Action": ["s3:*", "ec2:DescribeInstances", "iam:PassRole"],
            "Resource": "*",
        },
        {"Sid": "QueuesNOREPO", "Effect": "Allow", "Action": "sqs:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"},
    ],
}
MANAGED = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["dynamodb:*", "kms:Decrypt"], "Resource": "*"}],
}
RULES = s.RepoRules(unused_days=90, min_age_days=0)


def _policies(sandbox: Any, arn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    iam = sandbox.client("iam")
    inline = iam.get_role_policy(RoleName="app", PolicyName="app")["PolicyDocument"]
    default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    managed = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]
    return inline, managed


def _events(prefix: str) -> list[str]:
    with session_scope(readonly=True) as session:
        return [
            e.type
            for e in session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.type.like(f"{prefix}%"))
                .order_by(OutboxEvent.id)
            )
        ]


@pytest.fixture
def app_role(sandbox: Any) -> dict[str, Any]:
    iam, s3 = sandbox.client("iam"), sandbox.client("s3")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role_arn = iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    iam.put_role_policy(RoleName="app", PolicyName="app", PolicyDocument=json.dumps(INLINE))
    arn = iam.create_policy(PolicyName="app-data", PolicyDocument=json.dumps(MANAGED))["Policy"][
        "Arn"
    ]
    iam.attach_role_policy(RoleName="app", PolicyArn=arn)
    bucket = f"trail-{sandbox.account_id}"
    s3.create_bucket(Bucket=bucket)
    prefix = f"AWSLogs/{sandbox.account_id}/CloudTrail/us-east-1/2026/11/01/"
    good = [
        record(role_arn, "s3:GetObject", days_ago(3)),
        record(role_arn, "s3:PutObject", days_ago(10)),
        record(role_arn, "dynamodb:GetItem", days_ago(5)),
        record(role_arn, "ec2:DescribeInstances", days_ago(200)),  # too long ago
        record(role_arn, "iam:PassRole", days_ago(1), error="AccessDenied"),  # refused: not use
    ]
    malformed = [
        "not a record",
        {"eventTime": "yesterday", "eventSource": "s3.amazonaws.com"},
        {"eventName": 5},
    ]
    s3.put_object(Bucket=bucket, Key=prefix + "a.json.gz", Body=gz(good[:3]))
    s3.put_object(Bucket=bucket, Key=prefix + "b.json.gz", Body=gz(good[3:] + malformed))
    s3.put_object(Bucket=bucket, Key=prefix + "c.json.gz", Body=b"\x1f\x8b not gzip json")
    s3.put_object(Bucket=bucket, Key=prefix + "digest.txt", Body=b"ignored")
    with session_scope() as session:
        service.create_account(
            session=session,
            spec=s.AccountCreate.model_validate(sandbox.account_spec(watchers=["iam_role"])),
        )
    return {"role_arn": role_arn, "policy_arn": arn, "bucket": bucket}


def test_usage_dry_run_schedule_repo_and_rollback(sandbox: Any, app_role: dict[str, Any]) -> None:
    with session_scope() as session:
        got = roles.import_usage(
            session=session,
            account_ref="prod",
            spec=s.UsageRequest(bucket=app_role["bucket"], prefix="AWSLogs/"),
        )
    assert (
        got["files"],
        got["files_skipped"],
        got["records"],
        got["skipped"],
        got["denied"],
        got["roles"],
    ) == (2, 1, 8, 3, 1, 1)

    with session_scope() as session:
        dry = roles.plan(session=session, account_ref="prod", name="app", rules=RULES)
    assert dry["skipped"] == "" and dry["problems"] == []
    assert dry["repoable"] == [
        "dynamodb:*",
        "ec2:describeinstances",
        "iam:passrole",
        "kms:decrypt",
        "s3:*",
    ]
    lines = dry["diff"].splitlines()
    assert any(x.startswith("-") and '"s3:*"' in x for x in lines)
    assert any(x.startswith("+") and '"s3:getobject"' in x for x in lines)
    assert _policies(sandbox, app_role["policy_arn"]) == (
        INLINE,
        MANAGED,
    )  # a dry run changes nothing

    with session_scope() as session:
        row = roles.schedule(
            session=session,
            account_ref="prod",
            name="app",
            spec=s.RepoRequest(**RULES.model_dump(), wait_hours=1),
        )
        assert row.state == "scheduled"
    with session_scope() as session:
        assert roles.apply_due(session=session) == []  # still waiting
        session.scalars(select(SecurityRole)).one().repo_after = utcnow() - timedelta(seconds=1)
    with session_scope() as session:
        [done] = roles.apply_due(session=session)
    assert done["state"] == "repoed" and len(done["changed"]) == 2
    inline, managed = _policies(sandbox, app_role["policy_arn"])
    assert inline["Statement"] == [
        {
            "Sid": "Data",
            "Effect": "Allow",
            "Action": ["s3:getobject", "s3:putobject"],
            "Resource": "*",
        },
        INLINE["Statement"][1],
        INLINE["Statement"][2],
    ]
    assert managed["Statement"] == [
        {"Effect": "Allow", "Action": "dynamodb:getitem", "Resource": "*"}
    ]

    # Again: nothing to change (idempotent).
    with session_scope() as session:
        again = roles.repo_now(session=session, account_ref="prod", name="app", rules=RULES)
    assert again["changed"] == []

    with session_scope() as session:
        back = roles.rollback(session=session, account_ref="prod", name="app", version=1)
        assert [
            v.source for v in roles.versions(session=session, account_ref="prod", name="app")
        ] == ["observed", "repo", "rollback"]
    assert back["state"] == "rolled_back"
    assert _policies(sandbox, app_role["policy_arn"]) == (INLINE, MANAGED)
    with session_scope() as session:
        assert (
            roles.rollback(session=session, account_ref="prod", name="app", version=1)["changed"]
            == []
        )
    assert _events("security.role.") == [
        "security.role.scheduled",
        "security.role.repoed",
        "security.role.rolled_back",
    ]


def test_cancel_and_skip_filters(sandbox: Any, app_role: dict[str, Any]) -> None:
    with session_scope() as session:
        roles.import_usage(
            session=session, account_ref="prod", spec=s.UsageRequest(bucket=app_role["bucket"])
        )
        roles.schedule(
            session=session,
            account_ref="prod",
            name="app",
            spec=s.RepoRequest(min_age_days=0, wait_hours=0),
        )
        assert roles.cancel(session=session, account_ref="prod", name="app").state == "canceled"
        assert roles.apply_due(session=session) == []
        with pytest.raises(Conflict):
            roles.cancel(session=session, account_ref="prod", name="app")
    assert _policies(sandbox, app_role["policy_arn"]) == (INLINE, MANAGED)
    sandbox.client("iam").tag_role(RoleName="app", Tags=[{"Key": "popcorn-norepo", "Value": "yes"}])
    with session_scope() as session:
        assert (
            "opt-out tag"
            in roles.plan(session=session, account_ref="prod", name="app", rules=RULES)["skipped"]
        )
        assert (
            "younger than 90 days"
            in roles.plan(
                session=session, account_ref="prod", name="app", rules=s.RepoRules(opt_out_tag="")
            )["skipped"]
        )
        assert (
            "excluded glob"
            in roles.plan(
                session=session,
                account_ref="prod",
                name="app",
                rules=s.RepoRules(min_age_days=0, exclude_globs=["ap*"]),
            )["skipped"]
        )


def test_refused_rollback_leaves_the_role_as_it_was(sandbox: Any, app_role: dict[str, Any]) -> None:
    with session_scope() as session:
        roles.plan(session=session, account_ref="prod", name="app", rules=RULES)  # keeps version 1
        v1 = session.scalars(select(SecurityPolicyVersion)).one()
        # A stored version AWS will refuse: the inline part would apply first, the managed
        # part is malformed (a statement without an action).
        v1.inline = {
            "app": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        }
        v1.managed = {
            app_role["policy_arn"]: {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Resource": "*"}],
            }
        }
    with session_scope() as session:
        out = roles.rollback(session=session, account_ref="prod", name="app", version=1)
    assert out["state"] == "failed" and "MalformedPolicyDocument" in out["reason"]
    assert _policies(sandbox, app_role["policy_arn"]) == (INLINE, MANAGED)
    with session_scope() as session:
        v1 = session.scalars(select(SecurityPolicyVersion)).one()
        v1.inline = {
            "app": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:GetObject"] * 1200, "Resource": "*"}
                ],
            }
        }
    with session_scope() as session:
        out = roles.rollback(session=session, account_ref="prod", name="app", version=1)
    assert out["state"] == "failed" and "AWS allows 10240" in out["reason"]
    assert _policies(sandbox, app_role["policy_arn"]) == (INLINE, MANAGED)
    assert _events("security.role.") == ["security.role.failed", "security.role.failed"]


def test_a_managed_policy_left_empty_is_detached_and_proposed_for_deletion(
    sandbox: Any, app_role: dict[str, Any]
) -> None:
    """A customer-managed policy the role uses nothing of is detached (not kept with its
    unused grants); attached nowhere else, it is proposed for deletion; rollback re-attaches
    it. A shared one the role does not use is only detached from this role."""
    iam = sandbox.client("iam")
    unused = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}],
    }
    lone = iam.create_policy(PolicyName="app-sns", PolicyDocument=json.dumps(unused))["Policy"][
        "Arn"
    ]
    shared = iam.create_policy(PolicyName="team-sns", PolicyDocument=json.dumps(unused))["Policy"][
        "Arn"
    ]
    iam.create_user(UserName="someone")
    for arn in (lone, shared):
        iam.attach_role_policy(RoleName="app", PolicyArn=arn)
    iam.attach_user_policy(UserName="someone", PolicyArn=shared)
    with session_scope() as session:
        roles.import_usage(
            session=session, account_ref="prod", spec=s.UsageRequest(bucket=app_role["bucket"])
        )
        dry = roles.plan(session=session, account_ref="prod", name="app", rules=RULES)
    assert sorted(dry["detach"]) == sorted([lone, shared])
    assert dry["propose_delete"] == [lone]
    assert "sns:publish" in dry["repoable"]
    assert lone not in dry["policies"]["managed"] and shared not in dry["policies"]["managed"]

    def attached() -> list[str]:
        return sorted(
            p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName="app")["AttachedPolicies"]
        )

    with session_scope() as session:
        done = roles.repo_now(session=session, account_ref="prod", name="app", rules=RULES)
    assert done["state"] == "repoed" and done["propose_delete"] == [lone]
    assert f"managed {lone} detached" in done["changed"]
    assert attached() == [app_role["policy_arn"]]
    assert iam.get_policy(PolicyArn=lone)["Policy"]["AttachmentCount"] == 0  # still there
    assert [
        p["PolicyArn"]
        for p in iam.list_attached_user_policies(UserName="someone")["AttachedPolicies"]
    ] == [shared]
    with session_scope() as session:
        event = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "security.role.repoed")
        ).one()
        assert event.payload["propose_delete"] == [lone]
        back = roles.rollback(session=session, account_ref="prod", name="app", version=1)
    assert back["state"] == "rolled_back"
    assert attached() == sorted([app_role["policy_arn"], lone, shared])
    assert _policies(sandbox, app_role["policy_arn"]) == (INLINE, MANAGED)
