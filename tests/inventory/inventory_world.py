"""A small Open Connect world: regions, ISP and IX sites, appliance and router models."""

from __future__ import annotations

from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.outbox import OutboxEvent

WORLD = """
regions:
  - {slug: europe, name: Europe}
  - {slug: benelux, name: Benelux, parent: europe}
  - {slug: americas, name: Americas}
sites:
  - {code: ams1, name: Amsterdam IX 1, region: benelux, kind: cdn-ix, country: NL,
     city: Amsterdam, latitude: 52.37, longitude: 4.89, tags: [edge, ix]}
  - {code: bru-isp1, name: Brussels ISP 1, region: benelux, kind: cdn-isp, country: BE}
  - {code: iad1, name: Ashburn 1, region: americas, kind: datacenter, country: US}
racks:
  - {site: ams1, name: R01, u_height: 42}
device_models:
  - manufacturer: Netflix
    model: OCA Storage Gen4
    slug: oca-storage-gen4
    part_number: OCA-S4
    u_height: 2
    airflow: front-to-rear
    weight: 32
    weight_unit: kg
    interfaces:
      - {name: eth0, type: 100gbase-x-qsfp28}
      - {name: eth1, type: 100gbase-x-qsfp28}
      - {name: mgmt0, type: 1000base-t, mgmt_only: true}
    power-ports:
      - {name: PSU1, type: iec-60320-c14, maximum_draw: 750}
      - {name: PSU2, type: iec-60320-c14, maximum_draw: 750}
    module-bays:
      - {name: PCIe1, position: '1'}
    inventory-items:
      - {name: fan1, role: fan}
  - manufacturer: Juniper
    model: MX204
    slug: juniper-mx204
    u_height: 1
    interfaces:
      - {name: et-0/0/0, type: 100gbase-x-qsfp28}
      - {name: et-0/0/1, type: 100gbase-x-qsfp28}
module_types:
  - manufacturer: Mellanox
    model: ConnectX-6 2x100G
    interfaces:
      - {name: 'nic{module}p0', type: 100gbase-x-qsfp28}
      - {name: 'nic{module}p1', type: 100gbase-x-qsfp28}
devices:
  - {name: oca-ams1-01, role: storage-appliance, model: oca-storage-gen4, site: ams1,
     rack: R01, position: 1, serial: NFX-0001, throughput_gbps: 100G, storage_tb: 360TB,
     tags: [oca]}
  - {name: oca-ams1-02, role: storage-appliance, model: oca-storage-gen4, site: ams1,
     rack: R01, position: 3, serial: NFX-0002, throughput_gbps: 100G, storage_tb: 360TB,
     status: maintenance}
  - {name: oca-bru-01, role: storage-appliance, model: oca-storage-gen4, site: bru-isp1,
     serial: NFX-0003, throughput_gbps: 80G, storage_tb: 240TB}
  - {name: rtr-ams1-01, role: router, model: juniper-mx204, site: ams1, serial: JN-1}
  - {name: rtr-iad1-01, role: router, model: juniper-mx204, site: iad1, serial: JN-2,
     throughput_gbps: 400G}
components:
  - {device: oca-ams1-01, name: disk0, kind: disk, serial: HDD-1, part_number: ST16000,
     firmware: SN04, install_date: '2018-03-01'}
  - {device: oca-ams1-01, name: disk1, kind: disk, serial: HDD-2, part_number: ST16000,
     install_date: '2024-03-01'}
  - {device: oca-ams1-01, name: nic1, kind: module, bay: PCIe1,
     module_type: ConnectX-6 2x100G, serial: MT-1}
  - {device: oca-ams1-01, name: optic0, kind: optic, parent: nic1, serial: OPT-1}
links:
  - {a_device: oca-ams1-01, a_name: eth0, b_device: rtr-ams1-01, b_name: et-0/0/0, type: dac}
"""


def events(prefix: str = "inventory.") -> list[OutboxEvent]:
    with session_scope(readonly=True) as session:
        stmt = select(OutboxEvent).where(OutboxEvent.type.startswith(prefix))
        return list(session.scalars(stmt.order_by(OutboxEvent.id)))
