"""NetBox `manage.py dumpdata` output, built from NetBox's documented model fields.

`dump("3")` writes NetBox 3.2 names (a device's `device_role`, cables with
`termination_a_type`/`termination_b_type`, an interface's `mac_address`, custom
fields' `content_types` and `choices`); `dump("4")` writes 4.x names (`role`,
`dcim.cabletermination` rows, `dcim.macaddress` with `primary_mac_address`,
`object_types` and a `choice_set`). Both describe one Open Connect site: a
router and a storage appliance cabled together in a rack in a cage within a
floor (nested locations), a module in a bay, tags, a tenant, custom fields, an
address in a VRF with its prefix, VLANs, an IX circuit cabled to the router, a
power feed cabled to its power supply, and the records Popcorn leaves out
(users, permissions, sessions, change log).
"""

from __future__ import annotations

from typing import Any

CT = {
    "dcim.site": 2,
    "dcim.device": 3,
    "dcim.interface": 4,
    "dcim.consoleport": 5,
    "dcim.powerport": 6,
    "dcim.rearport": 7,
    "dcim.frontport": 8,
    "circuits.circuittermination": 9,
    "dcim.powerfeed": 10,
    "ipam.ipaddress": 11,
    "dcim.rack": 12,
}


def rec(label: str, pk: Any, /, **fields: Any) -> dict[str, Any]:
    return {"model": label, "pk": pk, "fields": fields}


