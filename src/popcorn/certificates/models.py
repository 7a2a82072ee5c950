"""Tables of the certificates domain: authorities, certificates, where they are served and deployed.

Private keys are stored only as key store envelopes (see `keystore.py`), bound
to the certificate's fingerprint so an envelope cannot be moved to another row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

STATUSES = ("pending", "active", "expiring", "expired", "revoked", "replaced", "failed")
"""As read; expiring and expired are derived from `not_after`, never stored."""


class Authority(Base):
    """A CA Popcorn signs with (root, intermediate, imported) or an external issuer plugin."""

    __tablename__ = "certificates_authorities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    plugin: Mapped[str] = mapped_column(String(80), default="popcorn-ca")
    purpose: Mapped[str] = mapped_column(String(20), default="general", server_default="general")
    """`general`, or `agents`: Bolt agents' mutual TLS, issued only by the platform (admin)."""
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates_authorities.id"), nullable=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    certificate_pem: Mapped[str] = mapped_column(Text, default="")
    chain_pem: Mapped[str] = mapped_column(Text, default="")
    private_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    key_type: Mapped[str] = mapped_column(String(40), default="")
    subject: Mapped[str] = mapped_column(String(1000), default="")
    serial_hex: Mapped[str] = mapped_column(String(64), default="")
    sha256_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # policy
    max_validity_days: Mapped[int] = mapped_column(Integer, default=397)
    allowed_dns_suffixes: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    allowed_ip_networks: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    public_base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    rotate_before_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # revocation publishing
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    crl_next_update: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def has_private_key(self) -> bool:
        return self.private_key_encrypted is not None


class Certificate(Base):
    """One certificate in the inventory, whether Popcorn issued, imported or discovered it.

    `status` stores pending/active/revoked/replaced/failed; expiring and expired
    are derived from `not_after` when read, so they are never stale.
    """

    __tablename__ = "certificates_certificates"
    __table_args__ = (
        Index("ix_certificates_certificates_authority_serial", "authority_id", "serial_hex"),
        Index("ix_certificates_certificates_status_not_after", "status", "not_after"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    authority_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates_authorities.id"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="active")
    source: Mapped[str] = mapped_column(String(20), default="issued")
    owner: Mapped[str] = mapped_column(String(200), default="", index=True)
    team: Mapped[str] = mapped_column(String(200), default="", index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    common_name: Mapped[str] = mapped_column(String(255), default="")
    domains: Mapped[list[str]] = mapped_column(JSONType, default=list)
    domains_text: Mapped[str] = mapped_column(Text, default="")
    profile: Mapped[str | None] = mapped_column(String(20), nullable=True)
    key_type: Mapped[str] = mapped_column(String(40), default="")
    key_size: Mapped[int] = mapped_column(Integer, default=0)
    serial_hex: Mapped[str] = mapped_column(String(64), default="")
    sha256_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    sha1_fingerprint: Mapped[str | None] = mapped_column(String(40), nullable=True)
    subject: Mapped[str] = mapped_column(String(1000), default="")
    issuer: Mapped[str] = mapped_column(String(1000), default="")
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    certificate_pem: Mapped[str] = mapped_column(Text, default="")
    chain_pem: Mapped[str] = mapped_column(Text, default="")
    private_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    # what rotation repeats
    validity_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requested_key_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    rotate_before_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replaced_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates_certificates.id", ondelete="SET NULL"), nullable=True
    )
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def has_private_key(self) -> bool:
        return self.private_key_encrypted is not None


class Destination(Base):
    """Where certificates are deployed: a directory, S3, IAM, ACM or a PKCS#12 file."""

    __tablename__ = "certificates_destinations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CertificateDestination(Base):
    """A certificate is deployed to these destinations when issued and on every rotation."""

    __tablename__ = "certificates_certificate_destinations"
    __table_args__ = (UniqueConstraint("certificate_id", "destination_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("certificates_certificates.id", ondelete="CASCADE")
    )
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("certificates_destinations.id", ondelete="CASCADE"), index=True
    )


class Deployment(Base):
    """One attempt to deploy a certificate to a destination, and its outcome."""

    __tablename__ = "certificates_deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("certificates_certificates.id", ondelete="CASCADE"), index=True
    )
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("certificates_destinations.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20))
    location: Mapped[str] = mapped_column(String(1000), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Source(Base):
    """A discovery source: endpoints to sweep for the certificates they serve."""

    __tablename__ = "certificates_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40), default="hosts")
    endpoints: Mapped[list[str]] = mapped_column(JSONType, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    owner: Mapped[str] = mapped_column(String(200), default="")
    team: Mapped[str] = mapped_column(String(200), default="")
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Endpoint(Base):
    """A TLS endpoint found by discovery, and the certificate it served last."""

    __tablename__ = "certificates_endpoints"
    __table_args__ = (UniqueConstraint("host", "port", "server_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    server_name: Mapped[str] = mapped_column(String(255), default="")
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates_sources.id", ondelete="SET NULL"), nullable=True
    )
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates_certificates.id", ondelete="SET NULL"), nullable=True, index=True
    )
    tls_version: Mapped[str | None] = mapped_column(String(20), nullable=True)
    cipher: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Notification(Base):
    """An expiry warning sent once per certificate and interval (the unique key stops floods)."""

    __tablename__ = "certificates_notifications"
    __table_args__ = (UniqueConstraint("certificate_id", "kind", "interval_days"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("certificates_certificates.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(20))
    interval_days: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
