"""Security tables: watched accounts, the state of each (account, watcher), items with their
revisions, scored issues, and per role the usage, repo state and every policy version kept.

Revisions are stored only when an item's normalised configuration changes, so an item's
history is its list of real changes; a deleted item keeps its history and gets a last
revision marked inactive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

ACCOUNT_KINDS = ("aws", "git")
ISSUE_STATUSES = ("open", "fixed", "justified")
REPO_STATES = ("never", "scheduled", "repoed", "rolled_back", "failed", "canceled")


class SecurityAccount(Base):
    """An AWS account (profile, sealed keys or a role to assume; regions) or a set of Git
    repositories, with what counts as friendly for its auditors."""

    __tablename__ = "security_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default="aws")
    aws_account_id: Mapped[str] = mapped_column(String(20), default="")
    profile: Mapped[str] = mapped_column(String(100), default="")
    access_key_id: Mapped[str] = mapped_column(String(128), default="")
    secret_sealed: Mapped[str] = mapped_column(Text, default="")
    role_arn: Mapped[str] = mapped_column(String(300), default="")
    regions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    endpoint_url: Mapped[str] = mapped_column(String(500), default="")
    repositories: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # A Git account may name its host's API (github|gitlab): the API URL is kept in
    # endpoint_url and the token sealed in secret_sealed.
    git_host: Mapped[str] = mapped_column(String(10), default="", server_default="")
    watchers: Mapped[list[str]] = mapped_column(JSONType, default=list)
    interval_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    friendly_accounts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    allowed_networks: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(20), default="new")
    status_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SecurityWatcherState(Base):
    """How the last poll of one watcher in one account went (failures reported here)."""

    __tablename__ = "security_watcher_states"
    __table_args__ = (UniqueConstraint("account_id", "watcher"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("security_accounts.id", ondelete="CASCADE"), index=True
    )
    watcher: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="never")
    error: Mapped[str] = mapped_column(Text, default="")
    retries: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SecurityItem(Base):
    """One watched resource; its score is the sum of its open issues."""

    __tablename__ = "security_items"
    __table_args__ = (UniqueConstraint("account_id", "watcher", "region", "identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("security_accounts.id", ondelete="CASCADE"), index=True
    )
    watcher: Mapped[str] = mapped_column(String(40), index=True)
    region: Mapped[str] = mapped_column(String(40), default="global")
    identifier: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    score: Mapped[int] = mapped_column(Integer, default=0)
    revisions: Mapped[int] = mapped_column(Integer, default=0)
    digest: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SecurityRevision(Base):
    """One stored configuration of an item (only when it changed)."""

    __tablename__ = "security_revisions"
    __table_args__ = (UniqueConstraint("item_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("security_items.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SecurityIssue(Base):
    """One finding of one auditor check on one item, kept across revisions: open, fixed
    (with the revision that fixed it) or justified (accepted by someone, maybe until a date)."""

    __tablename__ = "security_issues"
    __table_args__ = (UniqueConstraint("item_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("security_items.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    auditor: Mapped[str] = mapped_column(String(60))
    check: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    score: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    regressions: Mapped[int] = mapped_column(Integer, default=0)
    opened_revision: Mapped[int] = mapped_column(Integer, default=0)
    fixed_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fixed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    justified_by: Mapped[str] = mapped_column(String(200), default="")
    justification: Mapped[str] = mapped_column(Text, default="")
    justified_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SecurityRole(Base):
    """Least-privilege state of one IAM role: its usage (action and service level), what is
    repoable, and where its repo stands (scheduled for when, done, rolled back, failed why)."""

    __tablename__ = "security_roles"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("security_accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    arn: Mapped[str] = mapped_column(String(400))
    action_usage: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    service_usage: Mapped[dict[str, str | None]] = mapped_column(JSONType, default=dict)
    repoable: Mapped[list[str]] = mapped_column(JSONType, default=list)
    state: Mapped[str] = mapped_column(String(20), default="never")
    reason: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    repo_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    repoed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    versions: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SecurityPolicyVersion(Base):
    """Every policy set a role has had in Popcorn's hands: inline documents by name and
    customer-managed documents by ARN; rollback restores any of them."""

    __tablename__ = "security_policy_versions"
    __table_args__ = (UniqueConstraint("role_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role_id: Mapped[int] = mapped_column(
        ForeignKey("security_roles.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20))  # observed | repo | rollback
    inline: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    managed: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