def dump(
    version: str, *, serial: str = "JN1234", extra_interface: bool = False
) -> list[dict[str, Any]]:
    v4 = version.startswith("4")
    out = [
        rec("contenttypes.contenttype", pk, app_label=n.split(".")[0], model=n.split(".")[1])
        for n, pk in CT.items()
    ]
    out += [
        rec("auth.permission", 1, name="Can add site", content_type=2, codename="add_site"),
        rec("auth.permission", 2, name="Can view site", content_type=2, codename="view_site"),
        rec("users.user" if v4 else "auth.user", 1, username="admin", is_superuser=True),
        rec("sessions.session", "k3y", session_data="x", expire_date="2026-12-01T00:00:00Z"),
        rec("extras.objectchange", 1, action="create", changed_object_id=1, object_repr="ams1"),
        rec(
            "tenancy.tenant",
            1,
            name="Open Connect",
            slug="open-connect",
            group=None,
            description="",
        ),
        rec("extras.tag", 1, name="OCA", slug="oca", color="e50914", description=""),
        rec("extras.tag", 2, name="Edge", slug="edge", color="000000", description=""),
        rec(
            "dcim.region",
            1,
            name="Europe",
            slug="europe",
            parent=None,
            description="",
            lft=1,
            rght=4,
            tree_id=1,
            level=0,
        ),
        rec(
            "dcim.region",
            2,
            name="Netherlands",
            slug="nl",
            parent=1,
            description="",
            lft=2,
            rght=3,
            tree_id=1,
            level=1,
        ),
        rec("dcim.sitegroup", 1, name="Tier 1", slug="tier-1", parent=None, description=""),
        rec("dcim.sitegroup", 2, name="Tier 1 EU", slug="tier-1-eu", parent=1, description="EU"),
        rec(
            "dcim.site",
            1,
            name="Amsterdam 1",
            slug="ams1",
            status="active",
            region=2,
            group=2,
            tenant=1,
            facility="AM5",
            time_zone="Europe/Amsterdam",
            description="Equinix AM5",
            physical_address="",
            shipping_address="",
            latitude="52.303000",
            longitude="4.938000",
            comments="",
            custom_field_data={},
        ),
        rec(
            "dcim.location",
            1,
            name="Floor 1",
            slug="floor-1",
            site=1,
            parent=None,
            status="active",
            tenant=None,
            description="",
            lft=1,
            rght=4,
            tree_id=1,
            level=0,
        ),
        rec(
            "dcim.location",
            2,
            name="Cage A",
            slug="cage-a",
            site=1,
            parent=1,
            status="active",
            tenant=None,
            description="cage",
            lft=2,
            rght=3,
            tree_id=1,
            level=1,
        ),
        rec("dcim.rackrole", 1, name="CDN", slug="cdn", color="ff0000", description=""),
        rec(
            "dcim.rack",
            1,
            name="R101",
            facility_id=None,
            site=1,
            location=2,
            tenant=None,
            status="reserved",
            role=1,
            serial="",
            asset_tag=None,
            type="4-post-cabinet",
            width=19,
            u_height=42,
            desc_units=False,
            outer_width=None,
            outer_depth=None,
            outer_unit="",
            description="",
            comments="",
            custom_field_data={},
        ),
        rec("dcim.manufacturer", 1, name="Juniper", slug="juniper", description=""),
        rec("dcim.manufacturer", 2, name="Supermicro", slug="supermicro", description=""),
        rec(
            "dcim.devicetype",
            1,
            manufacturer=1,
            model="MX204",
            slug="juniper-mx204",
            part_number="MX204-HW-BASE",
            u_height="1.0",
            is_full_depth=True,
            subdevice_role="",
            airflow="front-to-rear",
            weight="9.89",
            weight_unit="kg",
            _abs_weight=9890,
            front_image="",
            rear_image="",
            description="",
            comments="",
            custom_field_data={},
        ),
        rec(
            "dcim.devicetype",
            2,
            manufacturer=2,
            model="SYS-1029U-TN10RT",
            slug="supermicro-sys-1029u-tn10rt",
            part_number="",
            u_height="1.0",
            is_full_depth=True,
            subdevice_role="",
            airflow="",
            weight=None,
            weight_unit="",
            description="",
            comments="",
            custom_field_data={},
        ),
        rec(
            "dcim.interfacetemplate",
            1,
            device_type=1,
            module_type=None,
            name="et-0/0/0",
            label="",
            type="100gbase-x-qsfp28",
            enabled=True,
            mgmt_only=False,
            description="",
            poe_mode="",
            poe_type="",
            rf_role="",
        ),
        rec(
            "dcim.interfacetemplate",
            2,
            device_type=1,
            module_type=None,
            name="et-0/0/1",
            label="",
            type="100gbase-x-qsfp28",
            enabled=True,
            mgmt_only=False,
            description="",
            poe_mode="",
            poe_type="",
            rf_role="",
        ),
        rec(
            "dcim.interfacetemplate",
            3,
            device_type=1,
            module_type=None,
            name="fxp0",
            label="",
            type="1000base-t",
            enabled=True,
            mgmt_only=True,
            description="",
            poe_mode="",
            poe_type="",
            rf_role="",
        ),
        rec(
            "dcim.consoleporttemplate",
            1,
            device_type=1,
            module_type=None,
            name="con0",
            label="",
            type="rj-45",
            description="",
        ),
        rec(
            "dcim.powerporttemplate",
            1,
            device_type=1,
            module_type=None,
            name="PEM0",
            label="",
            type="iec-60320-c14",
            maximum_draw=525,
            allocated_draw=350,
            description="",
        ),
        rec(
            "dcim.interfacetemplate",
            4,
            device_type=2,
            module_type=None,
            name="IPMI",
            label="",
            type="1000base-t",
            enabled=True,
            mgmt_only=True,
            description="",
            poe_mode="",
            poe_type="",
            rf_role="",
        ),
        rec(
            "dcim.modulebaytemplate",
            1,
            device_type=2,
            module_type=None,
            name="Slot 1",
            label="",
            position="1",
            description="",
        ),
        rec(
            "dcim.moduletype",
            1,
            manufacturer=2,
            model="AOC-S100G",
            part_number="AOC-S100G-B2C",
            weight="0.3",
            weight_unit="kg",
            description="",
            comments="",
            custom_field_data={},
        ),
        rec(
            "dcim.interfacetemplate",
            5,
            device_type=None,
            module_type=1,
            name="ens{module}f0",
            label="",
            type="100gbase-x-qsfp28",
            enabled=True,
            mgmt_only=False,
            description="",
            poe_mode="",
            poe_type="",
            rf_role="",
        ),
        rec(
            "dcim.devicerole",
            1,
            name="Core router",
            slug="core-router",
            color="2196f3",
            vm_role=False,
            description="",
        ),
        rec(
            "dcim.devicerole",
            2,
            name="OCA storage",
            slug="oca-storage",
            color="e50914",
            vm_role=False,
            description="",
        ),
        rec("dcim.platform", 1, name="Junos", slug="junos", manufacturer=1, description=""),
        rec(
            "ipam.ipaddress",
            1,
            address="192.0.2.1/31",
            vrf=1,
            tenant=None,
            status="active",
            role="",
            assigned_object_type=4,
            assigned_object_id=2,
            nat_inside=None,
            dns_name="mx1.ams1.example",
            description="",
        ),
        *ipam(version),
    ]
    device_common = dict(
        tenant=1,
        location=2,
        cluster=None,
        virtual_chassis=None,
        vc_position=None,
        vc_priority=None,
        airflow="",
        local_context_data=None,
        comments="",
    )
    role = "role" if v4 else "device_role"
    out += [
        rec(
            "dcim.device",
            1,
            name="mx1-ams1",
            device_type=1,
            **{role: 1},
            platform=1,
            serial=serial,
            asset_tag=None,
            site=1,
            rack=1,
            position="10.0",
            face="front",
            status="active",
            primary_ip4=1,
            primary_ip6=None,
            description="edge router",
            custom_field_data={"rma_case": None, "tier": "gold"},
            **device_common,
        ),
        rec(
            "dcim.device",
            2,
            name="oca1-ams1",
            device_type=2,
            **{role: 2},
            platform=None,
            serial="",
            asset_tag="NF-0001",
            site=1,
            rack=1,
            position="20.0",
            face="front",
            status="offline",
            primary_ip4=None,
            primary_ip6=None,
            description="",
            custom_field_data={"rma_case": "RMA-4411", "tier": "silver", "gone_field": 1},
            **device_common,
        ),
        rec("extras.taggeditem", 1, tag=1, content_type=3, object_id=2),
        rec("extras.taggeditem", 2, tag=2, content_type=3, object_id=1),
        rec("extras.taggeditem", 3, tag=2, content_type=2, object_id=1),
    ]
    if v4:
        out += [
            rec(
                "extras.customfieldchoiceset",
                1,
                name="Tiers",
                base_choices="",
                extra_choices=[["gold", "Gold"], ["silver", "Silver"]],
                order_alphabetically=False,
            ),
            rec(
                "extras.customfield",
                1,
                object_types=[3],
                type="text",
                name="rma_case",
                label="RMA case",
                description="",
                required=False,
            ),
            rec(
                "extras.customfield",
                2,
                object_types=[3],
                type="select",
                name="tier",
                label="Tier",
                description="",
                required=True,
                choice_set=1,
            ),
        ]
    else:
        out += [
            rec(
                "extras.customfield",
                1,
                content_types=[3],
                type="text",
                name="rma_case",
                label="RMA case",
                description="",
                required=False,
            ),
            rec(
                "extras.customfield",
                2,
                content_types=[3],
                type="select",
                name="tier",
                label="Tier",
                description="",
                required=True,
                choices=["gold", "silver"],
            ),
        ]
    mac = "0C:C4:7A:00:00:01"

    def iface(pk: int, device: int, name: str, type_: str, **extra: Any) -> dict[str, Any]:
        fields = dict(
            device=device,
            module=None,
            name=name,
            label="",
            type=type_,
            enabled=True,
            parent=None,
            bridge=None,
            lag=None,
            mtu=None,
            mgmt_only=False,
            speed=None,
            duplex=None,
            wwn=None,
            description="",
            mode="",
            rf_role="",
            poe_mode="",
            poe_type="",
            vrf=None,
            mark_connected=False,
            cable=None,
            custom_field_data={},
        )
        if not v4:
            fields["mac_address"] = None
        fields.update(extra)
        return rec("dcim.interface", pk, **fields)

    oca_eth = {"primary_mac_address": 1} if v4 else {"mac_address": mac}
    out += [
        iface(1, 1, "et-0/0/0", "100gbase-x-qsfp28", speed=100000000, cable=1),
        iface(2, 1, "et-0/0/1", "100gbase-x-qsfp28", speed=100000000),
        iface(3, 1, "fxp0", "1000base-t", mgmt_only=True),
        iface(4, 2, "IPMI", "1000base-t", mgmt_only=True),
        iface(5, 2, "ens1f0", "100gbase-x-qsfp28", module=1, mtu=9000, cable=1, **oca_eth),
        rec(
            "dcim.consoleport",
            1,
            device=1,
            module=None,
            name="con0",
            label="",
            type="rj-45",
            speed=None,
            description="",
            mark_connected=False,
            cable=None,
        ),
        rec(
            "dcim.powerport",
            1,
            device=1,
            module=None,
            name="PEM0",
            label="",
            type="iec-60320-c14",
            maximum_draw=525,
            allocated_draw=350,
            description="",
            mark_connected=False,
            cable=None,
        ),
        rec(
            "dcim.modulebay",
            1,
            device=2,
            module=None,
            name="Slot 1",
            label="",
            position="1",
            description="",
        ),
        rec(
            "dcim.module",
            1,
            device=2,
            module_bay=1,
            module_type=1,
            status="active",
            serial="AOC123",
            asset_tag=None,
            description="",
            comments="",
            custom_field_data={},
        ),
    ]
    if extra_interface:
        out.append(iface(6, 1, "et-0/0/2", "100gbase-x-qsfp28"))
    if v4:
        out.append(
            rec(
                "dcim.macaddress",
                1,
                mac_address=mac,
                assigned_object_type=4,
                assigned_object_id=5,
                description="",
            )
        )
    cable = dict(
        type="smf",
        status="connected",
        tenant=None,
        label="AMS1-0001",
        color="ffff00",
        length="3.00",
        length_unit="m",
        description="",
        comments="",
        custom_field_data={},
    )
    if v4:
        out += [
            rec("dcim.cable", 1, **cable),
            rec(
                "dcim.cabletermination",
                1,
                cable=1,
                cable_end="A",
                termination_type=4,
                termination_id=1,
                _device=1,
                _rack=1,
                _location=2,
                _site=1,
            ),
            rec(
                "dcim.cabletermination",
                2,
                cable=1,
                cable_end="B",
                termination_type=4,
                termination_id=5,
                _device=2,
                _rack=1,
                _location=2,
                _site=1,
            ),
        ]
    else:
        out.append(
            rec(
                "dcim.cable",
                1,
                termination_a_type=4,
                termination_a_id=1,
                termination_b_type=4,
                termination_b_id=5,
                _termination_a_device=1,
                _termination_b_device=2,
                **cable,
            )
        )
    return out + late_cables(version, cable)


