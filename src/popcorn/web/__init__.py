"""The operator console: server-rendered pages over every domain, signed in with a token.

Pages call the same service functions as the API. Sign-in exchanges an API
token for a session cookie (HttpOnly, SameSite=Lax); every form carries a CSRF
token; role checks match the API's (viewer reads, operator acts, admin manages).
"""

from __future__ import annotations

from typing import Any


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
    app.register_blueprint(views.bp, url_prefix="/ui")
    add_session_area(app, "/ui", views.render_error)

    @app.get("/")
    @app.doc(hide=True)
    def root() -> Any:
        return redirect("/ui/")
