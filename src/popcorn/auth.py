"""API tokens and roles.

Tokens are random 256-bit secrets shown once; only their SHA-256 is stored, so
a leaked database does not leak working credentials.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field
from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from popcorn.audit import record_change
from popcorn.db import Base, UTCDateTime, utcnow
from popcorn.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from popcorn.lookup import get_by_ref
from popcorn.schemas import ReadSchema, Schema

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}
TOKEN_PREFIX = "pop_"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TokenCreate(Schema):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@:-]+$")
    role: str = Field(pattern="^(viewer|operator|admin)$")
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class TokenRead(ReadSchema):
    id: int
    name: str
    role: str
    hint: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The secret; shown only this once.")


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    role: str

    def allows(self, needed: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    *, session: Session, name: str, role: str, expires_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret (the only time the secret exists)."""
    if role not in ROLE_RANK:
        raise InvalidInput(f"unknown role {role!r}", details={"role": list(ROLES)})
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"a token named {name!r} already exists", details={"name": name})
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    from popcorn.context import current_actor

    token = ApiToken(
        name=name,
        role=role,
        token_hash=hash_token(raw),
        hint=raw[:8] + "…",
        created_by=current_actor().name,
        expires_at=utcnow() + timedelta(days=expires_days) if expires_days else None,
    )
    session.add(token)
    session.flush()
    record_change(session, "create", "token", token.id, after={"name": name, "role": role})
    return token, raw


def list_tokens(*, session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def get_token(*, session: Session, ref: str | int) -> ApiToken:
    """A token by name, or by id when no token has that name (so "2024" is a name too)."""
    return get_by_ref(session, ApiToken, ref, label="token")


def revoke_token(*, session: Session, ref: str | int) -> ApiToken:
    token = get_token(session=session, ref=ref)
    if token.revoked_at is not None:
        raise Conflict(f"token {token.name!r} is already revoked")
    token.revoked_at = utcnow()
    record_change(
        session, "revoke", "token", token.id, before={"revoked": False}, after={"revoked": True}
    )
    return token


def authenticate(*, session: Session, raw: str | None) -> Principal:
    """Resolve a bearer secret to its principal, or raise 401."""
    if not raw:
        raise Unauthorized("missing bearer token", details={"header": "Authorization"})
    # Columns, not the entity: this runs on every request.
    token = session.execute(
        select(
            ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.revoked_at, ApiToken.expires_at
        ).where(ApiToken.token_hash == hash_token(raw))
    ).first()
    now = utcnow()
    if token is None:
        raise Unauthorized("invalid token")
    if token.revoked_at is not None:
        raise Unauthorized("token revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthorized("token expired")
    return Principal(token_id=token.id, name=token.name, role=token.role)


_last_touch: dict[int, datetime] = {}


def touch_due(token_id: int) -> bool:
    """Last use is recorded at most once a minute per process, so reads stay reads."""
    previous = _last_touch.get(token_id)
    return previous is None or utcnow() - previous >= timedelta(minutes=1)


def touch_token(*, session: Session, token_id: int) -> None:
    now = utcnow()
    _last_touch[token_id] = now
    token = session.get(ApiToken, token_id)
    if token is not None:
        token.last_used_at = now


def require(principal: Principal, needed: str) -> None:
    if not principal.allows(needed):
        raise Forbidden(
            f"role {principal.role!r} may not do this; {needed!r} needed",
            details={"role": principal.role, "needed": needed},
        )
