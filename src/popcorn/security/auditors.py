"""Auditors: small classes with `check_*` methods over a normalised item (the shape Security
Monkey users know). Each check adds scored findings; the service turns them into issues that
open, regress and are fixed across revisions.

Scores: internet-accessible 10, unknown cross-account 10, cross-account root 6,
admin-equivalent policy 10, wildcard actions on sensitive services 5, public bucket 10,
unencrypted bucket 3, stale access key 5; friendly accounts and allowed networks suppress
what is known and fine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from popcorn.db import utcnow

SENSITIVE_SERVICES = frozenset({"iam", "sts", "kms", "s3", "ec2", "lambda", "organizations"})
PUBLIC_GRANTEES = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)
OLD_TLS_POLICIES = frozenset({"ELBSecurityPolicy-2015-05", "ELBSecurityPolicy-TLS-1-0-2015-04"})
DEPRECATED_RUNTIMES = frozenset({"python2.7", "python3.6", "python3.7", "nodejs12.x", "go1.x"})
STALE_KEY_DAYS = 90


@dataclass
class Context:
    """What an auditor knows about the account the item lives in."""

    account_id: str = ""
    friendly_accounts: frozenset[str] = frozenset()
    allowed_networks: tuple[Any, ...] = ()
    now: datetime = field(default_factory=utcnow)


@dataclass
class Finding:
    auditor: str
    check: str
    title: str
    score: int
    detail: dict[str, Any]

    @property
    def key(self) -> str:
        raw = json.dumps([self.auditor, self.check, self.detail], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def statements(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    stmts = doc.get("Statement", [])
    if isinstance(stmts, dict):
        stmts = [stmts]
    return [s for s in stmts if isinstance(s, dict)]


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def principal_accounts(principal: Any) -> list[str]:
    """The AWS principals of a statement: '*' or ARNs / account ids (services ignored)."""
    if principal == "*":
        return ["*"]
    if isinstance(principal, dict):
        return [str(p) for p in as_list(principal.get("AWS"))]
    return []


def account_of(principal: str) -> tuple[str, bool]:
    """(account id, is the root) of an ARN or bare account id."""
    if principal.isascii() and principal.isdigit():
        return principal, True
    parts = principal.split(":")
    if len(parts) >= 6 and parts[0] == "arn":
        return parts[4], parts[5] == "root"
    return principal, False


class Auditor:
    """Base: runs every `check_*` method of the subclass on the items it applies to."""

    name: ClassVar[str]
    watchers: ClassVar[tuple[str, ...]]

    def audit(self, config: dict[str, Any], ctx: Context) -> list[Finding]:
        self._found: list[Finding] = []
        self.ctx = ctx
        for attr in sorted(dir(self)):
            if attr.startswith("check_"):
                self._check = attr
                getattr(self, attr)(config)
        return self._found

    def add(self, title: str, score: int, **detail: Any) -> None:
        self._found.append(Finding(self.name, self._check, title, score, detail))

    # shared policy checks -------------------------------------------------------------
    def resource_policy(self, doc: Any, where: str) -> None:
        """Who a resource policy lets in: anyone, unknown accounts, other accounts' roots."""
        for stmt in statements(doc):
            if stmt.get("Effect") != "Allow":
                continue
            for principal in principal_accounts(stmt.get("Principal")):
                if principal == "*":
                    if not stmt.get("Condition"):
                        self.add(f"{where} lets anyone in (Principal *)", 10, where=where)
                    continue
                account, root = account_of(principal)
                if account == self.ctx.account_id:
                    continue
                if account in self.ctx.friendly_accounts:
                    if root:
                        self.add(
                            f"{where} trusts the whole of account {account} (root)",
                            6,
                            where=where,
                            account=account,
                        )
                    continue
                self.add(
                    f"{where} lets unknown account {account} in",
                    10,
                    where=where,
                    account=account,
                )

    def permissions(self, doc: Any, where: str) -> None:
        """What an identity policy grants: admin-equivalent or wildcards on sensitive services."""
        for stmt in statements(doc):
            if stmt.get("Effect") != "Allow":
                continue
            actions = [str(a).lower() for a in as_list(stmt.get("Action"))]
            resources = as_list(stmt.get("Resource"))
            if "*" in actions and "*" in resources:
                self.add(f"{where} is admin-equivalent (* on *)", 10, where=where)
                continue
            for action in actions:
                service, _, verb = action.partition(":")
                if verb == "*" and service in SENSITIVE_SERVICES:
                    self.add(
                        f"{where} allows every {service} action ({action})",
                        5,
                        where=where,
                        action=action,
                    )


