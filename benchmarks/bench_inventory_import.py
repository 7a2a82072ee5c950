"""Inventory on real-world data: a device-type library as it is, and a NetBox dump.

In one run, on the embedded SQLite, each import in its own process:

1. generates a device-type library checkout (device types and module types in the
   community layout) where, as in the real library, some files carry fields newer
   than Popcorn knows (warned, dropped) and a few are broken (a front port naming a
   missing rear port: skipped); imports it file by file with `popcorn inventory
   import` (seconds, files/s, warnings), and beside it the same library without the
   broken files with `--strict`, the all-or-nothing import that does the same writes;
2. generates a NetBox 4.x `manage.py dumpdata` file: regions, sites, device types
   with templates, N devices with their interfaces, console and power ports, a cable
   between each pair of devices and an address on each device's first interface;
   imports it with `popcorn inventory import-netbox`, imports it again (nothing
   changes), and imports the same dump through the SQLAlchemy ORM written as a
   careful user would (cached lookups, a flush per device and per device's parts,
   one audit record), into a fresh database.

    .venv/bin/python benchmarks/bench_inventory_import.py \
        [--types 3000] [--devices 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_inventory import MAKERS, PYTHON, SPEEDS, popcorn, run_with_rss, write_library
from common import LoadWatch, git_revision, machine, scratch_dir, write_result

ORM_BASELINES = str(Path(__file__).with_name("inventory_orm_baselines.py"))
ROLES = ["oca-storage", "oca-flash", "core-router", "tor-switch"]


# --- the library -----------------------------------------------------------------


def age_library(root: Path, every: int, broken: int) -> list[str]:
    """Make a generated library look like the real one: newer fields, a typo, broken files.

    Returns the files broken.
    """
    files = sorted((root / "device-types").rglob("*.yaml"))
    for index, path in enumerate(files):
        if index % every:
            continue
        text = path.read_text()
        text = text.replace("\nu_height:", "\nis_powered: true\nairflow_note: sealed\nu_height:", 1)
        path.write_text(text + "descripton: a typo'd key\n")
    broken_files = []
    for index in range(broken):
        path = root / "device-types" / "Generic" / f"broken-panel-{index}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "---\nmanufacturer: Generic\n"
            f"model: Broken panel {index}\nslug: generic-broken-panel-{index}\n"
            "u_height: 1\nis_full_depth: false\n"
            "front-ports:\n  - name: '1'\n    type: lc\n    rear_port: R9\n"
            "rear-ports:\n  - name: R1\n    type: mpo\n    positions: 12\n"
        )
        broken_files.append(str(path.relative_to(root)))
    return broken_files


def run_allowing(args: list[str], env: dict[str, str], codes: tuple[int, ...]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode not in codes:
        raise SystemExit(f"{' '.join(args[:6])} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started, proc.stdout


# --- the NetBox dump ------------------------------------------------------------------


def rec(label: str, pk: Any, /, **fields: Any) -> dict[str, Any]:
    return {"model": label, "pk": pk, "fields": fields}


def netbox_dump(devices: int, sites: int, interfaces: int, seed: int = 5) -> list[dict[str, Any]]:
    """A NetBox 4.x dumpdata list with NetBox's own field names."""
    rng = random.Random(seed)
    ct = {"dcim.interface": 4, "dcim.device": 3, "dcim.consoleport": 5, "dcim.powerport": 6}
    out = [
        rec("contenttypes.contenttype", pk, app_label=n.split(".")[0], model=n.split(".")[1])
        for n, pk in ct.items()
    ]
    out += [
        rec("users.user", 1, username="admin"),
        rec("auth.permission", 1, name="x", codename="x"),
    ]
    out += [rec("dcim.region", 1, name="Earth", slug="earth", parent=None, description="")]
    out += [
        rec("dcim.region", 2 + i, name=f"Region {i}", slug=f"region-{i}", parent=1, description="")
        for i in range(10)
    ]
    out += [
        rec(
            "dcim.site",
            1 + i,
            name=f"Site {i}",
            slug=f"site-{i:04d}",
            status="active",
            region=2 + i % 10,
            tenant=None,
            description="",
            custom_field_data={},
        )
        for i in range(sites)
    ]
    out += [
        rec("dcim.manufacturer", 1 + i, name=name, slug=name.lower(), description="")
        for i, name in enumerate(MAKERS)
    ]
    out += [
        rec("dcim.devicerole", 1 + i, name=r, slug=r, color="000000") for i, r in enumerate(ROLES)
    ]
    types = 40
    template = 0
    for t in range(types):
        speed = SPEEDS[t % len(SPEEDS)][0]
        out.append(
            rec(
                "dcim.devicetype",
                1 + t,
                manufacturer=1 + t % len(MAKERS),
                model=f"NB-{t:03d}",
                slug=f"nb-{t:03d}",
                part_number="",
                u_height="2.0",
                is_full_depth=True,
                subdevice_role="",
                airflow="front-to-rear",
                weight="20.5",
                weight_unit="kg",
                description="",
                comments="",
                custom_field_data={},
            )
        )
        for i in range(interfaces):
            template += 1
            out.append(
                rec(
                    "dcim.interfacetemplate",
                    template,
                    device_type=1 + t,
                    module_type=None,
                    name=f"eth{i}",
                    label="",
                    type=speed,
                    enabled=True,
                    mgmt_only=False,
                    description="",
                )
            )
        out.append(
            rec(
                "dcim.consoleporttemplate",
                1 + t,
                device_type=1 + t,
                module_type=None,
                name="console",
                label="",
                type="rj-45",
                description="",
            )
        )
        for p in range(2):
            out.append(
                rec(
                    "dcim.powerporttemplate",
                    1 + 2 * t + p,
                    device_type=1 + t,
                    module_type=None,
                    name=f"PSU{p}",
                    label="",
                    type="iec-60320-c14",
                    maximum_draw=800,
                    allocated_draw=450,
                    description="",
                )
            )
    iface = pport = cable = term = 0
    for d in range(devices):
        dtype = 1 + rng.randrange(types)
        site = 1 + d % sites
        out.append(
            rec(
                "dcim.device",
                1 + d,
                name=f"dev{d:06d}",
                device_type=dtype,
                role=1 + d % len(ROLES),
                tenant=None,
                platform=None,
                serial=f"SN{d:08d}",
                asset_tag=None,
                site=site,
                location=None,
                rack=None,
                position=None,
                face="",
                status="active",
                airflow="",
                primary_ip4=1 + d,
                primary_ip6=None,
                description="",
                comments="",
                custom_field_data={},
            )
        )
        for i in range(interfaces):
            iface += 1
            out.append(
                rec(
                    "dcim.interface",
                    iface,
                    device=1 + d,
                    module=None,
                    name=f"eth{i}",
                    label="",
                    type=SPEEDS[(dtype - 1) % len(SPEEDS)][0],
                    enabled=True,
                    mgmt_only=False,
                    mtu=9000 if i else None,
                    speed=None,
                    description="",
                    custom_field_data={},
                )
            )
        out.append(
            rec(
                "dcim.consoleport",
                1 + d,
                device=1 + d,
                module=None,
                name="console",
                label="",
                type="rj-45",
                description="",
            )
        )
        for p in range(2):
            pport += 1
            out.append(
                rec(
                    "dcim.powerport",
                    pport,
                    device=1 + d,
                    module=None,
                    name=f"PSU{p}",
                    label="",
                    type="iec-60320-c14",
                    maximum_draw=800,
                    allocated_draw=450,
                    description="",
                )
            )
        out.append(
            rec(
                "ipam.ipaddress",
                1 + d,
                address=f"10.{d // 65536}.{d // 256 % 256}.{d % 256}/16",
                vrf=None,
                tenant=None,
                status="active",
                role="",
                assigned_object_type=4,
                assigned_object_id=iface - interfaces + 1,
                dns_name="",
                description="",
            )
        )
        if d % 2:
            cable += 1
            out.append(
                rec(
                    "dcim.cable",
                    cable,
                    type="smf",
                    status="connected",
                    tenant=None,
                    label=f"C{cable:06d}",
                    color="",
                    length=None,
                    length_unit="",
                    description="",
                    comments="",
                    custom_field_data={},
                )
            )
            for end, target in (("A", iface - 2 * interfaces + 2), ("B", iface - interfaces + 2)):
                term += 1
                out.append(
                    rec(
                        "dcim.cabletermination",
                        term,
                        cable=cable,
                        cable_end=end,
                        termination_type=4,
                        termination_id=target,
                    )
                )
    return out


