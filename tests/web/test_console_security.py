"""Console attacks from the hardening review, each replayed and refused: a cookie used after
sign-out, a cookie sent over plain HTTP, a forged sign-in, framing and injected scripts."""

from __future__ import annotations

from typing import Any

from console_kit import csrf_of

COOKIE = "popcorn_session"


def sign_in(client: Any, token: str, **kwargs: Any) -> Any:
    form = csrf_of(client.get("/ui/login", **kwargs).get_data(as_text=True))
    return client.post("/ui/login", data={"token": token, "csrf": form}, **kwargs)


def test_a_cookie_stops_working_after_sign_out(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    sign_in(client, tokens["operator"])
    stolen = client.get_cookie(COOKIE).value
    form = csrf_of(client.get("/ui/").get_data(as_text=True))
    assert client.post("/ui/logout", data={"csrf": form}).status_code == 302
    # Someone who copied the cookie before sign-out replays it.
    thief = app.test_client()
    thief.set_cookie(COOKIE, stolen)
    replay = thief.get("/ui/")
    assert replay.status_code == 302
    assert replay.headers["Location"].startswith("/ui/login")


def test_each_sign_in_is_its_own_session(app: Any, tokens: dict[str, str]) -> None:
    first, second = app.test_client(), app.test_client()
    sign_in(first, tokens["viewer"])
    sign_in(second, tokens["viewer"])
    form = csrf_of(first.get("/ui/").get_data(as_text=True))
    first.post("/ui/logout", data={"csrf": form})
    assert first.get("/ui/").status_code == 302
    assert second.get("/ui/").status_code == 200  # signing out one browser leaves the other


def test_a_forged_sign_in_without_the_form_token_is_refused(
    client: Any, tokens: dict[str, str]
) -> None:
    forged = client.post("/ui/login", data={"token": tokens["viewer"]})
    assert forged.status_code == 400
    assert "CSRF" in forged.get_data(as_text=True)
    assert client.get("/ui/").status_code == 302  # not signed in
    wrong = client.post("/ui/login", data={"token": tokens["viewer"], "csrf": "guess"})
    assert wrong.status_code == 400


def test_the_csrf_token_changes_at_sign_in(client: Any, tokens: dict[str, str]) -> None:
    before = csrf_of(client.get("/ui/login").get_data(as_text=True))
    client.post("/ui/login", data={"token": tokens["viewer"], "csrf": before})
    after = csrf_of(client.get("/ui/").get_data(as_text=True))
    assert after != before


def test_the_cookie_is_secure_over_https(client: Any, tokens: dict[str, str]) -> None:
    secure = sign_in(client, tokens["viewer"], base_url="https://popcorn.example")
    cookie = secure.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    plain = sign_in(client, tokens["viewer"])
    assert "Secure" not in plain.headers["Set-Cookie"]


def test_console_pages_cannot_be_framed_and_run_only_their_own_scripts(
    client: Any, tokens: dict[str, str]
) -> None:
    for response in (client.get("/ui/login"), client.get("/ui/no-such-page")):
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style")[0]
        assert response.headers["X-Frame-Options"] == "DENY"
    sign_in(client, tokens["viewer"])
    page = client.get("/ui/jobs")
    assert page.headers["X-Frame-Options"] == "DENY"
    html = page.get_data(as_text=True)
    assert " onchange=" not in html and " onclick=" not in html  # inline handlers would be blocked


def test_the_api_keeps_its_own_headers(api: Any) -> None:
    response = api.get("/api/v1/whoami")
    assert "Content-Security-Policy" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
