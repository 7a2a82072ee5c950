"""The demo's security part, on the demo's own moto server: an AWS account with risky
resources and a year of CloudTrail in S3, and a real Git repository holding a secret.
Popcorn watches both, opens scored issues, fixes one as the account changes, and repoes a
role's inline and managed policies from its CloudTrail usage (rollback is one command)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from popcorn.context import acting_as

ACTOR = "demo"
ACCOUNT_ID = "210987654321"
STRANGER = "999988887777"


def allow(endpoint: str) -> None:
    """The demo's admin allows Popcorn to call the demo's own AWS endpoint (before the
    platform starts, so that its processes inherit it)."""
    from popcorn.config import get_settings, reset_settings

    hostport = endpoint.split("://", 1)[1]
    current = get_settings().outbound_allow
    if hostport not in current.split(","):
        os.environ["POPCORN_OUTBOUND_ALLOW"] = ",".join(x for x in (current, hostport) if x)
        reset_settings()


def _clients(endpoint: str) -> Any:
    import boto3

    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1")
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/demo-setup", RoleSessionName="demo-setup"
    )["Credentials"]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    return lambda service: session.client(service, endpoint_url=endpoint)


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _resources(client: Any, trail_dir: Path) -> dict[str, Any]:
    from popcorn.security import sample

    iam, s3, ec2, sqs = client("iam"), client("s3"), client("ec2"), client("sqs")
    trust = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{STRANGER}:root"},
        "Action": "sts:AssumeRole",
    }
    iam.create_role(RoleName="deploy", AssumeRolePolicyDocument=_doc(trust))
    iam.put_role_policy(
        RoleName="deploy",
        PolicyName="admin",
        PolicyDocument=_doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    )
    ec2_trust = {
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    app = sample.role_arn(ACCOUNT_ID, 0)
    iam.create_role(RoleName=app.rsplit("/", 1)[-1], AssumeRolePolicyDocument=_doc(ec2_trust))
    name = app.rsplit("/", 1)[-1]
    wide = {
        "Sid": "App",
        "Effect": "Allow",
        "Action": ["s3:*", "dynamodb:*", "sqs:*", "sns:*", "kms:*"],
        "Resource": "*",
    }
    iam.put_role_policy(RoleName=name, PolicyName="app", PolicyDocument=_doc(wide))
    keep = {"Sid": "LogsNOREPO", "Effect": "Allow", "Action": "logs:*", "Resource": "*"}
    managed = iam.create_policy(
        PolicyName="app-extra",
        PolicyDocument=_doc(
            keep,
            {"Effect": "Allow", "Action": ["ec2:*", "lambda:*", "sts:AssumeRole"], "Resource": "*"},
        ),
    )
    iam.attach_role_policy(RoleName=name, PolicyArn=managed["Policy"]["Arn"])
    s3.create_bucket(Bucket="demo-public-assets")
    s3.put_bucket_acl(Bucket="demo-public-assets", ACL="public-read")
    sg = ec2.create_security_group(GroupName="bastion", Description="bastion")["GroupId"]
    ssh = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=ssh)
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    open_queue = {"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": _doc(open_queue)})
    s3.create_bucket(Bucket="demo-cloudtrail")
    files = sample.write_files(
        trail_dir, sample.records(account=ACCOUNT_ID, roles=50, total=10_000), per_file=1_000
    )
    prefix = f"AWSLogs/{ACCOUNT_ID}/CloudTrail/us-east-1/"
    for path in files:
        s3.upload_file(str(path), "demo-cloudtrail", prefix + path.name)
    return {"sg": sg, "ssh": ssh, "app_role": name, "trail_files": len(files)}


def _git_repo(root: Path) -> Path:
    repo = root / "payments-service"
    repo.mkdir(parents=True, exist_ok=True)
    env = {
        "GIT_AUTHOR_NAME": "Dana",
        "GIT_AUTHOR_EMAIL": "dana@example.com",
        "GIT_COMMITTER_NAME": "Dana",
        "GIT_COMMITTER_EMAIL": "dana@example.com",
        "HOME": str(root),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

    git("init", "--quiet", "--initial-branch=main")
    (repo / "README.md").write_text("payments\n")
    (repo / "config").mkdir(exist_ok=True)
    (repo / "config" / "deploy.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nnot really\n")
    git("add", ".")
    git("commit", "--quiet", "-m", "payments service")
    return repo


def build(endpoint: str, root: Path) -> dict[str, Any]:
    """Set the account up, watch it and the repository, change it, repo a role."""
    from popcorn.db import session_scope
    from popcorn.security import issues, roles, service
    from popcorn.security import schemas as s

    allow(endpoint)
    client = _clients(endpoint)
    made = _resources(client, root / "cloudtrail")
    repo = _git_repo(root / "git")
    with acting_as(ACTOR), session_scope() as session:
        aws = service.create_account(
            session=session,
            spec=s.AccountCreate(
                name="demo-aws",
                role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/popcorn-audit",
                endpoint_url=endpoint,
                regions=["us-east-1"],
                watchers=["iam_role", "iam_policy", "s3_bucket", "ec2_security_group", "sqs_queue"],
                interval_seconds=3600,
            ),
        ).id
        git = service.create_account(
            session=session,
            spec=s.AccountCreate(name="demo-git", kind="git", repositories=[str(repo)]),
        ).id
    with acting_as(ACTOR):
        polled = service.poll(aws)
        service.poll(git)
    client("ec2").revoke_security_group_ingress(GroupId=made["sg"], IpPermissions=made["ssh"])
    with acting_as(ACTOR):
        service.poll(aws, ["ec2_security_group"])
    with acting_as(ACTOR), session_scope() as session:
        used = roles.import_usage(
            session=session,
            account_ref="demo-aws",
            spec=s.UsageRequest(bucket="demo-cloudtrail", prefix="AWSLogs/"),
        )
        done = roles.repo_now(
            session=session,
            account_ref="demo-aws",
            name=made["app_role"],
            rules=s.RepoRules(min_age_days=0),
        )
        report = issues.report(
            session=session, account=service.get_account(session=session, ref="demo-aws")
        )
    return {
        "account": "demo-aws",
        "items": sum(r["items"] for r in polled.values()),
        "open_issues": report["issues"].get("open", 0),
        "fixed_issues": report["issues"].get("fixed", 0),
        "worst": report["items"][0]["name"] if report["items"] else None,
        "cloudtrail_records": used["records"],
        "repoed_role": made["app_role"],
        "removed": done.get("removed", []),
        "git_account": "demo-git",
    }