class IAMRoleAuditor(Auditor):
    name = "iam_role"
    watchers = ("iam_role",)

    def check_trust(self, config: dict[str, Any]) -> None:
        self.resource_policy(config.get("trust_policy"), "trust policy")

    def check_inline(self, config: dict[str, Any]) -> None:
        for pname, doc in sorted(config.get("inline_policies", {}).items()):
            self.permissions(doc, f"inline policy {pname}")

    def check_aws_admin(self, config: dict[str, Any]) -> None:
        if "arn:aws:iam::aws:policy/AdministratorAccess" in config.get("managed_policies", []):
            self.add("AdministratorAccess is attached", 10, where="managed AdministratorAccess")


class IAMUserAuditor(Auditor):
    name = "iam_user"
    watchers = ("iam_user",)

    def check_inline(self, config: dict[str, Any]) -> None:
        for pname, doc in sorted(config.get("inline_policies", {}).items()):
            self.permissions(doc, f"inline policy {pname}")

    def check_access_keys(self, config: dict[str, Any]) -> None:
        limit = self.ctx.now - timedelta(days=STALE_KEY_DAYS)
        for key in config.get("access_keys", []):
            created = datetime.fromisoformat(key["created"])
            if key.get("status") == "Active" and created < limit:
                self.add(
                    f"active access key {key['id']} older than {STALE_KEY_DAYS} days",
                    5,
                    key=key["id"],
                )


class IAMGroupAuditor(Auditor):
    name = "iam_group"
    watchers = ("iam_group",)

    def check_inline(self, config: dict[str, Any]) -> None:
        for pname, doc in sorted(config.get("inline_policies", {}).items()):
            self.permissions(doc, f"inline policy {pname}")


class ManagedPolicyAuditor(Auditor):
    name = "iam_policy"
    watchers = ("iam_policy",)

    def check_document(self, config: dict[str, Any]) -> None:
        self.permissions(config.get("document"), "default version")


class S3BucketAuditor(Auditor):
    name = "s3_bucket"
    watchers = ("s3_bucket",)

    def check_policy(self, config: dict[str, Any]) -> None:
        self.resource_policy(config.get("policy"), "bucket policy")

    def check_acl(self, config: dict[str, Any]) -> None:
        for grant in config.get("grants", []):
            if grant.get("grantee") in PUBLIC_GRANTEES:
                self.add(
                    f"ACL grants {grant['permission']} to {grant['grantee'].rsplit('/', 1)[-1]}",
                    10,
                    grantee=grant["grantee"],
                    permission=grant["permission"],
                )

    def check_encryption(self, config: dict[str, Any]) -> None:
        if not config.get("encryption"):
            self.add("bucket has no default encryption", 3)

    def check_public_access_block(self, config: dict[str, Any]) -> None:
        block = config.get("public_access_block") or {}
        if not all(block.get(k) for k in ("BlockPublicAcls", "BlockPublicPolicy")):
            self.add("public access is not blocked", 2)


class SecurityGroupAuditor(Auditor):
    name = "ec2_security_group"
    watchers = ("ec2_security_group",)

    def check_ingress(self, config: dict[str, Any]) -> None:
        for rule in config.get("ingress", []):
            ports = _ports(rule)
            for cidr in rule.get("cidrs", []) + rule.get("cidrs6", []):
                try:
                    net = ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    continue
                if any(_within(net, allowed) for allowed in self.ctx.allowed_networks):
                    continue
                if net.prefixlen == 0:
                    self.add(
                        f"ingress {ports} open to the internet ({cidr})", 10, cidr=cidr, ports=ports
                    )
                elif net.is_global:
                    self.add(
                        f"ingress {ports} from unknown network {cidr}", 5, cidr=cidr, ports=ports
                    )


