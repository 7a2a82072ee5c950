"""The core's shared helpers: id-or-name lookup, the safe YAML loader, the outbound check,
and audited updates. Every domain relies on these behaving the same way."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from sqlalchemy import text

from popcorn import outbound
from popcorn.audit import apply_fields, recording_update, records_for
from popcorn.auth import ApiToken, TokenCreate, create_token
from popcorn.db import on_commit, session_scope
from popcorn.errors import Forbidden, InvalidInput, NotFound
from popcorn.lookup import MAX_ID, get_by_id, get_by_ref, parse_id, require_id
from popcorn.safeyaml import YAMLLimitError, load, load_all

# --- lookup ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("42", 42),
        (" 7 ", 7),
        (0, 0),
        (str(MAX_ID), MAX_ID),
        (str(MAX_ID + 1), None),
        (2**64, None),
        (-1, None),
        ("-1", None),
        ("٣", None),  # Arabic-Indic digit: isdigit() is true, it is not an id
        ("²", None),  # superscript two: isdigit() is true, int() fails
        ("1e3", None),
        ("", None),
        (True, None),
    ],
)
def test_parse_id_takes_only_ascii_digits_within_64_bits(raw: Any, expected: int | None) -> None:
    assert parse_id(raw) == expected


def test_require_id_names_the_field() -> None:
    assert require_id("12", field="job") == 12
    with pytest.raises(InvalidInput) as refused:
        require_id("9223372036854775808", field="job")
    assert refused.value.details == {"job": "9223372036854775808"}


def test_get_by_ref_prefers_the_name_then_the_id() -> None:
    with session_scope() as session:
        first, _ = create_token(session=session, name="alpha", role="viewer")
        numeric, _ = create_token(session=session, name=str(first.id + 100), role="viewer")
        assert get_by_ref(session, ApiToken, "alpha", label="token") is first
        assert get_by_ref(session, ApiToken, str(first.id), label="token") is first
        assert get_by_ref(session, ApiToken, first.id, label="token") is first
        # A name made of digits wins over the id it looks like.
        assert get_by_ref(session, ApiToken, numeric.name, label="token") is numeric
        for missing in ("nobody", "9223372036854775808", "٣", "99999"):
            with pytest.raises(NotFound) as refused:
                get_by_ref(session, ApiToken, missing, label="api token")
            assert refused.value.details == {"api_token": missing}


def test_get_by_id_treats_impossible_ids_as_not_found() -> None:
    with session_scope() as session:
        token, _ = create_token(session=session, name="beta", role="viewer")
        assert get_by_id(session, ApiToken, str(token.id), label="token") is token
        for missing in (2**63, "abc", "²", -5):
            with pytest.raises(NotFound):
                get_by_id(session, ApiToken, missing, label="token")


# --- safe YAML ---------------------------------------------------------------------------

LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_refused_fast_naming_the_line() -> None:
    started = time.perf_counter()
    with pytest.raises(YAMLLimitError) as refused:
        load(LAUGHS, source="import.yaml")
    assert time.perf_counter() - started < 5
    assert refused.value.status == 422
    assert refused.value.message.startswith("import.yaml:")
    assert isinstance(refused.value.details.get("line"), int)


def test_deep_nesting_and_oversized_yaml_are_refused() -> None:
    deep = "[" * 200 + "]" * 200
    with pytest.raises(YAMLLimitError, match="levels deep"):
        load(deep)
    with pytest.raises(YAMLLimitError, match="larger than"):
        load("a: 1\n" * 100, max_bytes=50)


def test_normal_multi_document_yaml_loads() -> None:
    text = "kind: site\nname: ams1\n---\nkind: device\nname: r1\ntags: [edge, core]\n"
    assert load_all(text) == [
        {"kind": "site", "name": "ams1"},
        {"kind": "device", "name": "r1", "tags": ["edge", "core"]},
    ]
    shared = "base: &b {x: 1}\nother: *b\n"
    assert load(shared) == {"base": {"x": 1}, "other": {"x": 1}}
    assert load("") is None
    with pytest.raises(YAMLLimitError, match="expected one YAML document"):
        load(text)


def test_bad_yaml_names_its_line_and_builds_no_objects() -> None:
    with pytest.raises(YAMLLimitError) as refused:
        load("a: 1\nb: [unclosed\n", source="rules.yaml")
    assert refused.value.message.startswith("rules.yaml:")
    with pytest.raises(YAMLLimitError):
        load("!!python/object/apply:os.system ['true']")


# --- outbound ----------------------------------------------------------------------------


def _rules(spec: str) -> outbound.Rules:
    return outbound.parse_rules(spec)


def test_nothing_is_allowed_by_default() -> None:
    with pytest.raises(Forbidden) as refused:
        outbound.check_url("http://192.0.2.10/hook", purpose="webhook", rules=_rules(""))
    assert refused.value.code == "outbound_refused"
    assert refused.value.details["purpose"] == "webhook"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://100.100.100.200/",
    ],
)
def test_loopback_and_metadata_need_to_be_named(url: str) -> None:
    # Allowing everything does not allow the special addresses.
    with pytest.raises(Forbidden):
        outbound.check_url(url, purpose="webhook", rules=_rules("0.0.0.0/0,::/0"))


def test_special_addresses_pass_when_named() -> None:
    target = outbound.check_url(
        "http://127.0.0.1:9090/api", purpose="prometheus", rules=_rules("127.0.0.0/8")
    )
    assert (target.host, target.port, target.addresses) == ("127.0.0.1", 9090, ("127.0.0.1",))
    allowed = _rules("169.254.169.254:80")
    assert outbound.check_url("http://169.254.169.254/x", purpose="t", rules=allowed).port == 80


def test_allow_list_hosts_ports_networks_and_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: ("203.0.113.7",))
    rules = _rules(
        "hooks.example.com, s3.example.com:9000, 198.51.100.0/24, https://api.example.net/v1/"
    )
    assert outbound.check_url("https://hooks.example.com/x", purpose="t", rules=rules)
    assert outbound.check_url("http://s3.example.com:9000/b", purpose="t", rules=rules)
    assert outbound.check_url("https://api.example.net/v1/alerts", purpose="t", rules=rules)
    for url in (
        "http://s3.example.com:9001/b",  # another port
        "https://api.example.net/v2/alerts",  # outside the prefix
        "https://other.example.com/",
    ):
        with pytest.raises(Forbidden):
            outbound.check_url(url, purpose="t", rules=rules)
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: ("198.51.100.20",))
    assert outbound.check_url("http://anything.example.org/", purpose="t", rules=rules)


def test_a_name_resolving_to_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "_resolve", lambda host, port: ("198.51.100.20", "127.0.0.1"))
    with pytest.raises(Forbidden):
        outbound.check_url("http://rebind.example/", purpose="t", rules=_rules("198.51.100.0/24"))


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://x/", "http:///nohost", "http://h:99999/"]
)
def test_only_http_urls_with_valid_ports(url: str) -> None:
    with pytest.raises(InvalidInput):
        outbound.check_url(url, purpose="t", rules=_rules("0.0.0.0/0"))


# --- audited updates ---------------------------------------------------------------------


def _snapshot(token: ApiToken) -> dict[str, Any]:
    return {"name": token.name, "role": token.role}


def test_recording_update_writes_before_and_after() -> None:
    with session_scope() as session:
        token, _ = create_token(session=session, name="gamma", role="viewer")
        with recording_update(session, "token", token, _snapshot):
            token.role = "operator"
        token_id = token.id
    with session_scope(readonly=True) as session:
        record = records_for(session, "token", token_id)[-1]
        assert record.action == "update"
        assert record.before == {"name": "gamma", "role": "viewer"}
        assert record.after == {"name": "gamma", "role": "operator"}
        assert record.diff == {"role": ["viewer", "operator"]}


def test_recording_update_writes_nothing_when_the_block_fails() -> None:
    with pytest.raises(InvalidInput), session_scope() as session:
        token, _ = create_token(session=session, name="delta", role="viewer")
        with recording_update(session, "token", token, _snapshot):
            raise InvalidInput("refused")
    with session_scope(readonly=True) as session:
        assert session.query(ApiToken).count() == 0


def test_apply_fields_sets_only_what_was_sent() -> None:
    class Row:
        name = "keep"
        role = "viewer"
        expires_days: int | None = 5

    row = Row()
    apply_fields(row, TokenCreate.model_validate({"name": "n", "role": "admin"}))
    assert (row.name, row.role, row.expires_days) == ("n", "admin", 5)
    apply_fields(
        row, TokenCreate.model_validate({"name": "n", "role": "admin", "expires_days": None})
    )
    assert row.expires_days is None


# --- commit callbacks --------------------------------------------------------------------


def test_commit_callbacks_wait_for_the_transaction_not_its_savepoints() -> None:
    """A savepoint released or rolled back inside the transaction (`ensure_schedule`, a
    failed optional step) neither runs the callbacks early nor drops those registered
    outside it; those registered inside a rolled-back savepoint are dropped."""
    ran: list[str] = []
    with session_scope() as session:
        session.execute(text("SELECT 1"))
        on_commit(session, lambda: ran.append("committed"))
        with session.begin_nested():
            session.execute(text("SELECT 1"))
        with contextlib.suppress(RuntimeError), session.begin_nested():
            on_commit(session, lambda: ran.append("undone"))
            with session.begin_nested():
                on_commit(session, lambda: ran.append("undone too"))
            raise RuntimeError("an optional step failed")
        assert ran == []
    assert ran == ["committed"]

    with pytest.raises(RuntimeError), session_scope() as session:
        on_commit(session, lambda: ran.append("rolled back"))
        with session.begin_nested():
            session.execute(text("SELECT 1"))
        raise RuntimeError("the transaction failed")
    assert ran == ["committed"]
