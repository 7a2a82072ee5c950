"""Input and output shapes of IPAM, circuits and power, shared by the API, the CLI and imports.

References to other objects take an id or a natural key, like the rest of the
inventory: `site: fra1`, `vrf: customers` (name or route distinguisher),
`provider: telia`, `device: oca-fra1-01` with `interface: eth0`. Addresses and
prefixes are checked and normalised here with Python's `ipaddress`, so every
path in stores "10.1.0.0/16", never "10.1.0.7/16" or " 10.1.0.0/16".
"""

from __future__ import annotations

import ipaddress
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from popcorn.schemas import Page, ReadSchema, Schema

PREFIX_STATUSES = ("container", "active", "reserved", "deprecated")
IP_STATUSES = ("active", "reserved", "deprecated", "dhcp", "slaac")
IP_ROLES = ("loopback", "secondary", "anycast", "vip", "vrrp", "hsrp", "glbp", "carp")
# Roles NetBox lets share one address inside a VRF that enforces uniqueness.
SHARED_ROLES = frozenset({"anycast", "vip", "vrrp", "hsrp", "glbp", "carp"})
RANGE_STATUSES = ("active", "reserved", "deprecated")
VLAN_STATUSES = ("active", "reserved", "deprecated")
CIRCUIT_STATUSES = (
    "planned",
    "provisioning",
    "active",
    "offline",
    "deprovisioning",
    "decommissioned",
)
FEED_STATUSES = ("offline", "active", "planned", "failed")
FEED_TYPES = ("primary", "redundant")
FEED_SUPPLIES = ("ac", "dc")
FEED_PHASES = ("single-phase", "three-phase")

Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Slug = Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_]+$", max_length=100)]
Text200 = Annotated[str, StringConstraints(max_length=200)]
Ref = int | Annotated[str, StringConstraints(min_length=1, max_length=200)]
Kbps = Annotated[int, Field(ge=0, le=10**12)]


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 prefix") from None


def _interface(value: str) -> str:
    try:
        found = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    return str(found)  # a bare address becomes a host route (/32, /128), as in NetBox


Network = Annotated[str, AfterValidator(_network)]
Address = Annotated[str, AfterValidator(_interface)]


# --- IPAM ---------------------------------------------------------------------------


class RirIn(Schema):
    name: Name
    slug: Slug | None = None
    is_private: bool = False
    description: Text200 = ""


class AsnIn(Schema):
    asn: Annotated[int, Field(ge=1, le=4294967295)]
    rir: Ref | None = None
    description: Text200 = ""


class VrfIn(Schema):
    name: Name
    rd: Annotated[str, StringConstraints(min_length=1, max_length=21)] | None = None
    enforce_unique: bool = True
    description: Text200 = ""


class PrefixIn(Schema):
    prefix: Network
    vrf: Ref | None = None
    site: Ref | None = None
    vlan: Ref | None = None
    status: Literal[PREFIX_STATUSES] = "active"  # type: ignore[valid-type]
    is_pool: bool = False
    mark_utilized: bool = False
    description: Text200 = ""


class IpRangeIn(Schema):
    start_address: Address
    end_address: Address
    vrf: Ref | None = None
    status: Literal[RANGE_STATUSES] = "active"  # type: ignore[valid-type]
    mark_utilized: bool = Field(False, description="count the whole range as used")
    description: Text200 = ""


class IpAddressIn(Schema):
    address: Address
    vrf: Ref | None = None
    status: Literal[IP_STATUSES] = "active"  # type: ignore[valid-type]
    role: Literal[IP_ROLES] | None = None  # type: ignore[valid-type]
    device: Ref | None = Field(default=None, description="with `interface` given by name")
    interface: Ref | None = Field(default=None, description="id, or name on `device`")
    dns_name: Annotated[str, StringConstraints(max_length=255)] = ""
    description: Text200 = ""


