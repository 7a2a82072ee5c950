"""The fixed facts the demo world is drawn from: places, ISPs, client groups and device models.

The generator (`world.py`) samples sites and groups from these lists with a seed,
so two runs with the same seed build the same world. Coordinates are the real
cities'; the device models follow the community device-type library's format.
"""

from __future__ import annotations

from typing import Any

# (slug, name, parent) — continents first, then countries.
REGIONS: list[tuple[str, str, str | None]] = [
    ("north-america", "North America", None),
    ("south-america", "South America", None),
    ("europe", "Europe", None),
    ("asia-pacific", "Asia Pacific", None),
    ("us", "United States", "north-america"),
    ("ca", "Canada", "north-america"),
    ("mx", "Mexico", "north-america"),
    ("br", "Brazil", "south-america"),
    ("gb", "United Kingdom", "europe"),
    ("ie", "Ireland", "europe"),
    ("de", "Germany", "europe"),
    ("fr", "France", "europe"),
    ("nl", "Netherlands", "europe"),
    ("es", "Spain", "europe"),
    ("it", "Italy", "europe"),
    ("se", "Sweden", "europe"),
    ("pl", "Poland", "europe"),
    ("jp", "Japan", "asia-pacific"),
    ("kr", "South Korea", "asia-pacific"),
    ("sg", "Singapore", "asia-pacific"),
    ("in", "India", "asia-pacific"),
    ("au", "Australia", "asia-pacific"),
]

# (code, name, kind, country, city, latitude, longitude); the code's second part names the
# ISP or the exchange.
CDN_SITES: list[tuple[str, str, str, str, str, float, float]] = [
    ("isp-comcast-den1", "Comcast Denver 1", "cdn-isp", "US", "Denver", 39.74, -104.99),
    ("isp-comcast-chi1", "Comcast Chicago 1", "cdn-isp", "US", "Chicago", 41.88, -87.63),
    ("isp-att-dal1", "AT&T Dallas 1", "cdn-isp", "US", "Dallas", 32.78, -96.80),
    ("isp-verizon-nyc1", "Verizon New York 1", "cdn-isp", "US", "New York", 40.71, -74.01),
    ("isp-charter-stl1", "Charter St. Louis 1", "cdn-isp", "US", "St. Louis", 38.63, -90.20),
    ("ix-equinix-ash1", "Equinix Ashburn IX", "cdn-ix", "US", "Ashburn", 39.04, -77.49),
    ("ix-any2-lax1", "Any2 Los Angeles IX", "cdn-ix", "US", "Los Angeles", 34.05, -118.24),
    ("ix-six-sea1", "Seattle Internet Exchange", "cdn-ix", "US", "Seattle", 47.61, -122.33),
    ("isp-bell-tor1", "Bell Toronto 1", "cdn-isp", "CA", "Toronto", 43.65, -79.38),
    ("ix-torix-tor1", "TorIX Toronto", "cdn-ix", "CA", "Toronto", 43.64, -79.39),
    ("isp-telmex-mex1", "Telmex Mexico City 1", "cdn-isp", "MX", "Mexico City", 19.43, -99.13),
    ("isp-vivo-sao1", "Vivo São Paulo 1", "cdn-isp", "BR", "São Paulo", -23.55, -46.63),
    ("ix-ixbr-sao1", "IX.br São Paulo", "cdn-ix", "BR", "São Paulo", -23.54, -46.64),
    ("isp-bt-lon1", "BT London 1", "cdn-isp", "GB", "London", 51.51, -0.13),
    ("ix-linx-lon1", "LINX London", "cdn-ix", "GB", "London", 51.52, -0.08),
    ("isp-telekom-fra1", "Telekom Frankfurt 1", "cdn-isp", "DE", "Frankfurt", 50.11, 8.68),
    ("ix-decix-fra1", "DE-CIX Frankfurt", "cdn-ix", "DE", "Frankfurt", 50.10, 8.66),
    ("isp-orange-par1", "Orange Paris 1", "cdn-isp", "FR", "Paris", 48.86, 2.35),
    ("ix-franceix-par1", "France-IX Paris", "cdn-ix", "FR", "Paris", 48.87, 2.36),
    ("ix-amsix-ams1", "AMS-IX Amsterdam", "cdn-ix", "NL", "Amsterdam", 52.37, 4.90),
    ("isp-kpn-ams1", "KPN Amsterdam 1", "cdn-isp", "NL", "Amsterdam", 52.36, 4.89),
    ("isp-telefonica-mad1", "Telefónica Madrid 1", "cdn-isp", "ES", "Madrid", 40.42, -3.70),
    ("isp-tim-mil1", "TIM Milan 1", "cdn-isp", "IT", "Milan", 45.46, 9.19),
    ("ix-netnod-sto1", "Netnod Stockholm", "cdn-ix", "SE", "Stockholm", 59.33, 18.07),
    ("isp-orangepl-waw1", "Orange Polska Warsaw 1", "cdn-isp", "PL", "Warsaw", 52.23, 21.01),
    ("isp-ntt-tyo1", "NTT Tokyo 1", "cdn-isp", "JP", "Tokyo", 35.68, 139.69),
    ("ix-jpix-tyo1", "JPIX Tokyo", "cdn-ix", "JP", "Tokyo", 35.69, 139.70),
    ("isp-kt-sel1", "KT Seoul 1", "cdn-isp", "KR", "Seoul", 37.57, 126.98),
    ("ix-sgix-sin1", "SGIX Singapore", "cdn-ix", "SG", "Singapore", 1.35, 103.82),
    ("isp-jio-bom1", "Jio Mumbai 1", "cdn-isp", "IN", "Mumbai", 19.08, 72.88),
    ("isp-telstra-syd1", "Telstra Sydney 1", "cdn-isp", "AU", "Sydney", -33.87, 151.21),
    ("ix-ixau-syd1", "IX Australia Sydney", "cdn-ix", "AU", "Sydney", -33.86, 151.20),
]  # fmt: skip