def ipam(version: str) -> list[dict[str, Any]]:
    """A VRF, its prefix, VLANs, an ASN, an IX circuit and a power feed (4.2: scopes)."""
    prefix = dict(
        prefix="192.0.2.0/24",
        vrf=1,
        vlan=None,
        tenant=None,
        status="active",
        role=None,
        is_pool=False,
        mark_utilized=False,
        description="",
    )
    if version.startswith("4.2"):
        prefix.update(scope_type=CT["dcim.site"], scope_id=1)
        site_end: dict[str, Any] = dict(termination_type=CT["dcim.site"], termination_id=1)
    else:
        prefix.update(site=1)
        site_end = dict(site=1, provider_network=None)
    return [
        rec("ipam.rir", 1, name="RIPE NCC", slug="ripe", is_private=False, description=""),
        rec("ipam.asn", 1, asn=2906, rir=1, tenant=None, description=""),
        rec("ipam.vrf", 1, name="transit", rd="2906:1", tenant=None, enforce_unique=True,
            description=""),
        rec("ipam.vlangroup", 1, name="AMS1", slug="ams1", scope_type=CT["dcim.site"],
            scope_id=1, description=""),
        rec("ipam.vlan", 1, vid=100, name="peering", group=1, site=None, tenant=None,
            status="active", role=None, description=""),
        rec("ipam.prefix", 1, **prefix),
        rec("circuits.provider", 1, name="AMS-IX", slug="ams-ix", description="", comments=""),
        rec("circuits.circuittype", 1, name="IX port", slug="ix-port", description=""),
        rec("circuits.circuit", 1, cid="AMSIX-12345", provider=1, type=1, status="active",
            tenant=None, install_date="2021-04-01", termination_date=None,
            commit_rate=100000000, description="", comments=""),
        rec("circuits.circuittermination", 1, circuit=1, term_side="A", port_speed=100000000,
            upstream_speed=None, xconnect_id="XC-77", pp_info="MMR 2 port 14", description="",
            mark_connected=False, **site_end),
        rec("dcim.powerpanel", 1, site=1, location=None, name="PP-A", description=""),
        rec("dcim.powerfeed", 1, power_panel=1, rack=1, name="Feed A", status="active",
            type="primary", supply="ac", phase="single-phase", voltage=230, amperage=16,
            max_utilization=80, mark_connected=False, description="", comments=""),
    ]  # fmt: skip


def late_cables(version: str, cable: dict[str, Any]) -> list[dict[str, Any]]:
    """mx1's et-0/0/1 to the IX circuit's A end, and its PEM0 to the power feed."""
    circuit, feed = CT["circuits.circuittermination"], CT["dcim.powerfeed"]
    ends = [
        (2, {**cable, "label": "XC-77"}, (CT["dcim.interface"], 2), (circuit, 1)),
        (3, {**cable, "type": "power", "label": "PWR-1"}, (CT["dcim.powerport"], 1), (feed, 1)),
    ]
    out = []
    for pk, fields, (a_type, a_id), (b_type, b_id) in ends:
        if version.startswith("4"):
            out.append(rec("dcim.cable", pk, **fields))
            for end, (ctype, ident) in (("A", (a_type, a_id)), ("B", (b_type, b_id))):
                out.append(
                    rec("dcim.cabletermination", 10 * pk + len(out), cable=pk, cable_end=end,
                        termination_type=ctype, termination_id=ident)
                )  # fmt: skip
        else:
            out.append(
                rec("dcim.cable", pk, termination_a_type=a_type, termination_a_id=a_id,
                    termination_b_type=b_type, termination_b_id=b_id, **fields)
            )  # fmt: skip
    return out
