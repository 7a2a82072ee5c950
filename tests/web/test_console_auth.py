"""Console sign-in: token for a cookie, CSRF on forms, revocation, error pages."""

from __future__ import annotations

import re
from typing import Any


def csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "page has no CSRF field"
    return match.group(1)


def sign_in(client: Any, token: str, path: str = "/ui/login") -> Any:
    """Sign in the way a browser does: the form first (its CSRF token), then the post."""
    form = csrf(client.get("/ui/login").get_data(as_text=True))
    return client.post(path, data={"token": token, "csrf": form})


def test_pages_need_a_session(client: Any) -> None:
    response = client.get("/ui/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/ui/login")
    assert client.get("/").headers["Location"] == "/ui/"


def test_bad_token_is_refused_with_a_message(client: Any) -> None:
    response = sign_in(client, "pop_not-a-token")
    assert response.status_code == 401
    assert "invalid token" in response.get_data(as_text=True)


def test_sign_in_sets_a_safe_cookie_and_shows_the_overview(
    client: Any, tokens: dict[str, str]
) -> None:
    response = sign_in(client, tokens["viewer"])
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert tokens["viewer"] not in cookie
    page = client.get("/ui/").get_data(as_text=True)
    assert "Overview" in page and "test-viewer" in page


def test_next_parameter_cannot_redirect_off_site(client: Any, tokens: dict[str, str]) -> None:
    response = sign_in(client, tokens["viewer"], "/ui/login?next=//evil.example/")
    assert response.headers["Location"] == "/ui/"
    response = sign_in(client, tokens["viewer"], "/ui/login?next=/ui/jobs")
    assert response.headers["Location"] == "/ui/jobs"


def test_forms_without_csrf_token_are_rejected(client: Any, tokens: dict[str, str]) -> None:
    sign_in(client, tokens["viewer"])
    refused = client.post("/ui/logout", data={})
    assert refused.status_code == 400
    assert "CSRF" in refused.get_data(as_text=True)
    token = csrf(client.get("/ui/").get_data(as_text=True))
    assert client.post("/ui/logout", data={"csrf": token}).status_code == 302
    assert client.get("/ui/").status_code == 302  # signed out


def test_revoked_token_ends_the_session(client: Any, api: Any, tokens: dict[str, str]) -> None:
    sign_in(client, tokens["operator"])
    assert client.get("/ui/").status_code == 200
    api.delete("/api/v1/tokens/test-operator")
    assert client.get("/ui/").status_code == 302


def test_console_errors_are_pages(client: Any, tokens: dict[str, str]) -> None:
    sign_in(client, tokens["viewer"])
    missing = client.get("/ui/no-such-page")
    assert missing.status_code == 404
    assert missing.content_type.startswith("text/html")
    assert "not found" in missing.get_data(as_text=True)


def test_plotly_comes_from_the_installed_package(client: Any) -> None:
    response = client.get("/ui/assets/plotly.min.js")
    assert response.status_code == 200
    assert b"plotly" in response.data[:2000].lower()
