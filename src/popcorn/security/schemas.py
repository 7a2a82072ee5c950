"""Security API schemas: accounts, watcher states, items and revisions, issues, roles."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from popcorn.schemas import Page, ReadSchema, Schema
from popcorn.security.watchers import AWS_WATCHERS


class AccountCreate(Schema):
    """An AWS account (profile, keys or role ARN; regions) or a Git account (repositories)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    kind: Literal["aws", "git"] = "aws"
    aws_account_id: str = Field(default="", pattern=r"^(\d{12})?$")
    profile: str = Field(default="", max_length=100)
    access_key_id: str = Field(default="", max_length=128)
    secret_access_key: str = Field(default="", max_length=256, repr=False)
    role_arn: str = Field(
        default="", max_length=300, pattern=r"^(arn:aws[\w-]*:iam::\d{12}:role/.+)?$"
    )
    regions: list[str] = Field(default_factory=lambda: ["us-east-1"], max_length=40)
    endpoint_url: str = Field(default="", max_length=500)
    repositories: list[str] = Field(default_factory=list, max_length=500)
    git_host: Literal["", "github", "gitlab"] = ""
    git_api_url: str = Field(default="", max_length=500)
    git_token: str = Field(default="", max_length=512, repr=False)
    watchers: list[str] | None = Field(default=None, max_length=20)
    interval_seconds: int = Field(default=3600, ge=60, le=7 * 86400)
    friendly_accounts: list[str] = Field(default_factory=list, max_length=1000)
    allowed_networks: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> AccountCreate:
        if self.kind == "git":
            if not self.repositories:
                raise ValueError("a git account needs at least one repository")
            if bool(self.git_host) != bool(self.git_api_url):
                raise ValueError("give both git_host and git_api_url, or neither")
            if self.git_token and not self.git_host:
                raise ValueError("a git_token needs git_host and git_api_url")
            if self.access_key_id or self.secret_access_key or self.endpoint_url:
                raise ValueError("AWS keys and endpoint_url belong to an AWS account")
            return self
        if self.repositories or self.git_host or self.git_api_url or self.git_token:
            raise ValueError(
                "repositories and git_host/git_api_url/git_token belong to a git account"
            )
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if self.profile and self.access_key_id:
            raise ValueError("give a profile or keys, not both")
        for region in self.regions:
            if not region.replace("-", "").isalnum() or len(region) > 30:
                raise ValueError(f"invalid region {region!r}")
        for watcher in self.watchers or []:
            if watcher not in AWS_WATCHERS:
                raise ValueError(f"unknown watcher {watcher!r} (one of {', '.join(AWS_WATCHERS)})")
        for acct in self.friendly_accounts:
            if not (acct.isascii() and acct.isdigit() and len(acct) == 12):
                raise ValueError(f"friendly account {acct!r} is not a 12-digit account id")
        return self


class AccountUpdate(Schema):
    regions: list[str] | None = Field(default=None, max_length=40)
    interval_seconds: int | None = Field(default=None, ge=60, le=7 * 86400)
    friendly_accounts: list[str] | None = Field(default=None, max_length=1000)
    allowed_networks: list[str] | None = Field(default=None, max_length=1000)


class AccountRead(ReadSchema):
    id: int
    name: str
    kind: str
    aws_account_id: str
    profile: str
    access_key_id: str
    role_arn: str
    regions: list[str]
    endpoint_url: str
    repositories: list[str]
    git_host: str
    watchers: list[str]
    interval_seconds: int
    friendly_accounts: list[str]
    allowed_networks: list[str]
    status: str
    status_reason: str
    created_at: datetime


class WatcherStateRead(ReadSchema):
    account_id: int
    watcher: str
    status: str
    error: str
    retries: int
    items: int
    changed: int
    duration_s: float
    last_run_at: datetime | None
    last_ok_at: datetime | None


