"""Inputs that used to crash routes (500) or slip past them, refused once for every route.

Each test replays what an attacker sent: ids past 64 bits, Unicode digits, JSON nested
20,000 deep, bodies that are not JSON, NUL bytes and thousands of filter values.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from popcorn.auth import ApiToken
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.guards import BoundedIntConverter, check_json
from popcorn.jobs import JobRecord
from popcorn.listing import filter_clauses, parse_list_params

HUGE = str(2**63)


def error_of(response: Any, status: int) -> dict[str, Any]:
    """The envelope of an error answer (never an HTML page)."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.is_json, response.get_data(as_text=True)[:500]
    error: dict[str, Any] = response.json["error"]
    assert set(error) == {"code", "message", "details"}
    return error


def tokens_named(name: str) -> int:
    with session_scope(readonly=True) as session:
        stmt = select(func.count()).select_from(ApiToken).where(ApiToken.name == name)
        return int(session.scalar(stmt) or 0)


# --- ids, offsets and filters past 64 bits ------------------------------------------------


@pytest.mark.parametrize("ident", [HUGE, str(2**64 + 5), "99999999999999999999999", "١٢"])
def test_path_ids_past_64_bits_or_not_ascii_are_not_found(api: Any, ident: str) -> None:
    error_of(api.get(f"/api/v1/jobs/{ident}"), 404)
    error_of(api.post(f"/api/v1/jobs/{ident}/cancel", role="operator"), 404)


def test_unauthenticated_pki_ids_past_64_bits_are_not_found(client: Any) -> None:
    error_of(client.get(f"/pki/crl/{HUGE}.crl"), 404)
    error_of(client.get(f"/pki/ca/{HUGE}.crt"), 404)


def test_every_int_in_every_route_is_bounded(app: Any) -> None:
    ints = [
        (rule.rule, converter)
        for rule in app.url_map.iter_rules()
        for converter in rule._converters.values()
        if "int" in type(converter).__name__.lower() or "Integer" in type(converter).__name__
    ]
    assert ints, "no route takes an integer id"
    for path, converter in ints:
        assert isinstance(converter, BoundedIntConverter), path
        assert converter.max == 2**63 - 1, path


@pytest.mark.parametrize(
    "query",
    [
        f"offset={HUGE}",
        "offset=\u0661",  # Arabic-Indic one
        "limit=²",  # superscript two: isdigit() but not int()
        "offset=1_000",
        "created_at__gte=\uff12\uff10\uff12\uff16-01-01",  # fullwidth digits in a date
    ],
)
def test_offsets_and_filters_that_cannot_be_numbers_are_422(api: Any, query: str) -> None:
    error = error_of(api.get(f"/api/v1/jobs?{query}", role="viewer"), 422)
    assert error["code"] == "validation_error"


def test_integer_filters_stay_within_64_bits() -> None:
    allowed = {"id": JobRecord.id}
    assert filter_clauses({"id": [str(2**63 - 1)]}, allowed)
    for raw in (HUGE, f"-{2**63 + 1}", "٣", "1.5", "nan"):
        with pytest.raises(InvalidInput):
            filter_clauses({"id": [raw]}, allowed)
    with pytest.raises(InvalidInput):
        parse_list_params({"offset": HUGE})


def test_a_forged_cursor_is_422(api: Any) -> None:
    import base64
    import json

    for after in (2**70, {"x": 1}, [1], None):
        raw = json.dumps({"after": after}).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        error_of(api.get(f"/api/v1/jobs?cursor={cursor}", role="viewer"), 422)


# --- JSON bodies ------------------------------------------------------------------------------


def test_json_nested_20000_deep_is_refused_on_any_json_route(api: Any) -> None:
    deep = "[" * 20000 + "]" * 20000
    for path, body in (
        ("/api/v1/tokens", deep),
        ("/api/v1/tokens", '{"name": "deep", "role": "viewer", "x": ' + deep + "}"),
        ("/api/v1/jobs", '{"task": "core.echo", "arguments": {"a": ' + deep + "}}"),
    ):
        response = api.post(path, data=body, content_type="application/json")
        error = error_of(response, 400)
        assert "nested" in error["message"]
    assert tokens_named("deep") == 0


def test_check_json_limits_depth_and_nul_characters() -> None:
    check_json({"a": [[{"b": "fine"}]]})
    nested: Any = "leaf"
    for _ in range(150):
        nested = [nested]
    with pytest.raises(ValueError, match="nested"):
        check_json(nested)
    with pytest.raises(ValueError, match="NUL"):
        check_json({"name": "a\x00b"})
    with pytest.raises(ValueError, match="NUL"):
        check_json({"a\x00": 1})