class VlanGroupIn(Schema):
    name: Name
    slug: Slug | None = None
    site: Ref | None = None
    min_vid: Annotated[int, Field(ge=1, le=4094)] = 1
    max_vid: Annotated[int, Field(ge=1, le=4094)] = 4094
    description: Text200 = ""


class VlanIn(Schema):
    vid: Annotated[int, Field(ge=1, le=4094)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    group: Ref | None = None
    site: Ref | None = None
    status: Literal[VLAN_STATUSES] = "active"  # type: ignore[valid-type]
    description: Text200 = ""


# --- circuits ----------------------------------------------------------------------------


class ProviderIn(Schema):
    name: Name
    slug: Slug | None = None
    asn: Annotated[int, Field(ge=1, le=4294967295)] | None = None
    description: Text200 = ""
    comments: str = ""


class CircuitTypeIn(Schema):
    name: Name
    slug: Slug | None = None
    description: Text200 = ""


class CircuitIn(Schema):
    cid: Name
    provider: Ref
    type: Ref
    status: Literal[CIRCUIT_STATUSES] = "active"  # type: ignore[valid-type]
    install_date: date | None = None
    termination_date: date | None = None
    commit_rate: Kbps | None = Field(default=None, description="committed rate in kbps")
    description: Text200 = ""
    comments: str = ""


class CircuitTerminationIn(Schema):
    circuit: Ref = Field(description="id, or cid (with `provider` when cids repeat)")
    provider: Ref | None = None
    term_side: Literal["A", "Z"]
    site: Ref | None = None
    port_speed: Kbps | None = None
    upstream_speed: Kbps | None = None
    xconnect_id: Annotated[str, StringConstraints(max_length=50)] = ""
    pp_info: Annotated[str, StringConstraints(max_length=100)] = ""
    description: Text200 = ""


class ConnectIn(Schema):
    """A cable from a circuit termination or power feed to a device interface or port."""

    device: Ref
    interface: Ref | None = None
    port: Ref | None = Field(
        default=None, description="a power port (feeds) or front/rear port (circuits): id or name"
    )
    type: Annotated[str, StringConstraints(max_length=20)] = ""
    label: Annotated[str, StringConstraints(max_length=100)] = ""
    description: Text200 = ""


# --- power ---------------------------------------------------------------------------------


class PowerPanelIn(Schema):
    site: Ref
    name: Name
    location: Ref | None = Field(default=None, description="a location of the site: id or slug")
    location_note: Annotated[str, StringConstraints(max_length=100)] = Field(
        default="", description="where the panel is, as free text"
    )
    description: Text200 = ""


class PowerFeedIn(Schema):
    power_panel: Ref = Field(description="id, or name (with `site` when names repeat)")
    site: Ref | None = None
    rack: Ref | None = None
    name: Name
    status: Literal[FEED_STATUSES] = "active"  # type: ignore[valid-type]
    type: Literal[FEED_TYPES] = "primary"  # type: ignore[valid-type]
    supply: Literal[FEED_SUPPLIES] = "ac"  # type: ignore[valid-type]
    phase: Literal[FEED_PHASES] = "single-phase"  # type: ignore[valid-type]
    voltage: Annotated[int, Field(ge=-1000, le=1000)] = 120
    amperage: Annotated[int, Field(ge=1, le=10000)] = 20
    max_utilization: Annotated[int, Field(ge=1, le=100)] = 80
    description: Text200 = ""


# --- read shapes ---------------------------------------------------------------------------


class Stamped(ReadSchema):
    id: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RirRead(Stamped):
    name: str
    slug: str
    is_private: bool
    description: str


class AsnRead(Stamped):
    asn: int
    rir: str | None
    description: str


class VrfRead(Stamped):
    name: str
    rd: str | None
    enforce_unique: bool
    description: str


class PrefixRead(Stamped):
    prefix: str
    family: int
    vrf: str | None
    site: str | None
    vlan: int | None
    status: str
    is_pool: bool
    mark_utilized: bool
    description: str
    depth: int = 0
    children: int = 0
    utilization: float = Field(0.0, description="share of the prefix in use, 0 to 1")


class IpRangeRead(Stamped):
    start_address: str
    end_address: str
    family: int
    vrf: str | None
    status: str
    mark_utilized: bool
    size: int
    description: str


class IpAddressRead(Stamped):
    address: str
    family: int
    vrf: str | None
    status: str
    role: str | None
    device: str | None
    interface: str | None
    interface_id: int | None
    primary: bool = False
    dns_name: str
    description: str


class VlanGroupRead(Stamped):
    name: str
    slug: str
    site: str | None
    min_vid: int
    max_vid: int
    description: str


class VlanRead(Stamped):
    vid: int
    name: str
    group: str | None
    site: str | None
    status: str
    description: str


class ProviderRead(Stamped):
    name: str
    slug: str
    asn: int | None
    description: str
    comments: str


class CircuitTypeRead(Stamped):
    name: str
    slug: str
    description: str


class CircuitRead(Stamped):
    cid: str
    provider: str
    type: str
    status: str
    install_date: date | None
    termination_date: date | None
    commit_rate: int | None
    description: str
    comments: str
    a_site: str | None = None
    z_site: str | None = None


class CircuitTerminationRead(Stamped):
    circuit: str
    circuit_id: int
    provider: str
    term_side: str
    site: str | None
    port_speed: int | None
    upstream_speed: int | None
    xconnect_id: str
    pp_info: str
    description: str
    link_id: int | None
    connected_device: str | None = None
    connected_name: str | None = None


class PowerPanelRead(Stamped):
    site: str
    name: str
    location: str | None = None
    location_id: int | None = None
    location_note: str = ""
    description: str


class PowerFeedRead(Stamped):
    power_panel: str
    site: str
    rack: str | None
    name: str
    status: str
    type: str
    supply: str
    phase: str
    voltage: int
    amperage: int
    max_utilization: int
    description: str
    link_id: int | None
    available_power: int = Field(0, description="VA the feed may carry (NetBox's formula)")
    allocated_draw: int = Field(0, description="W allocated by the power ports it feeds")
    maximum_draw: int = Field(0, description="W at most drawn by the power ports it feeds")
    utilization: float = Field(0.0, description="allocated draw / available power, 0 to 1")


class NextPrefixIn(Schema):
    prefix_length: Annotated[int, Field(ge=0, le=128)]
    count: Annotated[int, Field(ge=1, le=256)] = 1
    create: bool = Field(False, description="create them (status active) instead of listing")
    status: Literal[PREFIX_STATUSES] = "active"  # type: ignore[valid-type]
    description: Text200 = ""


class NextAddressIn(Schema):
    count: Annotated[int, Field(ge=1, le=256)] = 1
    create: bool = False
    status: Literal[IP_STATUSES] = "active"  # type: ignore[valid-type]
    description: Text200 = ""


class Available(BaseModel):
    """Free prefixes or addresses found (and created, when asked)."""

    parent: str
    vrf: str | None
    items: list[str]
    created: list[int] = []


class IpAddressPage(Page[IpAddressRead]):
    pass


def _page(read: type[ReadSchema]) -> type[BaseModel]:
    page: type[BaseModel] = type(f"{read.__name__.removesuffix('Read')}Page", (Page[read],), {})  # type: ignore[valid-type]
    return page


PAGES: dict[str, type[BaseModel]] = {
    name: _page(read)
    for name, read in (
        ("rir", RirRead),
        ("asn", AsnRead),
        ("vrf", VrfRead),
        ("prefix", PrefixRead),
        ("ip_range", IpRangeRead),
        ("ip_address", IpAddressRead),
        ("vlan_group", VlanGroupRead),
        ("vlan", VlanRead),
        ("provider", ProviderRead),
        ("circuit_type", CircuitTypeRead),
        ("circuit", CircuitRead),
        ("circuit_termination", CircuitTerminationRead),
        ("power_panel", PowerPanelRead),
        ("power_feed", PowerFeedRead),
    )
}
