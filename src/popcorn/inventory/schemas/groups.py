"""Input and output shapes of site groups (NetBox's functional grouping of sites) and of
locations (rooms, floors or cages nested within one site).

Kept beside schemas.py (one shape per type, shared by the API, the CLI and
imports); a group nests like a region and a site names at most one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from popcorn.inventory.schemas.reads import Stamped
from popcorn.inventory.schemas.values import Name, OptName, Slug, Text200
from popcorn.schemas import Schema

LOCATION_STATUSES = ("planned", "staging", "active", "decommissioning", "retired")


class SiteGroupIn(Schema):
    id: int | None = None
    slug: Slug
    name: Name
    parent: OptName = Field(default=None, description="Parent site group slug or name.")
    description: Text200 = ""


class SiteGroupRead(Stamped):
    slug: str
    name: str
    parent: str | None
    parent_id: int | None
    description: str


class LocationIn(Schema):
    id: int | None = None
    site: Name = Field(description="Site code.")
    slug: Slug
    name: Name
    parent: OptName = Field(default=None, description="Parent location slug or name, same site.")
    status: Literal[LOCATION_STATUSES] = "active"  # type: ignore[valid-type]
    description: Text200 = ""


class LocationRead(Stamped):
    site: str
    site_id: int
    slug: str
    name: str
    parent: str | None
    parent_id: int | None
    status: str
    description: str