def test_nul_characters_in_json_strings_are_400(api: Any) -> None:
    body = '{"name": "nul\\u0000name", "role": "viewer"}'
    error_of(api.post("/api/v1/tokens", data=body, content_type="application/json"), 400)


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_json_routes_refuse_bodies_of_other_types(api: Any, content_type: str | None) -> None:
    body = '{"name": "plain", "role": "viewer"}'
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = api.post("/api/v1/tokens", data=body, headers=headers)
    error = error_of(response, 415)
    assert error["code"] == "unsupported_media_type"
    assert tokens_named("plain") == 0


def test_json_routes_take_json_with_a_charset_and_bodiless_posts(api: Any) -> None:
    body = '{"name": "typed", "role": "viewer"}'
    created = api.post("/api/v1/tokens", data=body, content_type="application/json; charset=utf-8")
    assert created.status_code == 201, created.json
    # Routes without a body still take a POST with no content type.
    job = api.post("/api/v1/jobs", json={"task": "core.echo", "arguments": {}}, role="operator")
    assert api.post(f"/api/v1/jobs/{job.json['id']}/cancel", role="operator").status_code in (
        200,
        409,
    )


# --- filters ----------------------------------------------------------------------------------


def test_isnull_takes_only_true_or_false(api: Any) -> None:
    error_of(api.get("/api/v1/jobs?schedule__isnull=maybe", role="viewer"), 422)
    assert api.get("/api/v1/jobs?schedule__isnull=true", role="viewer").status_code == 200
    assert api.get("/api/v1/jobs?schedule__isnull=no", role="viewer").status_code == 200


def test_nul_in_a_filter_never_matches_every_row(api: Any) -> None:
    api.post("/api/v1/tokens", json={"name": "someone", "role": "viewer"})  # an audit row
    for query in ("actor__ic=%00", "actor=%00", "object_type__isw=a%00b", "q%00=1"):
        error_of(api.get(f"/api/v1/audit?{query}", role="viewer"), 422)


def test_thousands_of_filter_values_and_long_urls_get_the_envelope(api: Any) -> None:
    values = ",".join(f"s{i}" for i in range(5000))
    refused = api.get(f"/api/v1/jobs?status__in={values}", role="viewer")
    error_of(refused, refused.status_code if refused.status_code in (414, 422) else 422)
    values = ",".join(f"s{i}" for i in range(1000))
    error = error_of(api.get(f"/api/v1/jobs?status__in={values}", role="viewer"), 422)
    assert error["details"]["values"] == 1000
    repeated = "&".join(f"status=s{i}" for i in range(600))
    error_of(api.get(f"/api/v1/jobs?{repeated}", role="viewer"), 422)
    very_long = "&".join(f"status=value-{i}" for i in range(3000))
    assert error_of(api.get(f"/api/v1/jobs?{very_long}", role="viewer"), 414)["code"] == (
        "uri_too_long"
    )


# --- the net under every route ---------------------------------------------------------------


@pytest.fixture(scope="module")
def crashing_app(installation: dict[str, str]) -> Any:
    """A fresh app with routes that fail the way unchecked input makes domain routes fail."""
    from popcorn.app import create_app

    app = create_app()

    def overflow() -> Any:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    def recursion() -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    def broken() -> Any:
        raise RuntimeError("a bug")

    for name, view in (("overflow", overflow), ("recursion", recursion), ("broken", broken)):
        app.add_url_rule(f"/pki/test-{name}", name, view)
    app.config["TESTING"] = True
    return app


def test_input_that_only_breaks_the_database_is_422(crashing_app: Any) -> None:
    client = crashing_app.test_client()
    error_of(client.get("/pki/test-overflow"), 422)
    error_of(client.get("/pki/test-recursion"), 422)


def test_a_500_logs_its_request_id_with_the_traceback(
    crashing_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = crashing_app.test_client()
    with caplog.at_level(logging.ERROR, logger="popcorn.app"):
        response = client.get("/pki/test-broken", headers={"X-Request-ID": "req-4242"})
    error = error_of(response, 500)
    assert error["details"] == {"request_id": "req-4242"}
    assert "a bug" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if "req-4242" in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_request_ids_that_could_forge_log_lines_are_replaced(client: Any) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "a\tb"})
    assert response.headers["X-Request-ID"] not in ("a\tb", "")
