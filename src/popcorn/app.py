"""The Flask application: auth on every route, one error envelope, metrics, health.

Domains contribute blueprints; this module knows none of them by name.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import Response, g, jsonify, request, send_from_directory
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from popcorn import guards, metrics, openapi
from popcorn.auth import authenticate, require, touch_due, touch_token
from popcorn.config import get_settings
from popcorn.context import Actor, set_actor
from popcorn.db import session_scope
from popcorn.errors import Overloaded, PopcornError, envelope

log = logging.getLogger("popcorn.app")

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/", "/favicon.ico"}
# /pki serves CRLs and OCSP answers, which TLS clients fetch without credentials.
PUBLIC_PREFIXES = ("/docs/", "/static/", "/pki/")
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def role(needed: str) -> Callable[[F], F]:
    """Mark a view as needing more than the default (viewer to read, operator to change)."""

    def decorate(view: F) -> F:
        view._popcorn_role = needed  # type: ignore[attr-defined]
        return view

    return decorate


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


ErrorPage = Callable[[int, str, str], Any]


def add_session_area(app: APIFlask, prefix: str, error_page: ErrorPage) -> None:
    """Pages under `prefix` sign people in themselves (a session, not a bearer token)
    and show their errors as pages: how the console plugs into the core."""
    areas: dict[str, ErrorPage] = app.extensions.setdefault("popcorn_session_areas", {})
    areas[prefix] = error_page


def _session_area(path: str) -> ErrorPage | None:
    from flask import current_app

    areas: dict[str, ErrorPage] = current_app.extensions.get("popcorn_session_areas", {})
    for prefix, page in areas.items():
        if path == prefix or path.startswith(prefix + "/"):
            return page
    return None


def role_needed(view: Any, method: str) -> str:
    """The role a view needs: its `@role(...)`, else viewer to read and operator to change."""
    needed = getattr(view, "_popcorn_role", None) if view else None
    if needed:
        return str(needed)
    return "viewer" if method in {"GET", "HEAD", "OPTIONS"} else "operator"


def _required_role() -> str:
    view = request.endpoint and APP_VIEWS.get(request.endpoint)
    return role_needed(view, request.method)


APP_VIEWS: dict[str, Any] = {}


def _swagger_assets() -> Path | None:
    try:
        import flask_swagger_ui
    except ImportError:
        return None
    return Path(flask_swagger_ui.__file__).parent / "dist"


def create_app(config: dict[str, Any] | None = None) -> APIFlask:
    from popcorn import domains
    from popcorn.views import bp as core_bp

    settings = get_settings()
    app = APIFlask(
        "popcorn",
        title="Popcorn API",
        version="1.0",
        spec_path="/openapi.json",
        docs_path="/docs",
    )
    app.config.update(
        OPENAPI_VERSION="3.1.0",
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SECRET_KEY=settings.effective_secret_key,
        VALIDATION_ERROR_STATUS_CODE=422,
        JSON_SORT_KEYS=False,
        DESCRIPTION=(
            "Every route under /api/v1 needs `Authorization: Bearer <token>`. Reads need the "
            "viewer role, changes operator, tokens and settings admin. Errors share one "
            'envelope: `{"error": {"code", "message", "details"}}`.'
        ),
    )
    assets = _swagger_assets()
    if assets is not None:
        app.config.update(
            SWAGGER_UI_CSS="/docs/assets/swagger-ui.css",
            SWAGGER_UI_BUNDLE_JS="/docs/assets/swagger-ui-bundle.js",
            SWAGGER_UI_STANDALONE_PRESET_JS="/docs/assets/swagger-ui-standalone-preset.js",
            DOCS_FAVICON="/docs/assets/favicon-32x32.png",
        )

        @app.get("/docs/assets/<path:name>")
        @app.doc(hide=True)
        def docs_asset(name: str) -> Response:
            return send_from_directory(assets, name, max_age=86400)

    app.security_schemes = {"bearer": {"type": "http", "scheme": "bearer"}}
    if config:
        app.config.update(config)
    # Before any blueprint: every `<int:...>` in every route is a 64-bit id or a 404.
    app.url_map.converters["int"] = guards.BoundedIntConverter
    app.request_class = guards.GuardedRequest
    app.json = guards.GuardedJSONProvider(app)

    app.register_blueprint(core_bp, url_prefix="/api/v1")
    for blueprint in domains.blueprints():
        app.register_blueprint(blueprint, url_prefix=f"/api/v1/{blueprint.name}")
    for blueprint in domains.public_blueprints():
        app.register_blueprint(blueprint, url_prefix="/pki")
    for extension in domains.app_extensions():  # the console, when installed
        extension.register(app)
    for blueprint in app.blueprints.values():
        if not hasattr(blueprint, "enable_openapi"):  # plain Flask blueprints: pages, /pki
            blueprint.enable_openapi = False  # type: ignore[attr-defined]
    APP_VIEWS.update(app.view_functions)

    _install_hooks(app)
    _install_errors(app)
    _install_ops_routes(app)

    @app.spec_processor
    def declare_errors(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
        if not isinstance(spec, dict):
            return spec
        return openapi.declare_errors(spec, is_public, openapi.route_roles(app, role_needed))

    return app


def _install_hooks(app: APIFlask) -> None:
    @app.before_request
    def start() -> Any:
        g.started = time.perf_counter()
        g.request_id = _request_id(request.headers.get("X-Request-ID", ""))
        if is_public(request.path) or _session_area(request.path) is not None:
            # public routes need nothing; the console authenticates with its own session
            guards.check_request(APP_VIEWS.get(request.endpoint or ""))
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, raw = header.partition(" ")
        with session_scope(readonly=True) as session:
            principal = authenticate(
                session=session, raw=raw.strip() if scheme.lower() == "bearer" else None
            )
        if touch_due(principal.token_id):
            with session_scope() as session:
                touch_token(session=session, token_id=principal.token_id)
        require(principal, _required_role())
        g.principal = principal
        set_actor(
            Actor(name=f"token:{principal.name}", role=principal.role, request_id=g.request_id)
        )
        guards.check_request(APP_VIEWS.get(request.endpoint or ""))
        return None

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        rule = request.url_rule.rule if request.url_rule else "<unmatched>"
        started = getattr(g, "started", None)
        if started is not None:
            metrics.observe_request(
                request.method, rule, response.status_code, time.perf_counter() - started
            )
        return response

    @app.teardown_request
    def forget(_exc: BaseException | None) -> None:
        set_actor(None)


def _request_id(sent: str) -> str:
    """The caller's X-Request-ID when it is a plain token, else a fresh one (it reaches logs)."""
    sent = sent.strip()[:64]
    return sent if sent and sent.isascii() and sent.isprintable() else uuid.uuid4().hex


