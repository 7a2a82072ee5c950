"""Least privilege (Repokid): what a role has not used, and rewriting its inline AND
customer-managed policies to what it uses, with every version kept for rollback.

- `compute` is pure: policies + usage + rules -> new policies and what is repoable.
  A wildcard is narrowed to the actions used that match it; an action is removed when
  CloudTrail shows no use in the window and the Access Advisor does not vouch for its
  service; Deny, NotAction and NOREPO statements are kept as they are.
- A managed policy is rewritten (a new default version) only when this role is its one
  attachment; a shared one is left alone and reported. A managed policy the role uses
  nothing of is detached from the role; when no other principal has it attached, it is
  proposed for deletion (listed, never deleted: the policy and its versions stay in AWS,
  so a rollback re-attaches it).
- Applying checks AWS's size limits first; if AWS refuses a document anyway, what was
  already changed is put back, so the role is left as it was, and the reason is kept.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from popcorn.db import utcnow
from popcorn.security.auditors import as_list, statements
from popcorn.security.cloud import Clients, CloudFailed

INLINE_LIMIT = 10_240  # characters, all inline policies of a role together (AWS quota)
MANAGED_LIMIT = 6_144  # characters per managed policy version
AWS_MANAGED = "arn:aws:iam::aws:policy/"


@dataclass
class RolePolicies:
    """What a role holds now: inline documents by name, managed ones by ARN."""

    name: str
    arn: str
    created: datetime | None
    tags: dict[str, str]
    inline: dict[str, Any]
    managed: dict[str, Any]
    shared: list[str] = field(default_factory=list)  # managed ARNs attached elsewhere too

    def documents(self) -> dict[str, Any]:
        return {"inline": self.inline, "managed": self.managed}


@dataclass
class Plan:
    skipped: str = ""
    inline: dict[str, Any] = field(default_factory=dict)
    managed: dict[str, Any] = field(default_factory=dict)
    repoable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    detach: list[str] = field(default_factory=list)  # managed ARNs the role no longer needs
    propose_delete: list[str] = field(default_factory=list)  # of those, attached nowhere else

    def documents(self) -> dict[str, Any]:
        return {"inline": self.inline, "managed": self.managed}


def read_role(clients: Clients, name: str) -> RolePolicies:
    iam = clients("iam")
    role = clients.call(lambda: iam.get_role(RoleName=name))["Role"]
    inline = {}
    for pname in clients.pages("iam", "list_role_policies", "PolicyNames", RoleName=name):
        got = clients.call(partial(iam.get_role_policy, RoleName=name, PolicyName=pname))
        inline[pname] = _doc(got["PolicyDocument"])
    managed, shared = {}, []
    for att in clients.pages(
        "iam", "list_attached_role_policies", "AttachedPolicies", RoleName=name
    ):
        arn = att["PolicyArn"]
        if arn.startswith(AWS_MANAGED):
            continue
        policy = clients.call(partial(iam.get_policy, PolicyArn=arn))["Policy"]
        version = clients.call(
            partial(iam.get_policy_version, PolicyArn=arn, VersionId=policy["DefaultVersionId"])
        )
        managed[arn] = _doc(version["PolicyVersion"]["Document"])
        if policy.get("AttachmentCount", 1) > 1:
            shared.append(arn)
    tags = clients.call(lambda: iam.list_role_tags(RoleName=name)).get("Tags", [])
    return RolePolicies(
        name=name,
        arn=role["Arn"],
        created=role.get("CreateDate"),
        tags={t["Key"]: t["Value"] for t in tags},
        inline=inline,
        managed=managed,
        shared=shared,
    )


def _doc(raw: Any) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def skip_reason(role: RolePolicies, rules: Any, now: datetime) -> str:
    """Why a role is not to be repoed (filters), or ''."""
    if role.name in rules.blocklist:
        return "role is on the blocklist"
    for glob in rules.exclude_globs:
        if fnmatch.fnmatchcase(role.name, glob):
            return f"role matches the excluded glob {glob!r}"
    if rules.opt_out_tag and rules.opt_out_tag in role.tags:
        return f"role has the opt-out tag {rules.opt_out_tag!r}"
    if role.created and role.created > now - timedelta(days=rules.min_age_days):
        return f"role is younger than {rules.min_age_days} days"
    return ""


def compute(
    role: RolePolicies,
    *,
    action_usage: dict[str, str],
    service_usage: dict[str, str | None],
    rules: Any,
    now: datetime | None = None,
) -> Plan:
    """The policies the role should have, from its usage and the rules."""
    now = now or utcnow()
    reason = skip_reason(role, rules, now)
    if reason:
        return Plan(skipped=reason, inline=role.inline, managed=role.managed)
    if not action_usage and not service_usage:
        return Plan(skipped="no usage data for this role", inline=role.inline, managed=role.managed)
    cutoff = (now - timedelta(days=rules.unused_days)).isoformat()
    used = sorted(a for a, last in action_usage.items() if last >= cutoff)
    traced = {a.split(":", 1)[0] for a in action_usage}
    vouched = {
        svc for svc, last in service_usage.items() if last and last >= cutoff and svc not in traced
    }
    removed: set[str] = set()
    plan = Plan()
    for name, doc in role.inline.items():
        new = _rewrite(doc, used, vouched, removed)
        if new is not None:
            plan.inline[name] = new
    for arn, doc in role.managed.items():
        new = _rewrite(doc, used, vouched, set() if arn in role.shared else removed)
        if new is None:
            plan.detach.append(arn)
            if arn in role.shared:
                plan.notes.append(f"{arn} is not used by this role: detached (others keep it)")
            else:
                plan.propose_delete.append(arn)
                plan.notes.append(
                    f"{arn} would be empty: detached, and proposed for deletion "
                    "(attached to nothing else)"
                )
            removed.update(_allowed(doc))
        elif arn in role.shared:
            plan.managed[arn] = doc
            plan.notes.append(f"{arn} is attached to other principals too: kept as it is")
        else:
            plan.managed[arn] = new
    plan.repoable = sorted(removed)
    return plan


def _allowed(doc: Any) -> set[str]:
    """The actions a document's removable Allow statements grant (lower case)."""
    return {
        str(a).lower()
        for stmt in statements(doc)
        if stmt.get("Effect") == "Allow" and "Action" in stmt
        for a in as_list(stmt["Action"])
    }


