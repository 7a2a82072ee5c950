"""Base pydantic schemas shared by every domain's API."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Schema(BaseModel):
    """Input schemas reject unknown fields, so typos fail loudly instead of being ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReadSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    count: int | None = Field(default=None, description="Total matching rows (offset paging).")
    next: str | None = Field(default=None, description="Cursor for the next page, if any.")


class Message(BaseModel):
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
