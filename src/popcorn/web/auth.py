"""Console sessions: a token exchanged for a signed cookie, CSRF tokens on every form.

The cookie only names a session; the session itself lives server-side (in the
installation's Redis) until sign-out or SESSION_TTL of inactivity, so a copied
cookie stops working the moment its owner signs out.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, g, redirect, request, session, url_for

from popcorn import auth, jobs
from popcorn.context import Actor, set_actor
from popcorn.db import session_scope
from popcorn.errors import Unauthorized

F = TypeVar("F", bound=Callable[..., Any])
SESSION_TTL = 12 * 3600  # seconds of inactivity before a console session ends


def _session_key(sid: str) -> str:
    return f"popcorn:console-session:{sid}"


def sign_in(raw_token: str) -> auth.Principal:
    with session_scope(readonly=True) as db:
        principal = auth.authenticate(session=db, raw=raw_token.strip())
    sign_out()  # a new session id and CSRF token: nothing carries over from before sign-in
    sid = secrets.token_urlsafe(32)
    jobs.get_redis().set(_session_key(sid), str(principal.token_id), ex=SESSION_TTL)
    session["sid"] = sid
    session["token_id"] = principal.token_id
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = False
    return principal


def sign_out() -> None:
    """End the session server-side, so its cookie is worthless even if it was copied."""
    sid = session.get("sid")
    if isinstance(sid, str):
        jobs.get_redis().delete(_session_key(sid))
    session.clear()


def _session_alive(token_id: int) -> bool:
    sid = session.get("sid")
    if not isinstance(sid, str):
        return False
    redis = jobs.get_redis()
    stored = redis.get(_session_key(sid))
    if stored is None:
        return False
    if (stored.decode() if isinstance(stored, bytes) else str(stored)) != str(token_id):
        return False
    redis.expire(_session_key(sid), SESSION_TTL)
    return True


def current_principal() -> auth.Principal | None:
    """The signed-in principal: a live server-side session, and a token the database still
    honours (sign-out and revocation are both immediate)."""
    token_id = session.get("token_id")
    if not isinstance(token_id, int) or not _session_alive(token_id):
        return None
    with session_scope(readonly=True) as db:
        token = db.get(auth.ApiToken, token_id)
        if token is None or token.revoked_at is not None:
            return None
        if token.expires_at is not None and token.expires_at <= auth.utcnow():
            return None
        return auth.Principal(token_id=token.id, name=token.name, role=token.role)


def load_user() -> Any:
    """Before every console request: require a session except on the sign-in page."""
    if request.endpoint in {"web.login", "web.static", "web.plotly_js"}:
        return None
    principal = current_principal()
    if principal is None:
        session.clear()
        return redirect(url_for("web.login", next=request.full_path))
    g.principal = principal
    set_actor(
        Actor(
            name=f"console:{principal.name}",
            role=principal.role,
            request_id=getattr(g, "request_id", ""),
        )
    )
    if request.method == "POST":
        check_csrf()
    return None


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="missing or wrong CSRF token; reload the page and try again")


def csrf_token() -> str:
    """This session's CSRF token; before sign-in, one made for the sign-in form."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def needs(role: str) -> Callable[[F], F]:
    """A page or form that needs more than the viewer role."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = g.get("principal")
            if principal is None:
                raise Unauthorized("sign in first")
            auth.require(principal, role)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