# (code, name, country, city, latitude, longitude): the cloud regions the control plane runs in.
CLOUD_REGIONS: list[tuple[str, str, str, str, float, float]] = [
    ("us-east-1", "AWS US East (N. Virginia)", "US", "Ashburn", 39.04, -77.49),
    ("us-west-2", "AWS US West (Oregon)", "US", "Boardman", 45.84, -119.70),
    ("eu-west-1", "AWS Europe (Ireland)", "IE", "Dublin", 53.35, -6.26),
]

# (name, kind, ISP of the same name at a CDN site or "", latitude, longitude, UTC offset, weight)
CLIENT_GROUPS: list[tuple[str, str, str, float, float, float, float]] = [
    ("us-comcast", "isp", "comcast", 40.0, -95.0, -6, 3.0),
    ("us-att", "isp", "att", 33.0, -97.0, -6, 2.4),
    ("us-verizon", "isp", "verizon", 40.7, -74.0, -5, 2.2),
    ("us-charter", "isp", "charter", 38.6, -90.2, -6, 1.8),
    ("ca-bell", "isp", "bell", 43.7, -79.4, -5, 0.9),
    ("mx-telmex", "isp", "telmex", 19.4, -99.1, -6, 0.8),
    ("br-vivo", "isp", "vivo", -23.5, -46.6, -3, 1.2),
    ("gb-bt", "isp", "bt", 51.5, -0.1, 0, 1.3),
    ("gb-virgin", "isp", "", 53.5, -2.2, 0, 0.9),
    ("de-telekom", "isp", "telekom", 50.1, 8.7, 1, 1.4),
    ("de-vodafone", "isp", "", 51.2, 6.8, 1, 0.8),
    ("fr-orange", "isp", "orange", 48.9, 2.4, 1, 1.1),
    ("fr-free", "isp", "", 45.8, 4.8, 1, 0.7),
    ("nl-kpn", "isp", "kpn", 52.4, 4.9, 1, 0.5),
    ("es-telefonica", "isp", "telefonica", 40.4, -3.7, 1, 0.8),
    ("it-tim", "isp", "tim", 45.5, 9.2, 1, 0.7),
    ("se-telia", "isp", "", 59.3, 18.1, 1, 0.4),
    ("pl-orange", "isp", "orangepl", 52.2, 21.0, 1, 0.5),
    ("jp-ntt", "isp", "ntt", 35.7, 139.7, 9, 1.2),
    ("jp-kddi", "isp", "", 34.7, 135.5, 9, 0.8),
    ("kr-kt", "isp", "kt", 37.6, 127.0, 9, 0.7),
    ("sg-singtel", "isp", "", 1.35, 103.8, 8, 0.4),
    ("in-jio", "isp", "jio", 19.1, 72.9, 5.5, 1.0),
    ("au-telstra", "isp", "telstra", -33.9, 151.2, 10, 0.7),
]