# --- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", type=int, default=3_000, help="device types in the library")
    parser.add_argument("--every", type=int, default=20, help="one file in N carries newer fields")
    parser.add_argument("--broken", type=int, default=3, help="broken files in the library")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--interfaces", type=int, default=8, help="per device")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="turns of the NetBox imports")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    work = scratch_dir("bench-inventory-import-", args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    base = {**os.environ, "POPCORN_LOG_LEVEL": "WARNING"}
    base.pop("POPCORN_DATABASE_URL", None)
    homes = {n: {**base, "POPCORN_HOME": str(work / n)} for n in ("lib", "strict", "nb", "orm")}
    for env in homes.values():
        subprocess.run(popcorn("db", "upgrade"), env=env, check=True, capture_output=True)
    watch = LoadWatch()
    print(f"working in {work}", flush=True)

    library = work / "devicetype-library"
    device_types, module_types = write_library(library, args.types)
    broken = age_library(library, args.every, args.broken)
    files = device_types + module_types + len(broken)
    lib_seconds, out = run_allowing(
        popcorn("inventory", "import", str(library), "--json"), homes["lib"], (1,)
    )
    lib = json.loads(out)
    print(
        f"library: {files} files in {lib_seconds:.1f}s, {len(lib['warnings'])} warnings, "
        f"skipped {lib['skipped_files']}",
        flush=True,
    )
    clean = work / "devicetype-library-clean"
    shutil.copytree(library, clean)
    for name in broken:
        (clean / name).unlink()
    for path in clean.rglob("*.yaml"):  # what --strict accepts: the fields Popcorn knows
        text = (
            path.read_text()
            .replace("descripton: a typo'd key\n", "")
            .replace("airflow_note: sealed\n", "")
        )
        path.write_text(text)
    strict_seconds, out = run_allowing(
        popcorn("inventory", "import", str(clean), "--strict", "--json"), homes["strict"], (0,)
    )
    strict = json.loads(out)
    print(f"strict library: {strict_seconds:.1f}s", flush=True)

    dump_path = work / "netbox.json"
    started = time.perf_counter()
    records = netbox_dump(args.devices, args.sites, args.interfaces)
    dump_path.write_text(json.dumps(records))
    size_mb = dump_path.stat().st_size / 2**20
    print(
        f"dump: {len(records):,} records ({size_mb:.0f} MiB) "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    del records
    # Popcorn and the baseline take turns, each into a fresh database, `--repeat` times: on
    # a shared machine the load moves, and the median of alternating runs is the fair figure.
    times: dict[str, list[float]] = {"nb": [], "again": [], "orm": []}
    for turn in range(args.repeat):
        if turn:
            for name in ("nb", "orm"):
                homes[name] = {**base, "POPCORN_HOME": str(work / f"{name}{turn}")}
                subprocess.run(
                    popcorn("db", "upgrade"), env=homes[name], check=True, capture_output=True
                )
        nb_seconds, nb_rss, out = run_with_rss(
            popcorn("inventory", "import-netbox", str(dump_path), "--json"), homes["nb"]
        )
        nb = json.loads(out)
        print(f"import-netbox: {nb_seconds:.1f}s, {nb_rss:.0f} MiB: {nb['totals']}", flush=True)
        again_seconds, again_rss, out = run_with_rss(
            popcorn("inventory", "import-netbox", str(dump_path), "--json"), homes["nb"]
        )
        again = json.loads(out)
        print(f"again: {again_seconds:.1f}s: {again['totals']}", flush=True)
        addresses = "ipam.ipaddress" in nb["mapped"]
        orm_args = [PYTHON, ORM_BASELINES, "netbox", str(dump_path), str(args.devices)]
        orm_seconds, orm_rss, out = run_with_rss(
            orm_args if addresses else [*orm_args, "no-addresses"], homes["orm"]
        )
        orm = json.loads(out)
        print(f"ORM: {orm['seconds']:.1f}s for {orm['objects']:,} objects", flush=True)
        for name, seconds in (("nb", nb_seconds), ("again", again_seconds), ("orm", orm_seconds)):
            times[name].append(seconds)
    watch.stop()
    nb_seconds, again_seconds, orm_seconds = (median(times[n]) for n in ("nb", "again", "orm"))
    spread = "; ".join(
        f"{label} {min(times[n]):.1f}-{max(times[n]):.1f} s"
        for n, label in (("nb", "import"), ("again", "again"), ("orm", "baseline"))
    )

    written = nb["totals"]["create"]
    lines = [
        "## Inventory: real-world imports",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}, embedded SQLite (WAL), "
        f"commit {git_revision()}; {watch.note()}.",
        "`.venv/bin/python benchmarks/bench_inventory_import.py"
        + "".join(" " + a for a in sys.argv[1:])
        + "`",
        "",
        "### A device-type library as it is (`popcorn inventory import DIR`)",
        "",
        "| what | files | seconds | files/s | warnings | skipped files |",
        "|---|---:|---:|---:|---:|---:|",
        f"| file by file: {device_types:,} device types + {module_types:,} module types + "
        f"{len(broken)} broken, one file in {args.every} with newer or typo'd fields | {files:,} | "
        f"{lib_seconds:.1f} | {files / lib_seconds:,.0f} | {len(lib['warnings']):,} | "
        f"{len(lib['skipped_files'])} |",
        f"| baseline: the same library without the broken files or unknown fields, `--strict` "
        f"(all or nothing, the same writes) | {files - len(broken):,} | {strict_seconds:.1f} | "
        f"{(files - len(broken)) / strict_seconds:,.0f} | 0 | 0 |",
        "",
        f"Reading file by file costs {lib_seconds / strict_seconds:.2f}x the all-or-nothing import "
        f"of the same files (each command timed end to end, process start included; "
        f"{strict['totals']['create']:,} objects written by the strict import).",
        "",
        "### A NetBox dump (`popcorn inventory import-netbox`)",
        "",
        f"NetBox 4.x dumpdata, {size_mb:.0f} MiB: {args.devices:,} devices on {args.sites} sites, "
        f"{args.interfaces} interfaces, a console port and two power ports each, "
        f"{args.devices // 2:,} cables, {args.devices:,} addresses"
        + ("" if addresses else " (read for the devices' primary IPv4; not imported as objects)")
        + ".",
        "",
        "| what | objects written | seconds | objects/s | peak memory |",
        "|---|---:|---:|---:|---:|",
        f"| `popcorn inventory import-netbox` | {written:,} | {nb_seconds:.1f} | "
        f"{written / nb_seconds:,.0f} | {nb_rss:,.0f} MiB |",
        f"| the same dump again (nothing changes) | "
        f"{again['totals']['create'] + again['totals']['update']} | {again_seconds:.1f} | "
        f"{again['totals']['unchanged'] / again_seconds:,.0f} compared/s | {again_rss:,.0f} MiB |",
        f"| baseline: careful SQLAlchemy ORM, the same objects | {orm['objects']:,} | "
        f"{orm_seconds:.1f} | {orm['objects'] / orm_seconds:,.0f} | {orm_rss:,.0f} MiB |",
        "",
        f"Popcorn: {orm_seconds / nb_seconds:.1f}x the ORM baseline's speed, end to end "
        "(both read the JSON in their process). Popcorn's count includes the custom fields "
        "it declares and the parts device templates add and the dump then confirms.",
        "",
        f"Seconds are the median of {args.repeat} turns, Popcorn and the baseline alternating, "
        f"each into a fresh database (range: {spread}); peak memory is the last turn's.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        print(f"wrote {write_result('inventory-import', chr(10).join(lines))}")


if __name__ == "__main__":
    main()
