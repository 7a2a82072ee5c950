"""Attacks on the inventory API that cost memory or answered 500, now refused in the envelope."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from popcorn.audit import AuditRecord
from popcorn.db import session_scope
from popcorn.inventory import models as m

BIG = str(2**63)


def _lol(levels: int = 8) -> str:
    """A "billion laughs": each level repeats the previous one nine times (9**8 at the top)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnopqrstuvwxyz"
    for level in range(1, levels):
        prev, name = names[level - 1], names[level]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append(f"regions: [*{names[levels - 1]}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_import_is_refused_quickly(api: Any) -> None:
    attack = _lol()
    assert len(attack) < 400
    started = time.perf_counter()
    response = api.post(
        "/api/v1/inventory/import?format=yaml&filename=lol.yaml",
        data=attack,
        content_type="application/yaml",
        role="operator",
    )
    assert time.perf_counter() - started < 5
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert "aliases" in error["message"] and "nothing was written" in error["message"]
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(m.Region)) == 0
        assert session.scalar(select(func.count()).where(AuditRecord.action == "import")) == 0


def test_deeply_nested_yaml_import_is_a_422(api: Any) -> None:
    response = api.post(
        "/api/v1/inventory/import?format=yaml",
        data="regions: " + "[" * 5000 + "]" * 5000 + "\n",
        content_type="application/yaml",
        role="operator",
    )
    assert response.status_code == 422
    assert "nothing was written" in response.json["error"]["message"]


def test_yaml_with_a_few_aliases_still_imports(api: Any) -> None:
    doc = """
regions:
  - &eu {slug: europe, name: Europe}
sites:
  - {code: ams1, name: Amsterdam, region: europe}
  - {code: ams2, name: Amsterdam 2, region: europe}
"""
    response = api.post(
        "/api/v1/inventory/import?format=yaml",
        data=doc,
        content_type="application/yaml",
        role="operator",
    )
    assert response.status_code == 200, response.json
    assert response.json["counts"]["sites"]["create"] == 2


@pytest.mark.parametrize(
    "url",
    [
        f"/api/v1/inventory/devices/{BIG}",
        "/api/v1/inventory/devices/٣",
        "/api/v1/inventory/devices/²",
        f"/api/v1/inventory/sites/{BIG}",
        f"/api/v1/inventory/components/{BIG}",
        f"/api/v1/inventory/devices/{BIG}/history",
        f"/api/v1/inventory/devices/{BIG}/journal",
        f"/api/v1/inventory/interfaces/{BIG}/trace",
        f"/api/v1/inventory/devices?id={BIG}",
        f"/api/v1/inventory/devices?id__gt={BIG}",
        f"/api/v1/inventory/devices?site_id__in=1,{BIG}",
        f"/api/v1/inventory/components?device_id={BIG}",
        f"/api/v1/inventory/regions?parent_id=-{BIG}0",
        f"/api/v1/inventory/devices?offset={BIG}",
        f"/api/v1/inventory/export?type=devices&format=json&id={BIG}",
        f"/api/v1/inventory/scope?site={BIG}",
        "/api/v1/inventory/scope?site=٣",
        f"/api/v1/inventory/scope?device={BIG}",
    ],
)
def test_out_of_range_and_unicode_ids_are_4xx(world: Any, api: Any, url: str) -> None:
    response = api.get(url, role="viewer")
    assert response.status_code in (404, 422), (url, response.status_code)
    assert set(response.json["error"]) >= {"code", "message", "details"}


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("post", f"/api/v1/inventory/components/{BIG}/fail", {"reason": "x"}),
        ("post", f"/api/v1/inventory/devices/{BIG}/status", {"status": "active"}),
        ("patch", f"/api/v1/inventory/devices/{BIG}", {"role": "edge"}),
        ("delete", f"/api/v1/inventory/devices/{BIG}", None),
        ("delete", "/api/v1/inventory/devices/bulk", [2**63]),
        ("patch", "/api/v1/inventory/devices/bulk", [{"id": 2**63, "role": "edge"}]),
        ("patch", "/api/v1/inventory/components/bulk", [{"id": 2**63, "status": "ok"}]),
    ],
)
def test_out_of_range_ids_in_changes_are_4xx(
    world: Any, api: Any, method: str, url: str, body: Any
) -> None:
    response = getattr(api, method)(url, json=body, role="operator")
    assert response.status_code in (404, 422), (url, response.status_code, response.json)
    assert "error" in response.json


def test_unicode_digits_are_names_not_ids(world: Any, api: Any) -> None:
    """ "٣" is not device 3: a name lookup that finds nothing."""
    device = api.get("/api/v1/inventory/devices/oca-ams1-01", role="viewer").json
    assert api.get(f"/api/v1/inventory/devices/{device['id']}", role="viewer").status_code == 200
    arabic = str(device["id"]).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert api.get(f"/api/v1/inventory/devices/{arabic}", role="viewer").status_code == 404