MANUFACTURERS = [
    "Netflix",
    "Juniper",
    "Cisco",
    "Arista",
    "Opengear",
    "Server Technology",
    "Supermicro",
    "Dell",
    "Seagate",
    "Micron",
    "Samsung",
    "Mellanox",
]


def _items(prefix: str, count: int, role: str, maker: str, part: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix}{i}", "role": role, "manufacturer": maker, "part_id": part}
        for i in range(count)
    ]


def _disks(names: list[str], maker: str, part: str) -> list[dict[str, Any]]:
    return [{"name": n, "role": "disk", "manufacturer": maker, "part_id": part} for n in names]


HDDS = [f"sd{chr(ord('a') + i)}" for i in range(12)]
NVMES = [f"nvme{i}n1" for i in range(8)]


def _ifaces(names: list[str], kind: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, "type": kind, **extra} for n in names]


def _psus(count: int, draw: int) -> list[dict[str, Any]]:
    return [
        {"name": f"PSU{i + 1}", "type": "iec-60320-c14", "maximum_draw": draw} for i in range(count)
    ]


# Device models in the device-type library's format; `role`, `gbps` and `tb` are the
# demo's own keys (the device role, and each device's throughput and storage).
DEVICE_MODELS: list[dict[str, Any]] = [
    {
        "manufacturer": "Netflix",
        "model": "OCA Storage Gen4",
        "slug": "oca-storage-gen4",
        "part_number": "OCA-S4-360",
        "u_height": 2,
        "airflow": "front-to-rear",
        "role": "storage-appliance",
        "gbps": 100,
        "tb": 360,
        "platform": "FreeBSD",
        "interfaces": [
            *_ifaces(["eth0", "eth1"], "100gbase-x-qsfp28"),
            {"name": "mgmt0", "type": "1000base-t", "mgmt_only": True},
        ],
        "power-ports": _psus(2, 750),
        "inventory-items": [
            *_disks(HDDS, "Seagate", "ST18000NM000J"),
            *_disks(NVMES[:2], "Micron", "MTFDKCC3T8TFR"),
            *_items("cpu", 1, "cpu", "Supermicro", "AMD EPYC 7502P"),
            *_items("dimm", 8, "dimm", "Samsung", "M393A4K40DB3"),
            *_items("fan", 4, "fan", "Supermicro", "FAN-0166L4"),
            *_items("nic", 1, "nic", "Mellanox", "MCX516A-CDAT"),
        ],
    },
    {
        "manufacturer": "Netflix",
        "model": "OCA Storage Gen3",
        "slug": "oca-storage-gen3",
        "part_number": "OCA-S3-248",
        "u_height": 2,
        "airflow": "front-to-rear",
        "role": "storage-appliance",
        "gbps": 40,
        "tb": 248,
        "platform": "FreeBSD",
        "interfaces": [
            *_ifaces(["eth0", "eth1"], "40gbase-x-qsfpp"),
            {"name": "mgmt0", "type": "1000base-t", "mgmt_only": True},
        ],
        "power-ports": _psus(2, 650),
        "inventory-items": [
            *_disks(HDDS, "Seagate", "ST12000NM0008"),
            *_items("cpu", 1, "cpu", "Supermicro", "Intel Xeon E5-2650 v4"),
            *_items("dimm", 4, "dimm", "Samsung", "M393A2K40BB1"),
            *_items("fan", 4, "fan", "Supermicro", "FAN-0166L4"),
        ],
    },
    {
        "manufacturer": "Netflix",
        "model": "OCA Flash Gen3",
        "slug": "oca-flash-gen3",
        "part_number": "OCA-F3-24",
        "u_height": 1,
        "airflow": "front-to-rear",
        "role": "flash-appliance",
        "gbps": 190,
        "tb": 24,
        "platform": "FreeBSD",
        "interfaces": [
            *_ifaces(["eth0", "eth1"], "100gbase-x-qsfp28"),
            {"name": "mgmt0", "type": "1000base-t", "mgmt_only": True},
        ],
        "power-ports": _psus(2, 550),
        "inventory-items": [
            *_disks(NVMES[:6], "Micron", "MTFDKCC3T8TFR"),
            *_items("cpu", 1, "cpu", "Supermicro", "AMD EPYC 7713P"),
            *_items("dimm", 8, "dimm", "Samsung", "M393A8G40AB2"),
            *_items("fan", 6, "fan", "Supermicro", "FAN-0141L4"),
            *_items("nic", 1, "nic", "Mellanox", "MCX623106AN-CDAT"),
        ],
    },
    {
        "manufacturer": "Netflix",
        "model": "OCA Flash Gen2",
        "slug": "oca-flash-gen2",
        "part_number": "OCA-F2-14",
        "u_height": 1,
        "airflow": "front-to-rear",
        "role": "flash-appliance",
        "gbps": 100,
        "tb": 14,
        "platform": "FreeBSD",
        "interfaces": [
            *_ifaces(["eth0", "eth1"], "100gbase-x-qsfp28"),
            {"name": "mgmt0", "type": "1000base-t", "mgmt_only": True},
        ],
        "power-ports": _psus(2, 500),
        "inventory-items": [
            *_disks(NVMES[:4], "Samsung", "MZQLB3T8HALS"),
            *_items("cpu", 1, "cpu", "Supermicro", "Intel Xeon Gold 6230"),
            *_items("dimm", 6, "dimm", "Samsung", "M393A4K40CB2"),
            *_items("fan", 6, "fan", "Supermicro", "FAN-0141L4"),
        ],
    },
    {
        "manufacturer": "Juniper",
        "model": "MX204",
        "slug": "juniper-mx204",
        "part_number": "MX204-HW-BASE",
        "u_height": 1,
        "airflow": "front-to-rear",
        "role": "router",
        "gbps": 400,
        "platform": "Junos",
        "interfaces": [
            *_ifaces([f"et-0/0/{i}" for i in range(4)], "100gbase-x-qsfp28"),
            *_ifaces([f"xe-0/1/{i}" for i in range(8)], "10gbase-x-sfpp"),
            {"name": "fxp0", "type": "1000base-t", "mgmt_only": True},
        ],
        "console-ports": [{"name": "con", "type": "rj-45"}],
        "power-ports": _psus(2, 650),
        "inventory-items": _items("fan", 3, "fan", "Juniper", "JNP-FAN-1RU"),
    },
    {
        "manufacturer": "Juniper",
        "model": "MX10003",
        "slug": "juniper-mx10003",
        "part_number": "MX10003-BASE",
        "u_height": 3,
        "airflow": "front-to-rear",
        "role": "router",
        "gbps": 2400,
        "platform": "Junos",
        "interfaces": [
            *_ifaces([f"et-0/0/{i}" for i in range(12)], "100gbase-x-qsfp28"),
            {"name": "fxp0", "type": "1000base-t", "mgmt_only": True},
        ],
        "console-ports": [{"name": "con", "type": "rj-45"}],
        "power-ports": _psus(4, 2200),
        "inventory-items": _items("fan", 6, "fan", "Juniper", "JNP-FAN-3RU"),
    },
    {
        "manufacturer": "Cisco",
        "model": "NCS-55A1-24H",
        "slug": "cisco-ncs-55a1-24h",
        "part_number": "NCS-55A1-24H",
        "u_height": 1,
        "airflow": "front-to-rear",
        "role": "router",
        "gbps": 2400,
        "platform": "IOS-XR",
        "interfaces": [
            *_ifaces([f"HundredGigE0/0/0/{i}" for i in range(24)], "100gbase-x-qsfp28"),
            {"name": "MgmtEth0/RP0/CPU0/0", "type": "1000base-t", "mgmt_only": True},
        ],
        "console-ports": [{"name": "con", "type": "rj-45"}],
        "power-ports": _psus(2, 1100),
        "inventory-items": _items("fan", 4, "fan", "Cisco", "NC55-A1-FAN-FW"),
    },
    {
        "manufacturer": "Arista",
        "model": "DCS-7280SR3-48YC8",
        "slug": "arista-7280sr3-48yc8",
        "part_number": "DCS-7280SR3-48YC8",
        "u_height": 1,
        "airflow": "front-to-rear",
        "role": "switch",
        "platform": "EOS",
        "interfaces": [
            *_ifaces([f"Ethernet{i}" for i in range(1, 49)], "25gbase-x-sfp28"),
            *_ifaces([f"Ethernet{i}/1" for i in range(49, 57)], "100gbase-x-qsfp28"),
            {"name": "Management1", "type": "1000base-t", "mgmt_only": True},
        ],
        "console-ports": [{"name": "con", "type": "rj-45"}],
        "power-ports": _psus(2, 650),
        "inventory-items": _items("fan", 4, "fan", "Arista", "FAN-7000-F"),
    },
    {
        "manufacturer": "Arista",
        "model": "DCS-7050CX3-32S",
        "slug": "arista-7050cx3-32s",
        "part_number": "DCS-7050CX3-32S",
        "u_height": 1,
        "airflow": "front-to-rear",
        "role": "switch",
        "platform": "EOS",
        "interfaces": [
            *_ifaces([f"Ethernet{i}/1" for i in range(1, 33)], "100gbase-x-qsfp28"),
            {"name": "Management1", "type": "1000base-t", "mgmt_only": True},
        ],
        "console-ports": [{"name": "con", "type": "rj-45"}],
        "power-ports": _psus(2, 500),
        "inventory-items": _items("fan", 4, "fan", "Arista", "FAN-7000-F"),
    },
    {
        "manufacturer": "Opengear",
        "model": "CM8148",
        "slug": "opengear-cm8148",
        "part_number": "CM8148-10-DAC",
        "u_height": 1,
        "role": "console-server",
        "platform": "Opengear",
        "interfaces": [{"name": "eth0", "type": "1000base-t", "mgmt_only": True}],
        "console-server-ports": [{"name": f"port{i}", "type": "rj-45"} for i in range(1, 49)],
        "power-ports": _psus(2, 40),
    },
    {
        "manufacturer": "Server Technology",
        "model": "PRO2 C2WG36",
        "slug": "servertech-pro2-c2wg36",
        "part_number": "C2WG36TE-DQME2M66",
        "u_height": 0,
        "role": "pdu",
        "interfaces": [{"name": "net", "type": "100base-tx", "mgmt_only": True}],
        "power-ports": [{"name": "input", "type": "iec-60309-3p-n-e-6h", "maximum_draw": 17300}],
        "power-outlets": [
            {"name": f"AA{i}", "type": "iec-60320-c13", "power_port": "input"} for i in range(1, 25)
        ],
    },
    {
        "manufacturer": "Supermicro",
        "model": "SYS-1029U-TR4",
        "slug": "supermicro-sys-1029u-tr4",
        "part_number": "SYS-1029U-TR4",
        "u_height": 1,
        "airflow": "front-to-rear",
        "role": "server",
        "platform": "Linux",
        "interfaces": [
            *_ifaces(["eno1", "eno2"], "10gbase-t"),
            {"name": "ipmi", "type": "1000base-t", "mgmt_only": True},
        ],
        "power-ports": _psus(2, 750),
        "inventory-items": [
            *_disks(["sda", "sdb"], "Samsung", "MZ7LH960HAJR"),
            *_items("cpu", 2, "cpu", "Supermicro", "Intel Xeon Silver 4214"),
            *_items("fan", 6, "fan", "Supermicro", "FAN-0154L4"),
        ],
    },
]

