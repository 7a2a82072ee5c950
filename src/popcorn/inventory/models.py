"""Inventory tables: where the network gear is, what it is made of, and how it is cabled.

Names follow NetBox (regions, sites, racks, manufacturers, device models a.k.a.
device types, module types, devices, interfaces, ports, bays, links a.k.a.
cables) so that its users find their way. Hardware components (modules in
module bays and inventory items such as disks, optics, PSUs) share one table,
since reports, failure handling and end-of-life checks treat them alike.
Tags are kept twice on purpose: a JSON list on the row for display and one
`inventory_taggings` row per tag, indexed, so `?tag=` stays fast at scale.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from popcorn.db import (
    MIGRATION_ONLY_INDEXES,
    RUNTIME_TABLES,
    Base,
    JSONDocument,
    UTCDateTime,
    utcnow,
)

# SQL NULL (not JSON null) for absent values: most components carry no custom fields.
NullableJSON = JSONDocument(none_as_null=True)


def _partial(*names: str, **info: Any) -> dict[str, Any]:
    """Table options naming its partial indexes (over the rows where a link, bay or rack is
    set, or a part is unhealthy), which the migrations make (inventory_0001, inventory_0005).
    They stay out of the model: their `postgresql_where` option would load PostgreSQL's
    dialect into every command that reads the inventory, SQLite installs included."""
    return {"info": {MIGRATION_ONLY_INDEXES: names, **info}}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Region(Timestamps, Base):
    __tablename__ = "inventory_regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_regions.id"), nullable=True, index=True
    )
    description: Mapped[str] = mapped_column(String(200), default="")


class SiteGroup(Timestamps, Base):
    """A functional grouping of sites (NetBox's site group), nested like regions."""

    __tablename__ = "inventory_site_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_site_groups.id"), nullable=True, index=True
    )
    description: Mapped[str] = mapped_column(String(200), default="")


class Site(Timestamps, Base):
    __tablename__ = "inventory_sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    region_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_regions.id"), nullable=True, index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_site_groups.id"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(20), default="datacenter")
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    city: Mapped[str] = mapped_column(String(100), default="")
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    asn: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)


class Location(Timestamps, Base):
    """A room, floor or cage inside one site (NetBox's location), nested within that site."""

    __tablename__ = "inventory_locations"
    __table_args__ = (UniqueConstraint("site_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("inventory_sites.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_locations.id"), nullable=True, index=True
    )
    slug: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="active")
    description: Mapped[str] = mapped_column(String(200), default="")


class Rack(Timestamps, Base):
    __tablename__ = "inventory_racks"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("inventory_sites.id"), index=True)
    location_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_locations.id"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    u_height: Mapped[int] = mapped_column(Integer, default=42)
    status: Mapped[str] = mapped_column(String(20), default="active")
    description: Mapped[str] = mapped_column(String(200), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)


class Manufacturer(Timestamps, Base):
    __tablename__ = "inventory_manufacturers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class DeviceModel(Timestamps, Base):
    """A device type: what every device of this model looks like when it is created."""

    __tablename__ = "inventory_device_models"
    __table_args__ = (UniqueConstraint("manufacturer_id", "model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    manufacturer_id: Mapped[int] = mapped_column(
        ForeignKey("inventory_manufacturers.id"), index=True
    )
    model: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    part_number: Mapped[str] = mapped_column(String(100), default="")
    u_height: Mapped[float] = mapped_column(Float, default=1.0)
    is_full_depth: Mapped[bool] = mapped_column(Boolean, default=True)
    airflow: Mapped[str | None] = mapped_column(String(20), nullable=True)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight_unit: Mapped[str | None] = mapped_column(String(4), nullable=True)
    subdevice_role: Mapped[str | None] = mapped_column(String(10), nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    comments: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)


class ModuleType(Timestamps, Base):
    __tablename__ = "inventory_module_types"
    __table_args__ = (UniqueConstraint("manufacturer_id", "model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    manufacturer_id: Mapped[int] = mapped_column(
        ForeignKey("inventory_manufacturers.id"), index=True
    )
    model: Mapped[str] = mapped_column(String(100))
    part_number: Mapped[str] = mapped_column(String(100), default="")
    airflow: Mapped[str | None] = mapped_column(String(20), nullable=True)
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight_unit: Mapped[str | None] = mapped_column(String(4), nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    comments: Mapped[str] = mapped_column(Text, default="")


class ComponentTemplate(Base):
    """One interface, port, bay or inventory item every device (or module) of a type gets."""

    __tablename__ = "inventory_component_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_device_models.id", ondelete="CASCADE"), nullable=True, index=True
    )
    module_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_module_types.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100), default="")
    type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    mgmt_only: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(200), default="")
    extra: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)


