"""Watchers, one class per AWS resource kind: each lists its items in one region (or the
global ones) and normalises them, so that only real changes make a new revision.

Normalising drops what changes by itself (timestamps, ETags, last-used dates), sorts what
AWS returns in no fixed order, parses policy documents given as strings, and keeps Lambda
environment variable NAMES only, never values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from popcorn.security.cloud import Clients, CloudFailed

EPHEMERAL = frozenset(
    {
        "CreateDate",
        "CreatedDate",
        "CreationDate",
        "CreatedTime",
        "LastModified",
        "LastModifiedDate",
        "LastUpdatedDate",
        "RoleLastUsed",
        "PasswordLastUsed",
        "ETag",
        "RevisionId",
        "ResponseMetadata",
        "UpdateDate",
        "CodeSha256",
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    }
)


@dataclass
class Observed:
    """One item as a watcher saw it."""

    identifier: str
    name: str
    config: dict[str, Any]


def normalise(value: Any) -> Any:
    """Drop ephemeral keys (at any depth), parse JSON policy strings, sort lists of scalars."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in sorted(value.items()) if k not in EPHEMERAL}
    if isinstance(value, list):
        items = [normalise(v) for v in value]
        try:
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
        except TypeError:
            return items
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def document(raw: Any) -> Any:
    """A policy document from AWS: already a dict (IAM via boto3) or a JSON string."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _missing(clients: Clients, fn: Any, codes: tuple[str, ...]) -> Any:
    """Call `fn` (retried); None when AWS says the optional thing is not configured."""
    try:
        return clients.call(fn)
    except CloudFailed as exc:
        if str(exc).split(":", 1)[0] in codes:
            return None
        raise


class Watcher:
    kind: ClassVar[str]
    title: ClassVar[str]
    regional: ClassVar[bool] = True

    def observe(self, clients: Clients) -> list[Observed]:
        raise NotImplementedError


def principal_policies(clients: Clients, kind: str, name: str) -> dict[str, Any]:
    """A role's, user's or group's inline policy documents and attached managed policy ARNs."""
    iam = clients("iam")
    key = {f"{kind.capitalize()}Name": name}
    inline = {}
    for pname in clients.pages("iam", f"list_{kind}_policies", "PolicyNames", **key):
        doc = clients.call(partial(getattr(iam, f"get_{kind}_policy"), PolicyName=pname, **key))
        inline[pname] = document(doc["PolicyDocument"])
    attached = clients.pages("iam", f"list_attached_{kind}_policies", "AttachedPolicies", **key)
    return {
        "inline_policies": inline,
        "managed_policies": sorted(p["PolicyArn"] for p in attached),
    }


class IAMRoleWatcher(Watcher):
    kind = "iam_role"
    title = "IAM roles"
    regional = False

    def observe(self, clients: Clients) -> list[Observed]:
        iam = clients("iam")
        out = []
        for role in clients.pages("iam", "list_roles", "Roles"):
            name = role["RoleName"]
            tags = clients.call(partial(iam.list_role_tags, RoleName=name)).get("Tags", [])
            config = {
                "arn": role["Arn"],
                "path": role.get("Path", "/"),
                "trust_policy": document(role.get("AssumeRolePolicyDocument", {})),
                **principal_policies(clients, "role", name),
                "tags": {t["Key"]: t["Value"] for t in tags},
                "max_session_duration": role.get("MaxSessionDuration"),
                "created": role["CreateDate"].isoformat() if "CreateDate" in role else None,
            }
            out.append(Observed(role["Arn"], name, config))
        return out


class IAMUserWatcher(Watcher):
    kind = "iam_user"
    title = "IAM users"
    regional = False

    def observe(self, clients: Clients) -> list[Observed]:
        iam = clients("iam")
        out = []
        for user in clients.pages("iam", "list_users", "Users"):
            name = user["UserName"]
            keys = clients.call(partial(iam.list_access_keys, UserName=name))["AccessKeyMetadata"]
            groups = clients.call(partial(iam.list_groups_for_user, UserName=name))["Groups"]
            config = {
                "arn": user["Arn"],
                **principal_policies(clients, "user", name),
                "groups": sorted(g["GroupName"] for g in groups),
                # A key's creation date is part of the item: it is what makes a key stale.
                "access_keys": sorted(
                    (
                        {
                            "id": k["AccessKeyId"],
                            "status": k["Status"],
                            "created": k["CreateDate"].isoformat(),
                        }
                        for k in keys
                    ),
                    key=lambda k: k["id"],
                ),
            }
            out.append(Observed(user["Arn"], name, config))
        return out


class IAMGroupWatcher(Watcher):
    kind = "iam_group"
    title = "IAM groups"
    regional = False

    def observe(self, clients: Clients) -> list[Observed]:
        iam = clients("iam")
        out = []
        for group in clients.pages("iam", "list_groups", "Groups"):
            name = group["GroupName"]
            members = clients.call(partial(iam.get_group, GroupName=name))["Users"]
            config = {
                "arn": group["Arn"],
                **principal_policies(clients, "group", name),
                "members": sorted(u["UserName"] for u in members),
            }
            out.append(Observed(group["Arn"], name, config))
        return out