def _console_error(status: int, code: str, message: str) -> Any:
    """Errors in a session area (the console) are pages, not JSON."""
    page = _session_area(request.path)
    return page(status, code, message) if page is not None else None


def _install_errors(app: APIFlask) -> None:
    @app.error_processor
    def api_error(error: HTTPError) -> Any:
        status = error.status_code
        details = error.detail if isinstance(error.detail, dict) else {}
        if status == 422 and details:
            details = {"fields": _flatten_validation(details)}
        message = error.message or STATUS_CODES.get(status, "error")
        if status == 422 and error.message == "Validation error":
            message = "request validation failed"
        page = _console_error(status, STATUS_CODES.get(status, "error"), message)
        if page is not None:
            return page
        return envelope(STATUS_CODES.get(status, "error"), message, details), status, error.headers

    @app.errorhandler(PopcornError)
    def popcorn_error(error: PopcornError) -> Any:
        page = _console_error(error.status, error.code, error.message)
        if page is not None:
            return page
        response = jsonify(error.envelope())
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="popcorn"'
        if isinstance(error, Overloaded):
            response.headers["Retry-After"] = str(error.retry_after)
        return response, error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        status = error.code or 500
        page = _console_error(status, STATUS_CODES.get(status, "error"), error.description or "")
        if page is not None:
            return page
        return jsonify(envelope(STATUS_CODES.get(status, "error"), error.description or "")), status

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        if isinstance(error, HTTPException):
            return http_error(error)
        refused = _refused_input(error)
        if refused is not None:
            return popcorn_error(refused)
        request_id = getattr(g, "request_id", "")
        log.exception(
            "unhandled error: request_id=%s %s %s", request_id, request.method, request.path
        )
        page = _console_error(500, "internal_error", "Something went wrong; it has been logged.")
        if page is not None:
            return page
        return jsonify(
            envelope(
                "internal_error",
                "internal server error",
                {"request_id": request_id},
            )
        ), 500


