"""Base pydantic schemas shared by every domain's API."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


# `defer_build`: a schema's validator is built when it is first used, not when its module is
# imported. A command loads its domain's schemas module and uses one or two of them; building
# them all made every CLI call pay for every schema of the domain.


class Schema(BaseModel):
    """Input schemas reject unknown fields, so typos fail loudly instead of being ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


class ReadSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True, defer_build=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    count: int | None = Field(default=None, description="Total matching rows (offset paging).")
    next: str | None = Field(default=None, description="Cursor for the next page, if any.")


class Message(BaseModel):
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