class PollRequest(Schema):
    watchers: list[str] | None = Field(default=None, max_length=20)
    background: bool = False


class ItemRead(ReadSchema):
    id: int
    account_id: int
    watcher: str
    region: str
    identifier: str
    name: str
    active: bool
    score: int
    revisions: int
    created_at: datetime
    changed_at: datetime


class RevisionRead(ReadSchema):
    id: int
    item_id: int
    number: int
    active: bool
    config: dict[str, Any]
    created_at: datetime


class DiffRead(ReadSchema):
    item_id: int
    before: int
    after: int
    changes: list[dict[str, Any]]
    text: str


class IssueRead(ReadSchema):
    id: int
    item_id: int
    account_id: int
    auditor: str
    check: str
    title: str
    score: int
    detail: dict[str, Any]
    status: str
    regressions: int
    opened_revision: int
    fixed_revision: int | None
    opened_at: datetime
    fixed_at: datetime | None
    justified_by: str
    justification: str
    justified_until: datetime | None


class JustifyRequest(Schema):
    reason: str = Field(min_length=3, max_length=2000)
    until: datetime | None = None


class RoleRead(ReadSchema):
    id: int
    account_id: int
    name: str
    arn: str
    action_usage: dict[str, str]
    service_usage: dict[str, str | None]
    repoable: list[str]
    state: str
    reason: str
    plan: dict[str, Any]
    repo_after: datetime | None
    repoed_at: datetime | None
    versions: int
    updated_at: datetime


class PolicyVersionRead(ReadSchema):
    id: int
    role_id: int
    number: int
    source: str
    inline: dict[str, Any]
    managed: dict[str, Any]
    created_by: str
    created_at: datetime


class UsageRequest(Schema):
    """Where CloudTrail files are: an S3 bucket (and prefix) of the account, or a local dir."""

    bucket: str = Field(default="", max_length=63)
    prefix: str = Field(default="", max_length=500)
    directory: str = Field(default="", max_length=1000)
    access_advisor: bool = False

    @model_validator(mode="after")
    def _one(self) -> UsageRequest:
        if bool(self.bucket) == bool(self.directory):
            raise ValueError("give a bucket or a directory")
        return self


class RepoRules(Schema):
    unused_days: int = Field(default=90, ge=1, le=3650)
    min_age_days: int = Field(default=90, ge=0, le=3650)
    blocklist: list[str] = Field(default_factory=list, max_length=1000)
    exclude_globs: list[str] = Field(default_factory=list, max_length=100)
    opt_out_tag: str = Field(default="popcorn-norepo", max_length=128)


class RepoRequest(RepoRules):
    wait_hours: float = Field(default=24.0, ge=0, le=24 * 90)


class RollbackRequest(Schema):
    version: int = Field(ge=1)


class ReportItem(ReadSchema):
    id: int
    name: str
    watcher: str
    region: str
    score: int
    issues: list[dict[str, Any]]


class ReportRead(ReadSchema):
    account: str
    generated_at: str
    status: str
    total_score: int
    issues: dict[str, int]
    items: list[ReportItem]


class UsageRead(ReadSchema):
    files: int
    files_skipped: int
    records: int
    skipped: int
    denied: int
    roles: int
    seconds: float
    advisor_roles: int | None = None


class PlanRead(ReadSchema):
    role: str
    skipped: str
    repoable: list[str]
    notes: list[str]
    diff: str
    problems: list[str]
    policies: dict[str, Any]


class ApplyRead(ReadSchema):
    role: str
    state: str
    changed: list[str]
    reason: str = ""
    version: int | None = None
    removed: list[str] = Field(default_factory=list)


AccountPage = Page[AccountRead]
WatcherStatePage = Page[WatcherStateRead]
PolicyVersionPage = Page[PolicyVersionRead]
ItemPage = Page[ItemRead]
RevisionPage = Page[RevisionRead]
IssuePage = Page[IssueRead]
RolePage = Page[RoleRead]