class Device(Timestamps, Base):
    __tablename__ = "inventory_devices"
    __table_args__ = (
        _partial(
            "ix_inventory_devices_rack_id",
            "ix_inventory_devices_location_id",
            # SQLite's substring search index, made by the first device write (`search.py`)
            **{RUNTIME_TABLES: ("inventory_device_search",)},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(30), index=True)
    device_model_id: Mapped[int] = mapped_column(
        ForeignKey("inventory_device_models.id"), index=True
    )
    site_id: Mapped[int] = mapped_column(ForeignKey("inventory_sites.id"), index=True)
    rack_id: Mapped[int | None] = mapped_column(ForeignKey("inventory_racks.id"), nullable=True)
    location_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_locations.id"), nullable=True
    )
    position: Mapped[float | None] = mapped_column(Float, nullable=True)
    face: Mapped[str | None] = mapped_column(String(5), nullable=True)
    serial: Mapped[str | None] = mapped_column(String(100), nullable=True, unique=True)
    asset_tag: Mapped[str | None] = mapped_column(String(100), nullable=True, unique=True)
    platform: Mapped[str] = mapped_column(String(100), default="")
    os_version: Mapped[str] = mapped_column(String(100), default="")
    primary_ip4: Mapped[str | None] = mapped_column(String(50), nullable=True)
    primary_ip6: Mapped[str | None] = mapped_column(String(80), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="active", index=True)
    throughput_gbps: Mapped[float | None] = mapped_column(Float, nullable=True)
    storage_tb: Mapped[float | None] = mapped_column(Float, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    comments: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)
    agent_url: Mapped[str | None] = mapped_column(String(300), nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(50), nullable=True)
    agent_actions: Mapped[list[str] | None] = mapped_column(NullableJSON, nullable=True)
    agent_last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    site: Mapped[Site] = relationship(lazy="raise_on_sql")
    device_model: Mapped[DeviceModel] = relationship(lazy="raise_on_sql")
    rack: Mapped[Rack | None] = relationship(lazy="raise_on_sql")


class Bay(Base):
    """A module bay or device bay of a device."""

    __tablename__ = "inventory_bays"
    __table_args__ = (UniqueConstraint("device_id", "kind", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("inventory_devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20), default="module-bay")
    name: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100), default="")
    position: Mapped[str] = mapped_column(String(30), default="")
    description: Mapped[str] = mapped_column(String(200), default="")
    installed_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_devices.id", ondelete="SET NULL"), nullable=True
    )


class Component(Timestamps, Base):
    """A piece of hardware in a device: a module in a bay, or a disk, NIC, optic, PSU, fan…"""

    __tablename__ = "inventory_components"
    __table_args__ = (
        UniqueConstraint("device_id", "name"),
        # Reports look for unhealthy parts (most are "ok" and stay out of that index); a bay
        # holds one part at most.
        _partial("ix_inventory_components_unhealthy", "uq_inventory_components_bay_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("inventory_devices.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_components.id", ondelete="CASCADE"), nullable=True
    )
    bay_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_bays.id", ondelete="CASCADE"), nullable=True
    )
    module_type_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_module_types.id"), nullable=True
    )
    manufacturer_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_manufacturers.id"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(20), default="other")
    name: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100), default="")
    part_number: Mapped[str] = mapped_column(String(100), default="")
    serial: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    firmware: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="ok")
    install_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    eol_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    custom_fields: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)