# Metrics each kind of device exports: (metric, typical value).
APPLIANCE_METRICS = [
    ("oca_throughput_gbps", 60.0),
    ("oca_http_5xx_rate", 2.0),
    ("oca_cpu_utilisation", 0.45),
    ("oca_disk_await_ms", 8.0),
    ("oca_tcp_retransmits_rate", 120.0),
    ("oca_cache_hit_ratio", 0.93),
    ("oca_active_connections", 18000.0),
    ("oca_nic_rx_gbps", 4.0),
]
ROUTER_METRICS = [
    ("router_interface_utilisation", 0.55),
    ("router_bgp_prefixes", 950000.0),
    ("router_cpu_utilisation", 0.2),
    ("router_optic_rx_dbm", -3.0),
]
SWITCH_METRICS = [
    ("switch_port_errors_rate", 0.4),
    ("switch_cpu_utilisation", 0.15),
    ("switch_utilisation", 0.35),
]
SITE_METRICS = [
    ("cdn_site_egress_gbps", 900.0),
    ("cdn_rebuffer_ratio", 0.004),
    ("cdn_play_start_failures_rate", 3.0),
    ("cdn_client_rtt_ms", 18.0),
    ("cdn_steering_misses_rate", 5.0),
]
SERVICE = "open-connect"