class ManagedPolicyWatcher(Watcher):
    kind = "iam_policy"
    title = "Customer-managed policies"
    regional = False

    def observe(self, clients: Clients) -> list[Observed]:
        iam = clients("iam")
        out = []
        for policy in clients.pages("iam", "list_policies", "Policies", Scope="Local"):
            arn = policy["Arn"]
            versions = clients.call(partial(iam.list_policy_versions, PolicyArn=arn))["Versions"]
            docs = {}
            for v in versions:
                got = clients.call(
                    partial(iam.get_policy_version, PolicyArn=arn, VersionId=v["VersionId"])
                )
                docs[v["VersionId"]] = document(got["PolicyVersion"]["Document"])
            config = {
                "arn": arn,
                "default_version": policy["DefaultVersionId"],
                "document": docs.get(policy["DefaultVersionId"], {}),
                "versions": docs,
                "attachments": policy.get("AttachmentCount", 0),
            }
            out.append(Observed(arn, policy["PolicyName"], config))
        return out


class S3BucketWatcher(Watcher):
    kind = "s3_bucket"
    title = "S3 buckets"
    regional = False

    def observe(self, clients: Clients) -> list[Observed]:
        s3 = clients("s3")
        out = []
        for bucket in clients.call(s3.list_buckets).get("Buckets", []):
            name = bucket["Name"]
            policy = _missing(
                clients, partial(s3.get_bucket_policy, Bucket=name), ("NoSuchBucketPolicy",)
            )
            acl = clients.call(partial(s3.get_bucket_acl, Bucket=name))
            block = _missing(
                clients,
                partial(s3.get_public_access_block, Bucket=name),
                ("NoSuchPublicAccessBlockConfiguration",),
            )
            enc = _missing(
                clients,
                partial(s3.get_bucket_encryption, Bucket=name),
                ("ServerSideEncryptionConfigurationNotFoundError",),
            )
            versioning = clients.call(partial(s3.get_bucket_versioning, Bucket=name))
            config = {
                "arn": f"arn:aws:s3:::{name}",
                "policy": document(policy["Policy"]) if policy else None,
                "grants": [
                    {
                        "grantee": g["Grantee"].get("URI")
                        or g["Grantee"].get("ID")
                        or g["Grantee"].get("EmailAddress"),
                        "type": g["Grantee"]["Type"],
                        "permission": g["Permission"],
                    }
                    for g in acl.get("Grants", [])
                ],
                "public_access_block": block["PublicAccessBlockConfiguration"] if block else None,
                "encryption": [
                    r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
                    for r in enc["ServerSideEncryptionConfiguration"]["Rules"]
                ]
                if enc
                else [],
                "versioning": versioning.get("Status", "Disabled"),
            }
            out.append(Observed(config["arn"], name, config))
        return out


class SecurityGroupWatcher(Watcher):
    kind = "ec2_security_group"
    title = "EC2 security groups"

    def observe(self, clients: Clients) -> list[Observed]:
        out = []
        for group in clients.pages("ec2", "describe_security_groups", "SecurityGroups"):

            def rules(perms: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [
                    {
                        "protocol": p.get("IpProtocol"),
                        "from": p.get("FromPort"),
                        "to": p.get("ToPort"),
                        "cidrs": sorted(r["CidrIp"] for r in p.get("IpRanges", [])),
                        "cidrs6": sorted(r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])),
                        "groups": sorted(
                            f"{g.get('UserId', '')}/{g.get('GroupId', '')}"
                            for g in p.get("UserIdGroupPairs", [])
                        ),
                    }
                    for p in perms
                ]

            config = {
                "id": group["GroupId"],
                "vpc": group.get("VpcId"),
                "description": group.get("Description", ""),
                "ingress": rules(group.get("IpPermissions", [])),
                "egress": rules(group.get("IpPermissionsEgress", [])),
            }
            ident = f"{group['GroupId']}"
            out.append(Observed(ident, group.get("GroupName", ident), normalise(config)))
        return out


class LoadBalancerWatcher(Watcher):
    kind = "elbv2_load_balancer"
    title = "ELBv2 load balancers and listeners"

    def observe(self, clients: Clients) -> list[Observed]:
        elb = clients("elbv2")
        out = []
        for lb in clients.pages("elbv2", "describe_load_balancers", "LoadBalancers"):
            arn = lb["LoadBalancerArn"]
            listeners = clients.call(partial(elb.describe_listeners, LoadBalancerArn=arn))
            config = {
                "arn": arn,
                "scheme": lb.get("Scheme"),
                "type": lb.get("Type"),
                "security_groups": sorted(lb.get("SecurityGroups", [])),
                "listeners": sorted(
                    (
                        {
                            "port": li.get("Port"),
                            "protocol": li.get("Protocol"),
                            "ssl_policy": li.get("SslPolicy"),
                            "certificates": sorted(
                                c["CertificateArn"] for c in li.get("Certificates", [])
                            ),
                        }
                        for li in listeners.get("Listeners", [])
                    ),
                    key=lambda li: (li["port"] or 0, li["protocol"] or ""),
                ),
            }
            out.append(Observed(arn, lb["LoadBalancerName"], config))
        return out