def _rewrite(doc: Any, used: list[str], vouched: set[str], removed: set[str]) -> Any:
    """One document rewritten (None when nothing is left in it)."""
    kept_statements = []
    for stmt in statements(doc):
        if (
            "NOREPO" in str(stmt.get("Sid", "")).upper()
            or stmt.get("Effect") != "Allow"
            or "Action" not in stmt
        ):
            kept_statements.append(stmt)
            continue
        actions: list[str] = []
        for raw in as_list(stmt["Action"]):
            pattern = str(raw).lower()
            service = pattern.split(":", 1)[0]
            if service in vouched or (pattern == "*" and vouched):
                actions.append(str(raw))
                continue
            if "*" in pattern or "?" in pattern:
                matches = [u for u in used if fnmatch.fnmatchcase(u, pattern)]
                if matches != [pattern]:
                    removed.add(pattern)
                actions.extend(m for m in matches if m not in actions)
            elif pattern in used:
                actions.append(str(raw))
            else:
                removed.add(pattern)
        if actions:
            kept_statements.append({**stmt, "Action": actions if len(actions) > 1 else actions[0]})
    if not kept_statements:
        return None
    return {**doc, "Statement": kept_statements}


def policy_diff(before: dict[str, Any], after: dict[str, Any], name: str) -> str:
    def lines(docs: dict[str, Any]) -> list[str]:
        return json.dumps(docs, indent=2, sort_keys=True).splitlines(keepends=True)

    return "".join(
        difflib.unified_diff(
            lines(before), lines(after), fromfile=f"{name} (now)", tofile=f"{name} (repoed)"
        )
    )


