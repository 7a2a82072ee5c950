"""The operator console: server-rendered pages over every domain, signed in with a token.

Pages call the same service functions as the API. Sign-in exchanges an API
token for a session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS) naming a
server-side session that sign-out ends; every form, the sign-in form included,
carries a CSRF token; pages may not be framed and run only scripts served by
the console itself; role checks match the API's (viewer reads, operator acts,
admin manages).
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.sessions import SecureCookieSessionInterface

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # plotly sets style attributes and a <style> element as it draws
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """The session cookie is `Secure` whenever the console is reached over HTTPS."""

    def get_cookie_secure(self, app: Any) -> bool:
        from popcorn.config import get_settings

        public = get_settings().public_url or ""
        return bool(
            app.config.get("SESSION_COOKIE_SECURE")
            or request.is_secure
            or public.startswith("https://")
        )


def protect(response: Any) -> Any:
    """Headers on every console answer: no framing, only our own scripts, no sniffing."""
    if request.path == "/ui" or request.path.startswith("/ui/"):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def register(app: Any) -> None:
    from flask import redirect

    from popcorn.app import add_session_area
    from popcorn.web import pages, views

    pages.load()  # routes join the blueprint before it is registered

    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="popcorn_session",
    )
    app.session_interface = ConsoleSessionInterface()
    app.register_blueprint(views.bp, url_prefix="/ui")
    add_session_area(app, "/ui", views.render_error)
    app.after_request(protect)

    @app.get("/")
    @app.doc(hide=True)
    def root() -> Any:
        return redirect("/ui/")