class LoadBalancerAuditor(Auditor):
    name = "elbv2_load_balancer"
    watchers = ("elbv2_load_balancer",)

    def check_listeners(self, config: dict[str, Any]) -> None:
        public = config.get("scheme") == "internet-facing"
        for li in config.get("listeners", []):
            if public and li.get("protocol") == "HTTP":
                self.add(f"internet-facing HTTP listener on port {li['port']}", 3, port=li["port"])
            if li.get("ssl_policy") in OLD_TLS_POLICIES:
                self.add(f"listener {li['port']} allows old TLS", 5, port=li["port"])


class KMSKeyAuditor(Auditor):
    name = "kms_key"
    watchers = ("kms_key",)

    def check_policy(self, config: dict[str, Any]) -> None:
        self.resource_policy(config.get("policy"), "key policy")

    def check_rotation(self, config: dict[str, Any]) -> None:
        if config.get("spec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT" and not config.get(
            "rotation"
        ):
            self.add("key rotation is off", 1)


class QueueTopicAuditor(Auditor):
    name = "queue_topic"
    watchers = ("sqs_queue", "sns_topic")

    def check_policy(self, config: dict[str, Any]) -> None:
        self.resource_policy(config.get("policy"), "access policy")


class LambdaAuditor(Auditor):
    name = "lambda_function"
    watchers = ("lambda_function",)

    def check_policy(self, config: dict[str, Any]) -> None:
        self.resource_policy(config.get("policy"), "function policy")

    def check_runtime(self, config: dict[str, Any]) -> None:
        if config.get("runtime") in DEPRECATED_RUNTIMES:
            self.add(f"deprecated runtime {config['runtime']}", 3, runtime=config["runtime"])


class GitRepositoryAuditor(Auditor):
    name = "git_repository"
    watchers = ("git_repository",)

    def check_secrets(self, config: dict[str, Any]) -> None:
        for found in config.get("secret_files", []):
            self.add(f"{found['path']} looks like a secret ({found['kind']})", 10, **found)

    def check_protection(self, config: dict[str, Any]) -> None:
        if config.get("branch_protection") is False:
            self.add(f"default branch {config.get('default_branch')} is not protected", 5)

    def check_force_push(self, config: dict[str, Any]) -> None:
        rules = config.get("branch_protection")
        if isinstance(rules, dict) and rules.get("force_pushes"):
            self.add(
                f"force pushes are allowed on the protected branch {config.get('default_branch')}",
                3,
            )


def _ports(rule: dict[str, Any]) -> str:
    if rule.get("protocol") in ("-1", None):
        return "all ports"
    low, high = rule.get("from"), rule.get("to")
    return f"{rule['protocol']}/{low}" if low == high else f"{rule['protocol']}/{low}-{high}"


def _within(net: Any, allowed: Any) -> bool:
    return bool(net.version == allowed.version and net.subnet_of(allowed))


AUDITORS: tuple[Auditor, ...] = (
    IAMRoleAuditor(),
    IAMUserAuditor(),
    IAMGroupAuditor(),
    ManagedPolicyAuditor(),
    S3BucketAuditor(),
    SecurityGroupAuditor(),
    LoadBalancerAuditor(),
    KMSKeyAuditor(),
    QueueTopicAuditor(),
    LambdaAuditor(),
    GitRepositoryAuditor(),
)


def audit_item(watcher: str, config: dict[str, Any], ctx: Context) -> list[Finding]:
    """Every finding of every auditor that applies to this kind of item (deduplicated)."""
    found: dict[str, Finding] = {}
    for auditor in AUDITORS:
        if watcher in auditor.watchers:
            for f in type(auditor)().audit(config, ctx):  # a fresh one: checks keep state
                found.setdefault(f.key, f)
    return list(found.values())


def networks(cidrs: list[str]) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