class KMSKeyWatcher(Watcher):
    kind = "kms_key"
    title = "KMS keys and policies"

    def observe(self, clients: Clients) -> list[Observed]:
        kms = clients("kms")
        out = []
        for key in clients.pages("kms", "list_keys", "Keys"):
            kid = key["KeyId"]
            meta = clients.call(partial(kms.describe_key, KeyId=kid))["KeyMetadata"]
            if meta.get("KeyManager") == "AWS":
                continue
            policy = clients.call(partial(kms.get_key_policy, KeyId=kid, PolicyName="default"))
            rotation = _missing(
                clients,
                partial(kms.get_key_rotation_status, KeyId=kid),
                ("UnsupportedOperationException",),
            )
            config = {
                "arn": meta["Arn"],
                "state": meta.get("KeyState"),
                "usage": meta.get("KeyUsage"),
                "spec": meta.get("KeySpec"),
                "description": meta.get("Description", ""),
                "rotation": bool(rotation and rotation.get("KeyRotationEnabled")),
                "policy": document(policy.get("Policy")),
            }
            out.append(Observed(meta["Arn"], kid, config))
        return out


class SQSQueueWatcher(Watcher):
    kind = "sqs_queue"
    title = "SQS queues"

    def observe(self, clients: Clients) -> list[Observed]:
        sqs = clients("sqs")
        out = []
        # without MaxResults, ListQueues answers the first 1,000 queues and no NextToken
        for url in clients.pages("sqs", "list_queues", "QueueUrls", MaxResults=1000):
            attrs = clients.call(
                partial(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["All"])
            ).get("Attributes", {})
            config = {
                "arn": attrs.get("QueueArn"),
                "policy": document(attrs["Policy"]) if attrs.get("Policy") else None,
                "kms_key": attrs.get("KmsMasterKeyId"),
                "sse": attrs.get("SqsManagedSseEnabled") == "true",
                "visibility_timeout": attrs.get("VisibilityTimeout"),
                "retention": attrs.get("MessageRetentionPeriod"),
            }
            name = url.rsplit("/", 1)[-1]
            out.append(Observed(attrs.get("QueueArn") or url, name, config))
        return out


class SNSTopicWatcher(Watcher):
    kind = "sns_topic"
    title = "SNS topics"

    def observe(self, clients: Clients) -> list[Observed]:
        sns = clients("sns")
        out = []
        for topic in clients.pages("sns", "list_topics", "Topics"):
            arn = topic["TopicArn"]
            attrs = clients.call(partial(sns.get_topic_attributes, TopicArn=arn))["Attributes"]
            config = {
                "arn": arn,
                "policy": document(attrs.get("Policy")) if attrs.get("Policy") else None,
                "kms_key": attrs.get("KmsMasterKeyId"),
                "display_name": attrs.get("DisplayName", ""),
            }
            out.append(Observed(arn, arn.rsplit(":", 1)[-1], config))
        return out


class LambdaFunctionWatcher(Watcher):
    kind = "lambda_function"
    title = "Lambda functions"

    def observe(self, clients: Clients) -> list[Observed]:
        lam = clients("lambda")
        out = []
        for fn in clients.pages("lambda", "list_functions", "Functions"):
            arn = fn["FunctionArn"]
            policy = _missing(
                clients, partial(lam.get_policy, FunctionName=arn), ("ResourceNotFoundException",)
            )
            env = (fn.get("Environment") or {}).get("Variables") or {}
            config = {
                "arn": arn,
                "runtime": fn.get("Runtime"),
                "role": fn.get("Role"),
                "handler": fn.get("Handler"),
                "environment_names": sorted(env),  # names only: values are secrets
                "policy": document(policy["Policy"]) if policy else None,
            }
            out.append(Observed(arn, fn["FunctionName"], config))
        return out


WATCHERS: dict[str, Watcher] = {
    w.kind: w
    for w in (
        IAMRoleWatcher(),
        IAMUserWatcher(),
        IAMGroupWatcher(),
        ManagedPolicyWatcher(),
        S3BucketWatcher(),
        SecurityGroupWatcher(),
        LoadBalancerWatcher(),
        KMSKeyWatcher(),
        SQSQueueWatcher(),
        SNSTopicWatcher(),
        LambdaFunctionWatcher(),
    )
}
AWS_WATCHERS = tuple(WATCHERS)
GIT_WATCHER = "git_repository"