class Link(Timestamps, Base):
    """A cable between two terminations (interfaces or ports), NetBox's cable."""

    __tablename__ = "inventory_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "interface" or "port" on a device; "circuit_termination" or "power_feed" have none.
    a_type: Mapped[str] = mapped_column(String(20))
    a_id: Mapped[int] = mapped_column(Integer)
    a_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_devices.id", ondelete="CASCADE"), nullable=True, index=True
    )
    b_type: Mapped[str] = mapped_column(String(20))
    b_id: Mapped[int] = mapped_column(Integer)
    b_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_devices.id", ondelete="CASCADE"), nullable=True, index=True
    )
    type: Mapped[str] = mapped_column(String(20), default="")
    status: Mapped[str] = mapped_column(String(20), default="connected")
    label: Mapped[str] = mapped_column(String(100), default="")
    color: Mapped[str] = mapped_column(String(6), default="")
    length: Mapped[float | None] = mapped_column(Float, nullable=True)
    length_unit: Mapped[str | None] = mapped_column(String(2), nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class Interface(Base):
    __tablename__ = "inventory_interfaces"
    __table_args__ = (
        UniqueConstraint("device_id", "name"),
        _partial("ix_inventory_interfaces_link_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("inventory_devices.id", ondelete="CASCADE"))
    module_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_components.id", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100), default="")
    type: Mapped[str] = mapped_column(String(50), default="other")
    speed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mgmt_only: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    mac_address: Mapped[str | None] = mapped_column(String(17), nullable=True)
    mtu: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    link_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_links.id", ondelete="SET NULL"), nullable=True
    )


class Port(Base):
    """Console, console-server, power, power-outlet, front and rear ports."""

    __tablename__ = "inventory_ports"
    __table_args__ = (
        UniqueConstraint("device_id", "kind", "name"),
        _partial("ix_inventory_ports_link_id", "ix_inventory_ports_peer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("inventory_devices.id", ondelete="CASCADE"))
    module_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_components.id", ondelete="CASCADE"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(100), default="")
    type: Mapped[str | None] = mapped_column(String(50), nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    maximum_draw: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allocated_draw: Mapped[int | None] = mapped_column(Integer, nullable=True)
    feed_leg: Mapped[str | None] = mapped_column(String(1), nullable=True)
    positions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A front port's rear port (and position on it); a power outlet's power port.
    peer_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_ports.id", ondelete="SET NULL"), nullable=True
    )
    peer_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    link_id: Mapped[int | None] = mapped_column(
        ForeignKey("inventory_links.id", ondelete="SET NULL"), nullable=True
    )


class CustomField(Base):
    """A typed extra field declared for one object type (NetBox's custom fields)."""

    __tablename__ = "inventory_custom_fields"
    __table_args__ = (UniqueConstraint("object_type", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(50))
    label: Mapped[str] = mapped_column(String(100), default="")
    type: Mapped[str] = mapped_column(String(20), default="text")
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    choices: Mapped[list[str] | None] = mapped_column(NullableJSON, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class Tagging(Base):
    __tablename__ = "inventory_taggings"
    __table_args__ = (Index("ix_inventory_taggings_object", "object_type", "object_id"),)

    object_type: Mapped[str] = mapped_column(String(30), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    object_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class JournalEntry(Base):
    """A free-text note on any inventory object ("replaced PSU-2, RMA 4411")."""

    __tablename__ = "inventory_journal"
    __table_args__ = (Index("ix_inventory_journal_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(30))
    object_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10), default="info")
    comments: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NetboxId(Base):
    """Which Popcorn object a NetBox record became (`popcorn inventory import-netbox`).

    Kept so a later dump of the same NetBox updates the same objects, and so
    anyone can go from a NetBox id to the Popcorn object and back.
    """

    __tablename__ = "inventory_netbox_ids"
    __table_args__ = (Index("ix_inventory_netbox_ids_object", "object_type", "object_id"),)

    netbox_model: Mapped[str] = mapped_column(String(60), primary_key=True)
    netbox_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_type: Mapped[str] = mapped_column(String(30))
    object_id: Mapped[int] = mapped_column(Integer)


# IPAM, circuits and power keep their tables in their own module, which nothing here
# refers to: `load_models` (migrations, schema checks, tests) imports it by this name, and
# the code using those tables imports it, so a device list never maps fourteen more tables.
TABLE_MODULES = ["popcorn.inventory.ipam.models"]
