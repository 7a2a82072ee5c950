"""API and CLI shapes of the certificates domain. Private keys never appear in a Read schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from popcorn.schemas import Page, ReadSchema, Schema

KeyTypeName = Literal["rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"]
ProfileName = Literal["server", "client", "both"]
PurposeName = Literal["general", "agents"]
Ref = int | str
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:@+-]*$"


class _Policy(Schema):
    max_validity_days: int = Field(default=397, ge=1, le=36500)
    allowed_dns_suffixes: list[str] | None = None
    allowed_ip_networks: list[str] | None = None
    public_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=500)
    rotate_before_days: int | None = Field(default=None, ge=1, le=3650)


class AuthorityCreate(_Policy):
    """root/intermediate create a key; imported adopts a PEM CA; external names a plugin."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    kind: Literal["root", "intermediate", "imported", "external"] = "root"
    purpose: PurposeName = Field(
        default="general",
        description="`agents`: issues Bolt agents' mutual-TLS certificates only, through "
        "`POST /certificates/agents` (admin); never through the general issue route.",
    )
    description: str = ""
    common_name: str | None = Field(default=None, max_length=64)
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    key_type: KeyTypeName = "ecdsa-p384"
    validity_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="Default: 3650 for a root; for an intermediate 1825, clipped to its "
        "parent's expiry.",
    )
    path_length: int | None = Field(default=None, ge=0, le=10)
    parent: Ref | None = None
    certificate_pem: str | None = None
    chain_pem: str | None = None
    private_key_pem: str | None = None
    key_password: str | None = None
    plugin: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_fields(self) -> AuthorityCreate:
        if self.kind == "intermediate" and self.parent is None:
            raise ValueError("parent: an intermediate authority needs a parent authority")
        if self.kind != "intermediate" and self.parent is not None:
            raise ValueError("parent: only intermediate authorities have a parent")
        if self.kind == "imported" and not (self.certificate_pem and self.private_key_pem):
            raise ValueError("certificate_pem and private_key_pem: required to import an authority")
        if self.kind == "external" and not self.plugin:
            raise ValueError("plugin: an external authority names its issuer plugin")
        if self.kind != "external" and self.plugin:
            raise ValueError("plugin: only external authorities name a plugin")
        return self


def _refuse_nulls(schema: Schema, fields: tuple[str, ...]) -> None:
    """A field sent as null that cannot be empty is the client's mistake: a 422 naming it."""
    for name in fields:
        if name in schema.model_fields_set and getattr(schema, name) is None:
            raise ValueError(f"{name}: cannot be null (leave it out to keep it)")


class AuthorityUpdate(Schema):
    """Fields left out stay; null clears the optional ones (SAN limits, URL, rotation)."""

    description: str | None = None
    max_validity_days: int | None = Field(default=None, ge=1, le=36500)
    allowed_dns_suffixes: list[str] | None = None
    allowed_ip_networks: list[str] | None = None
    public_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=500)
    rotate_before_days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _not_null(self) -> AuthorityUpdate:
        _refuse_nulls(self, ("description", "max_validity_days"))
        return self


class AuthorityRead(ReadSchema):
    id: int
    name: str
    kind: str
    purpose: str
    plugin: str
    parent_id: int | None
    description: str
    subject: str
    key_type: str
    serial_hex: str
    sha256_fingerprint: str
    not_before: datetime | None
    not_after: datetime | None
    max_validity_days: int
    allowed_dns_suffixes: list[str] | None
    allowed_ip_networks: list[str] | None
    public_base_url: str | None
    rotate_before_days: int | None
    options: dict[str, Any]
    crl_number: int
    crl_next_update: datetime | None
    created_by: str
    created_at: datetime
    has_private_key: bool = False
    crl_url: str | None = None
    ocsp_url: str | None = None
    certificate_pem: str = ""
    chain_pem: str = ""


