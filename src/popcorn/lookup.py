"""Finding one object by what a user typed: its name, or its numeric id.

Every domain answers `popcorn <domain> show X` and `GET /…/X` the same way: a
name wins, and a reference made only of ASCII digits that fits a 64-bit id is
tried as an id when no name matches. So a token named "2024" can still be
revoked by name, and `٣` or `9223372036854775808` are "not found", never a
database overflow.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput, NotFound

MAX_ID = 2**63 - 1
T = TypeVar("T")


def parse_id(raw: object) -> int | None:
    """An id from user input (ASCII digits within a signed 64-bit integer), else None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw <= MAX_ID else None
    text = str(raw).strip()
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def require_id(raw: object, *, field: str = "id") -> int:
    """An id from a path or argument, or a 422 naming the field."""
    value = parse_id(raw)
    if value is None:
        raise InvalidInput(
            f"{field}: must be a whole number from 0 to {MAX_ID}", details={field: str(raw)}
        )
    return value


def get_by_ref(
    session: Session,
    model: type[T],
    ref: int | str,
    *,
    label: str,
    name_attr: str = "name",
    lock: bool = False,
) -> T:
    """The row whose name is `ref`, else whose id is `ref`; a 404 naming `label` otherwise."""
    column = getattr(model, name_attr)
    text = str(ref).strip()
    stmt = select(model).where(column == text)
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        ident = parse_id(ref)
        if ident is not None:
            row = session.get(model, ident, with_for_update=lock)
    if row is None:
        raise NotFound(f"no {label} {text!r}", details={label.replace(" ", "_"): text})
    return row


def get_by_id(session: Session, model: type[T], ident: object, *, label: str) -> T:
    """The row with this id; ids that cannot exist (too big, not digits) are simply not found."""
    value = parse_id(ident)
    row: Any = session.get(model, value) if value is not None else None
    if row is None:
        raise NotFound(f"no {label} {ident!r}", details={"id": str(ident)})
    typed: T = row
    return typed


def int_value(raw: str, name: str) -> int:
    """A 64-bit integer from ASCII digits in a query string, else a 422 naming the field."""
    if not re.fullmatch(r"-?[0-9]{1,19}", raw.strip()) or not (-MAX_ID - 1 <= int(raw) <= MAX_ID):
        raise InvalidInput(
            f"{name}: {raw!r} is not a whole number within 64 bits", details={name: raw}
        )
    return int(raw)