def _refused_input(error: Exception) -> PopcornError | None:
    """Errors that only bad input causes, whichever route let it through: a 4xx, not a 500.

    Routes validate their input; this is the net under them for values no database
    takes (integers past 64 bits, NUL characters), structures too deep to walk, and
    duplicates that lost a race with the route's own uniqueness check.
    """
    from popcorn.errors import Conflict, InvalidInput

    cause = getattr(error, "orig", None) or error
    if isinstance(error, RecursionError):
        return InvalidInput("input nested too deeply")
    if isinstance(cause, OverflowError) or isinstance(error, sa_exc.DataError):
        log.info("refused input the database cannot store: %s", cause)
        return InvalidInput("a value is out of range or not storable (numbers past 64 bits?)")
    if isinstance(error, sa_exc.IntegrityError):
        log.info("refused a change breaking a database constraint: %s", cause)
        return Conflict("the change conflicts with existing data (a duplicate or a reference)")
    return None


def _flatten_validation(detail: dict[str, Any]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for location, errors in detail.items():
        if isinstance(errors, dict):
            for name, messages in errors.items():
                key = name if location == "json" else f"{location}.{name}"
                fields[key] = list(messages) if isinstance(messages, list) else [str(messages)]
        else:
            fields[location] = [str(errors)]
    return fields


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


READINESS_ERRORS: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    503: {
        "description": "Not ready",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}},
    }
}


def favicon_png() -> bytes:
    """A 16x16 icon (a red kernel on white), so browsers asking for /favicon.ico on every
    console page get an image instead of a 401 in their console."""
    import struct
    import zlib

    rows = []
    for y in range(16):
        row = bytearray([0])  # filter: none
        for x in range(16):
            inside = (x - 7.5) ** 2 + (y - 7.5) ** 2 <= 49
            row += bytes((229, 9, 20, 255) if inside else (255, 255, 255, 0))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 16, 16, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def _install_ops_routes(app: APIFlask) -> None:
    @app.get("/favicon.ico")
    @app.doc(hide=True)
    def favicon() -> Response:
        return Response(
            favicon_png(), mimetype="image/png", headers={"Cache-Control": "public, max-age=86400"}
        )

    @app.get("/healthz")
    @app.output(Health)
    @app.doc(tags=["ops"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    @app.output(Readiness)
    @app.doc(
        tags=["ops"],
        summary="Readiness: database and Redis reachable",
        responses=READINESS_ERRORS,
    )
    def readyz() -> tuple[dict[str, Any], int]:
        checks: dict[str, str] = {}
        try:
            with session_scope(readonly=True) as session:
                session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            from popcorn.jobs import get_redis

            get_redis().ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return {"status": "ready" if ready else "not ready", "checks": checks}, (
            200 if ready else 503
        )

    @app.get("/metrics")
    @app.output({}, content_type="text/plain", description="Prometheus text exposition format")
    @app.doc(tags=["ops"], summary="Prometheus metrics")
    def metrics_route() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)