class CertificateIssue(Schema):
    """Issue under an authority, from a CSR (its key stays with you) or with a generated key."""

    authority: Ref
    common_name: str | None = Field(default=None, max_length=64)
    dns_names: list[str] = Field(default_factory=list, max_length=100)
    ip_addresses: list[str] = Field(default_factory=list, max_length=100)
    profile: ProfileName = "server"
    validity_days: int | None = Field(default=None, ge=1)
    csr_pem: str | None = None
    key_type: KeyTypeName = "ecdsa-p256"
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    state: str | None = None
    locality: str | None = None
    name: str | None = Field(default=None, max_length=255, pattern=NAME_PATTERN)
    owner: str = Field(default="", max_length=200)
    team: str = Field(default="", max_length=200)
    description: str = ""
    rotate_before_days: int | None = Field(default=None, ge=1, le=3650)
    destinations: list[Ref] = Field(default_factory=list)

    @model_validator(mode="after")
    def _subject(self) -> CertificateIssue:
        if self.csr_pem is None and not self.common_name:
            raise ValueError("common_name: required unless a CSR gives the subject")
        return self


class CertificateImport(Schema):
    """An existing certificate (PEM, optionally followed by its chain) and, optionally, its key."""

    certificate_pem: str = Field(min_length=1)
    chain_pem: str | None = None
    private_key_pem: str | None = None
    key_password: str | None = None
    name: str | None = Field(default=None, max_length=255, pattern=NAME_PATTERN)
    owner: str = Field(default="", max_length=200)
    team: str = Field(default="", max_length=200)
    description: str = ""
    rotate_before_days: int | None = Field(default=None, ge=1, le=3650)


class CertificateUpdate(Schema):
    """Fields left out stay; `rotate_before_days` null or 0 falls back to the authority's."""

    owner: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    description: str | None = None
    rotate_before_days: int | None = Field(default=None, ge=0, le=3650)
    destinations: list[Ref] | None = None

    @model_validator(mode="after")
    def _not_null(self) -> CertificateUpdate:
        _refuse_nulls(self, ("owner", "team", "description", "destinations"))
        return self


class Revoke(Schema):
    reason: str = "unspecified"


class Rotate(Schema):
    validity_days: int | None = Field(default=None, ge=1)


class Export(Schema):
    format: Literal["pem", "pkcs12"] = "pem"
    password: str | None = Field(default=None, min_length=1)
    legacy: bool = False

    @model_validator(mode="after")
    def _password(self) -> Export:
        if self.format == "pkcs12" and not self.password:
            raise ValueError("password: required for a PKCS#12 export")
        return self


class EndpointBrief(ReadSchema):
    id: int
    host: str
    port: int
    server_name: str
    last_seen_at: datetime | None


class CertificateRead(ReadSchema):
    id: int
    name: str
    authority_id: int | None
    status: str
    days_left: int | None = None
    source: str
    owner: str
    team: str
    description: str
    common_name: str
    domains: list[str]
    profile: str | None
    key_type: str
    key_size: int
    serial_hex: str
    sha256_fingerprint: str | None
    sha1_fingerprint: str | None
    subject: str
    issuer: str
    not_before: datetime | None
    not_after: datetime | None
    validity_days: int | None
    rotate_before_days: int | None
    replaced_by_id: int | None
    revoked_at: datetime | None
    revocation_reason: str | None
    external_id: str | None
    created_by: str
    created_at: datetime
    has_private_key: bool = False


class CertificateDetail(CertificateRead):
    certificate_pem: str
    chain_pem: str
    endpoints: list[EndpointBrief] = Field(default_factory=list)
    destinations: list[str] = Field(default_factory=list)
    replaces_id: int | None = None


class ExportRead(ReadSchema):
    format: str
    filename: str
    certificate_pem: str | None = None
    chain_pem: str | None = None
    private_key_pem: str | None = None
    pkcs12_base64: str | None = None


