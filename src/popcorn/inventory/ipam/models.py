"""Tables for the rest of NetBox's core an Open Connect inventory needs: IPAM, circuits, power.

Names follow NetBox (rir, asn, vrf, prefix, ip_range, ip_address, vlan_group,
vlan, provider, circuit_type, circuit, circuit_termination, power_panel,
power_feed) so a NetBox dump maps onto them field by field. Addresses and
prefixes are stored as normalised text ("10.0.0.1/24", "2001:db8::/32") with
their family, plus sort keys: the address as 32 hex digits, so "which addresses
lie in 10.1.0.0/16" is an indexed range query on SQLite and PostgreSQL alike
for IPv4 and IPv6. Hierarchy, utilisation and free space are then computed with
Python's `ipaddress`.
Circuit terminations and power feeds are cable ends: a `Link` joins them to
device interfaces and power ports, so the existing trace follows them.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.db import Base
from popcorn.inventory.models import Timestamps

# --- IPAM -------------------------------------------------------------------------


class Rir(Timestamps, Base):
    """A regional internet registry (or a private space such as RFC 1918)."""

    __tablename__ = "inventory_rirs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    is_private: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(200), default="")


class Asn(Timestamps, Base):
    __tablename__ = "inventory_asns"

    id: Mapped[int] = mapped_column(primary_key=True)
    asn: Mapped[int] = mapped_column(BigInteger, unique=True)
    rir_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_rirs.id"), nullable=True, index=True
    )
    description: Mapped[str] = mapped_column(String(200), default="")


class Vrf(Timestamps, Base):
    __tablename__ = "inventory_vrfs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    rd: Mapped[str | None] = mapped_column(String(21), unique=True, nullable=True)
    enforce_unique: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(200), default="")


# "0a000000…" for 10.0.0.0: fixed-width hex sorts as the address does.
KEY = String(32)


class Prefix(Timestamps, Base):
    __tablename__ = "inventory_prefixes"
    __table_args__ = (
        Index("ix_inventory_prefixes_vrf_start", "vrf_id", "family", "start_key"),
        Index("ix_inventory_prefixes_prefix", "prefix"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(43))
    family: Mapped[int] = mapped_column(Integer)
    start_key: Mapped[str] = mapped_column(KEY)
    end_key: Mapped[str] = mapped_column(KEY)
    vrf_id: Mapped[int | None] = mapped_column(ForeignKey("inventory_vrfs.id"), nullable=True)
    site_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_sites.id"), nullable=True, index=True
    )
    vlan_id: Mapped[int | None] = mapped_column(ForeignKey("inventory_vlans.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    is_pool: Mapped[bool] = mapped_column(Boolean, default=False)
    mark_utilized: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(200), default="")


class IpRange(Timestamps, Base):
    __tablename__ = "inventory_ip_ranges"

    id: Mapped[int] = mapped_column(primary_key=True)
    start_address: Mapped[str] = mapped_column(String(50))
    end_address: Mapped[str] = mapped_column(String(50))
    family: Mapped[int] = mapped_column(Integer)
    start_key: Mapped[str] = mapped_column(KEY)
    end_key: Mapped[str] = mapped_column(KEY)
    mark_utilized: Mapped[bool] = mapped_column(Boolean, default=False)
    vrf_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_vrfs.id"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="active")
    description: Mapped[str] = mapped_column(String(200), default="")


class IpAddress(Timestamps, Base):
    __tablename__ = "inventory_ip_addresses"
    __table_args__ = (
        Index("ix_inventory_ip_addresses_vrf_host", "vrf_id", "family", "host_key"),
        Index("ix_inventory_ip_addresses_address", "address"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(50))
    family: Mapped[int] = mapped_column(Integer)
    host_key: Mapped[str] = mapped_column(KEY)
    vrf_id: Mapped[int | None] = mapped_column(ForeignKey("inventory_vrfs.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    interface_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_interfaces.id", ondelete="SET NULL"), nullable=True, index=True
    )
    dns_name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(200), default="")


class VlanGroup(Timestamps, Base):
    __tablename__ = "inventory_vlan_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    site_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_sites.id"), nullable=True, index=True
    )
    min_vid: Mapped[int] = mapped_column(Integer, default=1)
    max_vid: Mapped[int] = mapped_column(Integer, default=4094)
    description: Mapped[str] = mapped_column(String(200), default="")


class Vlan(Timestamps, Base):
    __tablename__ = "inventory_vlans"
    __table_args__ = (UniqueConstraint("group_id", "vid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vid: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_vlan_groups.id"), nullable=True
    )
    site_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_sites.id"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="active")
    description: Mapped[str] = mapped_column(String(200), default="")


# --- circuits ------------------------------------------------------------------------


class Provider(Timestamps, Base):
    __tablename__ = "inventory_providers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    asn: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    comments: Mapped[str] = mapped_column(Text, default="")


class CircuitType(Timestamps, Base):
    __tablename__ = "inventory_circuit_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class Circuit(Timestamps, Base):
    __tablename__ = "inventory_circuits"
    __table_args__ = (UniqueConstraint("provider_id", "cid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cid: Mapped[str] = mapped_column(String(100))
    provider_id: Mapped[int] = mapped_column(ForeignKey("inventory_providers.id"))
    type_id: Mapped[int] = mapped_column(ForeignKey("inventory_circuit_types.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    install_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    termination_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    commit_rate: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # kbps
    description: Mapped[str] = mapped_column(String(200), default="")
    comments: Mapped[str] = mapped_column(Text, default="")


class CircuitTermination(Timestamps, Base):
    """One end (A or Z) of a circuit: where it lands, and the cable to a device if any."""

    __tablename__ = "inventory_circuit_terminations"
    __table_args__ = (UniqueConstraint("circuit_id", "term_side"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    circuit_id: Mapped[int] = mapped_column(ForeignKey("inventory_circuits.id", ondelete="CASCADE"))
    term_side: Mapped[str] = mapped_column(String(1))
    site_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_sites.id"), nullable=True, index=True
    )
    port_speed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # kbps
    upstream_speed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    xconnect_id: Mapped[str] = mapped_column(String(50), default="")
    pp_info: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(200), default="")
    link_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_links.id", ondelete="SET NULL"), nullable=True, index=True
    )


# --- power ------------------------------------------------------------------------------


class PowerPanel(Timestamps, Base):
    """A site's power panel, in one of its locations (a room, a cage) when known.

    `location_note` is free text: where the panel is when no location says it (and the
    text panels had before they could name a location)."""

    __tablename__ = "inventory_power_panels"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("inventory_sites.id"))
    location_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_locations.id", ondelete="SET NULL"), nullable=True, index=True
    )
    location_note: Mapped[str] = mapped_column(String(100), default="")
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(200), default="")


class PowerFeed(Timestamps, Base):
    __tablename__ = "inventory_power_feeds"
    __table_args__ = (UniqueConstraint("power_panel_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    power_panel_id: Mapped[int] = mapped_column(
        ForeignKey("inventory_power_panels.id", ondelete="CASCADE")
    )
    rack_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_racks.id"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="active")
    type: Mapped[str] = mapped_column(String(10), default="primary")
    supply: Mapped[str] = mapped_column(String(2), default="ac")
    phase: Mapped[str] = mapped_column(String(12), default="single-phase")
    voltage: Mapped[int] = mapped_column(Integer, default=120)
    amperage: Mapped[int] = mapped_column(Integer, default=20)
    max_utilization: Mapped[int] = mapped_column(Integer, default=80)
    description: Mapped[str] = mapped_column(String(200), default="")
    link_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_links.id", ondelete="SET NULL"), nullable=True, index=True
    )