def size_problems(docs: dict[str, Any]) -> list[str]:
    """AWS's limits, checked before a call (whitespace does not count, as in AWS)."""
    problems = []
    inline = sum(len(json.dumps(d, separators=(",", ":"))) for d in docs["inline"].values())
    if inline > INLINE_LIMIT:
        problems.append(f"inline policies total {inline} characters (AWS allows {INLINE_LIMIT})")
    for arn, doc in docs["managed"].items():
        size = len(json.dumps(doc, separators=(",", ":")))
        if size > MANAGED_LIMIT:
            problems.append(f"{arn} is {size} characters (AWS allows {MANAGED_LIMIT})")
    return problems


def apply(clients: Clients, role: RolePolicies, target: dict[str, Any]) -> list[str]:
    """Make the role's policies `target`; on a refusal, restore what was changed and raise.
    Returns what was changed."""
    iam = clients("iam")
    undo: list[Any] = []
    done: list[str] = []
    try:
        for name, doc in target["inline"].items():
            if role.inline.get(name) == doc:
                continue
            body = json.dumps(doc)
            clients.call(
                partial(
                    iam.put_role_policy, RoleName=role.name, PolicyName=name, PolicyDocument=body
                )
            )
            old = role.inline.get(name)
            undo.append(("inline", name, old))
            done.append(f"inline {name} rewritten")
        for name in set(role.inline) - set(target["inline"]):
            clients.call(partial(iam.delete_role_policy, RoleName=role.name, PolicyName=name))
            undo.append(("inline", name, role.inline[name]))
            done.append(f"inline {name} deleted")
        for arn, doc in target["managed"].items():
            if arn not in role.managed:
                clients.call(partial(iam.attach_role_policy, RoleName=role.name, PolicyArn=arn))
                undo.append(("attach", arn, None))
                done.append(f"managed {arn} attached")
                if _default_document(clients, arn) != doc:
                    _new_default_version(clients, arn, doc)
                    done.append(f"managed {arn} new default version")
                continue
            if role.managed[arn] == doc:
                continue
            _new_default_version(clients, arn, doc)
            undo.append(("managed", arn, role.managed[arn]))
            done.append(f"managed {arn} new default version")
        for arn in sorted(set(role.managed) - set(target["managed"])):
            clients.call(partial(iam.detach_role_policy, RoleName=role.name, PolicyArn=arn))
            undo.append(("detach", arn, None))
            done.append(f"managed {arn} detached")
    except CloudFailed:
        for kind, name, old in reversed(undo):
            try:
                if kind == "inline" and old is None:
                    clients.call(
                        partial(iam.delete_role_policy, RoleName=role.name, PolicyName=name)
                    )
                elif kind == "inline":
                    clients.call(
                        partial(
                            iam.put_role_policy,
                            RoleName=role.name,
                            PolicyName=name,
                            PolicyDocument=json.dumps(old),
                        )
                    )
                elif kind == "attach":
                    clients.call(
                        partial(iam.detach_role_policy, RoleName=role.name, PolicyArn=name)
                    )
                elif kind == "detach":
                    clients.call(
                        partial(iam.attach_role_policy, RoleName=role.name, PolicyArn=name)
                    )
                else:
                    _new_default_version(clients, name, old)
            except CloudFailed:
                continue
        raise
    return done


def _default_document(clients: Clients, arn: str) -> Any:
    iam = clients("iam")
    policy = clients.call(partial(iam.get_policy, PolicyArn=arn))["Policy"]
    version = clients.call(
        partial(iam.get_policy_version, PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    )
    return _doc(version["PolicyVersion"]["Document"])


def _new_default_version(clients: Clients, arn: str, doc: Any) -> None:
    """A new default version; the oldest non-default one goes first when all 5 are used
    (Popcorn keeps every document itself)."""
    iam = clients("iam")
    versions = clients.call(lambda: iam.list_policy_versions(PolicyArn=arn))["Versions"]
    if len(versions) >= 5:
        oldest = sorted(
            (v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"]
        )[0]
        clients.call(
            lambda: iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
        )
    clients.call(
        lambda: iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=json.dumps(doc), SetAsDefault=True
        )
    )