class DestinationCreate(Schema):
    """A destination of a registered kind (directory, pkcs12, s3, aws-iam, aws-acm...)."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    kind: str = Field(min_length=1, max_length=40)
    description: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    password: str | None = Field(
        default=None, min_length=1, description="Kinds that take a password only (pkcs12)"
    )

    @model_validator(mode="after")
    def _options(self) -> DestinationCreate:
        # the registry imports the CA engine: only a destination being made needs it
        from popcorn.certificates.destinations import destination_kind

        plugin = destination_kind(self.kind)
        self.options = plugin.options.model_validate(self.options).model_dump(exclude_none=True)
        if plugin.secret != (self.password is not None):
            raise ValueError(
                f"password: required for {self.kind} destinations"
                if plugin.secret
                else f"password: {self.kind} destinations take none"
            )
        return self


class DestinationRead(ReadSchema):
    id: int
    name: str
    kind: str
    description: str
    options: dict[str, Any]
    created_at: datetime


class DeploymentRead(ReadSchema):
    id: int
    certificate_id: int
    destination_id: int
    status: str
    location: str
    details: dict[str, Any]
    error: str
    created_at: datetime


class InventoryScope(Schema):
    """Which inventory devices to sweep (each a value or a list, as the inventory accepts)."""

    site: Ref | list[Ref] | None = None
    region: Ref | list[Ref] | None = None
    role: str | list[str] | None = None
    device: Ref | list[Ref] | None = None
    status: str | list[str] | None = "active"


class SourceCreate(Schema):
    """`hosts`: a list of host:port[/sni]; `inventory`: devices' primary addresses on `ports`."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    kind: Literal["hosts", "inventory"] = "hosts"
    endpoints: list[str] = Field(default_factory=list, max_length=100_000)
    scope: InventoryScope | None = None
    ports: list[int] = Field(default=[443], min_length=1, max_length=20)
    owner: str = ""
    team: str = ""
    timeout: float = Field(default=5.0, gt=0, le=60)
    cron: str | None = Field(default=None, description="Sweep on this schedule, e.g. '0 * * * *'")

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, values: list[str]) -> list[str]:
        return [v.strip() for v in values if v.strip()]

    @field_validator("ports")
    @classmethod
    def _ports(cls, values: list[int]) -> list[int]:
        if any(not 0 < p < 65536 for p in values):
            raise ValueError("each port is between 1 and 65535")
        return values

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceCreate:
        if self.kind == "hosts" and not self.endpoints:
            raise ValueError("endpoints: a hosts source needs at least one host:port")
        if self.kind == "inventory" and self.endpoints:
            raise ValueError("endpoints: an inventory source takes a scope, not endpoints")
        if self.kind == "inventory" and self.scope is None:
            self.scope = InventoryScope()
        return self


class SourceRead(ReadSchema):
    id: int
    name: str
    kind: str
    endpoints: list[str]
    options: dict[str, Any]
    owner: str
    team: str
    last_run_at: datetime | None
    last_summary: dict[str, Any]
    created_at: datetime


class Discover(Schema):
    endpoints: list[str] = Field(default_factory=list, max_length=100_000)
    source: Ref | None = None
    timeout: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one(self) -> Discover:
        if bool(self.endpoints) == (self.source is not None):
            raise ValueError("endpoints or source: give exactly one")
        return self


class EndpointRead(ReadSchema):
    id: int
    host: str
    port: int
    server_name: str
    source_id: int | None
    certificate_id: int | None
    tls_version: str | None
    cipher: str | None
    last_seen_at: datetime | None
    last_checked_at: datetime
    last_error: str


class NotificationRead(ReadSchema):
    id: int
    certificate_id: int
    kind: str
    interval_days: int
    sent_at: datetime


class Scan(Schema):
    intervals: list[int] = Field(default=[30, 15, 7, 1], min_length=1, max_length=20)

    @field_validator("intervals")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 or v > 3650 for v in values):
            raise ValueError("each interval is between 1 and 3650 days")
        return sorted(set(values), reverse=True)


class AgentCertificateIssue(Schema):
    authority: Ref
    agent_name: str = Field(min_length=1, max_length=64)
    dns_names: list[str] = Field(default_factory=list)
    ip_addresses: list[str] = Field(default_factory=list)
    profile: ProfileName = "both"
    validity_days: int | None = Field(default=None, ge=1)


class AgentCertificateRead(ReadSchema):
    certificate_id: int
    certificate_pem: str
    private_key_pem: str
    chain_pem: str
    ca_bundle_pem: str


class CRLRead(ReadSchema):
    crl_number: int
    crl_url: str | None


class IssuerRead(ReadSchema):
    slug: str


class JobQueued(ReadSchema):
    """A job accepted for later: poll `GET /api/v1/jobs/<job_id>` for its result."""

    job_id: int
    task: str
    status: str


class AuthorityPage(Page[AuthorityRead]):
    pass


class CertificatePage(Page[CertificateRead]):
    pass


class DeploymentPage(Page[DeploymentRead]):
    pass


class DestinationPage(Page[DestinationRead]):
    pass


class SourcePage(Page[SourceRead]):
    pass


class EndpointPage(Page[EndpointRead]):
    pass


class NotificationPage(Page[NotificationRead]):
    pass


class IssuerPage(Page[IssuerRead]):
    pass
