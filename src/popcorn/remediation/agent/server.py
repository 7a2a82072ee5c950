"""The Bolt agent's HTTPS service: mutual TLS, registered actions only, audited.

A threaded stdlib HTTP server, with the TLS handshake done in each connection's
own thread (a slow or hostile client cannot stall the accept loop). Callers
without a certificate signed by the configured CA never get past the handshake.

Endpoints:
    GET  /v1/health                 agent, version, scripts revision, systemd presence
    GET  /v1/actions                every action with its JSON schema
    GET  /v1/actions/{name}         one action
    POST /v1/actions/{name}         run it; body = JSON object of arguments;
                                    `?stream=1` streams JSON lines (chunked),
                                    `?timeout=S` shortens (never extends) its timeout
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import re
import signal
import socket
import socketserver
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from popcorn import __version__
from popcorn.remediation.agent.audit import AuditLog
from popcorn.remediation.agent.builtin import systemd_running
from popcorn.remediation.agent.config import AgentConfig
from popcorn.remediation.agent.errors import (
    AgentRequestError,
    BodyTooLarge,
    Busy,
    ConfigError,
    Forbidden,
    InvalidArguments,
    LengthRequired,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
)
from popcorn.remediation.agent.heartbeat import Heartbeat
from popcorn.remediation.agent.process import ProcessTracker
from popcorn.remediation.agent.registry import ActionRegistry, default_registry
from popcorn.remediation.agent.runs import Run
from popcorn.remediation.agent.scripts import load_scripts, scripts_revision

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
# Bodies over the limit but under this size are read and dropped before the 413.
DRAIN_LIMIT = 8 * 1024 * 1024
ACTIONS_PREFIX = "/v1/actions/"
SUBJECT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
}


def build_registry(config: AgentConfig) -> tuple[ActionRegistry, list[str]]:
    """Built-in actions, the configured Python action modules, then the scripts directory.

    Built-in actions and action modules register into the default registry on import.
    """
    for module in config.action_modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"action_modules: cannot import {module!r}: {exc}") from exc
    registry = default_registry.copy()
    problems: list[str] = []
    if config.scripts_dir is not None:
        if not config.scripts_dir.is_dir():
            raise ConfigError(f"scripts_dir: {config.scripts_dir} is not a directory")
        problems = load_scripts(config.scripts_dir, registry)
    return registry, problems


def server_ssl_context(config: AgentConfig) -> ssl.SSLContext:
    """TLS 1.2+, and a client certificate signed by the configured CA is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(str(config.cert_file), str(config.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cert_file/key_file: cannot load {config.cert_file} with {config.key_file}: {exc}"
        ) from exc
    try:
        context.load_verify_locations(cafile=str(config.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ca_file: cannot load {config.ca_file}: {exc}") from exc
    return context


def client_authority(config: AgentConfig) -> x509.Certificate:
    """The first certificate of `ca_file`: the only authority whose client certificates count."""
    try:
        found = x509.load_pem_x509_certificates(config.ca_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ca_file: cannot load {config.ca_file}: {exc}") from exc
    return found[0]


def caller_subject(cert: dict[str, Any] | None) -> tuple[str, str | None]:
    """The client certificate's subject as `CN=...,O=...` (certificate order) and its CN."""
    parts, common_name = [], None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            parts.append(f"{SUBJECT_NAMES.get(key, key)}={value}")
            if key == "commonName":
                common_name = value
    return ",".join(parts), common_name


class BoltAgent:
    """One agent: its actions, its TLS server, its audit log and its heartbeat."""

    def __init__(self, config: AgentConfig, *, registry: ActionRegistry | None = None) -> None:
        self.config = config
        if registry is None:
            registry, problems = build_registry(config)
        else:
            problems = []
        self.registry = registry
        self.script_problems = problems
        self.scripts_revision = (
            scripts_revision(config.scripts_dir) if config.scripts_dir is not None else None
        )
        self.ssl_context = server_ssl_context(config)
        try:
            self.audit = AuditLog(config.audit_log)
        except OSError as exc:
            raise ConfigError(
                f"audit_log: cannot create {config.audit_log}: {exc.strerror}"
            ) from exc
        self.tracker = ProcessTracker()
        self._slots = threading.BoundedSemaphore(config.max_concurrent_runs)
        self._active: set[Run] = set()
        self._active_changed = threading.Condition()
        self._stopping = threading.Event()
        self._allowed = {s.replace(", ", ",") for s in config.allowed_client_subjects}
        self._authority = client_authority(config)
        self._heartbeat: Heartbeat | None = None
        self._httpd: _TLSServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the agent is not bound yet")
        return int(self._httpd.server_address[1])

    def issued_by_authority(self, der: bytes | None) -> bool:
        """Whether the client certificate was signed directly by the agent authority.

        The TLS handshake only proves a chain to some certificate in `ca_file`; when that
        file also holds the authority's root, a sibling authority under the same root (one
        that issues to people, with any name) would pass. Only the authority itself counts.
        """
        if not der:
            return False
        try:
            x509.load_der_x509_certificate(der).verify_directly_issued_by(self._authority)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def caller_allowed(self, subject: str, common_name: str | None) -> bool:
        if not self._allowed:
            return True
        return subject in self._allowed or (
            common_name is not None and common_name in self._allowed
        )

    def acquire_slot(self) -> None:
        if self._stopping.is_set():
            raise Busy("the agent is shutting down")
        if not self._slots.acquire(blocking=False):
            raise Busy(
                f"the agent is already running {self.config.max_concurrent_runs} actions",
                details={"max_concurrent_runs": self.config.max_concurrent_runs},
            )

    def release_slot(self) -> None:
        self._slots.release()

    def track(self, run: Run) -> None:
        with self._active_changed:
            self._active.add(run)

    def untrack(self, run: Run) -> None:
        """Called once the caller has the run's answer."""
        with self._active_changed:
            self._active.discard(run)
            self._active_changed.notify_all()

    def _drain(self) -> None:
        """Cancel running actions and give their callers a moment to receive the outcome."""
        self._stopping.set()
        with self._active_changed:
            for run in self._active:
                run.stop("the agent is shutting down")
            self._active_changed.wait_for(
                lambda: not self._active, timeout=self.config.kill_grace + 2.0
            )
        self.tracker.kill_all(self.config.kill_grace)

    @property
    def url(self) -> str:
        """Where callers reach this agent (the advertised URL, else host and bound port)."""
        if self.config.advertise_url:
            return self.config.advertise_url.rstrip("/")
        return self.config.model_copy(update={"port": self.port}).url

    def bind(self) -> None:
        """Open the listening socket (port 0 picks a free port, see `port`)."""
        if self._httpd is None:
            try:
                self._httpd = _TLSServer(self)
            except OSError as exc:
                raise ConfigError(
                    f"host/port: cannot listen on {self.config.host}:{self.config.port}: "
                    f"{exc.strerror or exc}"
                ) from exc

    def serve_forever(self) -> None:
        """Serve until `stop()`; then stop the heartbeat and kill every running process group."""
        self.bind()
        assert self._httpd is not None
        if self.config.popcorn_url:
            self._heartbeat = Heartbeat(
                self.config, self.url, lambda: [a.name for a in self.registry]
            )
            self._heartbeat.start()
        log.info(
            "popcorn bolt agent %s listening on https://%s:%d with %d actions",
            self.config.agent_name,
            self.config.host,
            self.port,
            len(self.registry),
        )
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()
            self._drain()
            self._httpd.server_close()
            log.info("popcorn bolt agent stopped")

    def start(self) -> None:
        """Serve in a background thread (for embedding the agent in another process)."""
        self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="bolt-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; safe to call from any thread except the one serving."""
        if self._httpd is not None:
            self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join()


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, agent: BoltAgent) -> None:
        self.agent = agent
        host = agent.config.host
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, agent.config.port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.agent.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("refused TLS connection from %s: %s", client_address[0], exc)
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error while serving %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"popcorn-bolt/{__version__}"
    sys_version = ""
    # Headers and body go out as separate writes; without this, Nagle's algorithm and
    # delayed ACKs add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: _TLSServer

    def setup(self) -> None:
        self.connection = self.request
        self.connection.settimeout(self.server.agent.config.idle_timeout)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # --- routing ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        agent = self.server.agent
        started = time.monotonic()
        self._body_read = False
        subject, common_name = caller_subject(self.connection.getpeercert())
        url = urlsplit(self.path)
        path = url.path
        action_name = (
            unquote(path[len(ACTIONS_PREFIX) :]) if path.startswith(ACTIONS_PREFIX) else None
        )
        audited = method == "POST" and action_name is not None
        args: Any = None
        try:
            if not agent.issued_by_authority(self.connection.getpeercert(binary_form=True)):
                audited = True
                raise Forbidden(
                    "this client certificate was not issued by this agent's authority "
                    "(the first certificate of its ca_file)",
                    details={"subject": subject},
                )
            if not agent.caller_allowed(subject, common_name):
                audited = True
                raise Forbidden(
                    "this client certificate is not allowed on this agent",
                    details={"subject": subject},
                )
            if path == "/v1/health":
                self._only(method, "GET")
                self._send_json(200, self._health(subject))
            elif path == "/v1/actions":
                self._only(method, "GET")
                timeout = agent.config.default_timeout
                self._send_json(200, {"actions": [a.describe(timeout) for a in agent.registry]})
            elif action_name is not None and method == "GET":
                action = agent.registry.get(action_name)
                self._send_json(200, action.describe(agent.config.default_timeout))
            elif action_name is not None:
                self._only(method, "POST")
                args = self._read_args()
                query = parse_qs(url.query)
                run = self._start_run(action_name, args, subject, query)
                streamed = query.get("stream", ["0"])[-1].lower() in ("1", "true", "yes")
                try:
                    if streamed:
                        self._stream(run)
                    else:
                        self._send_json(200, run.collect())
                finally:
                    agent.untrack(run)
                    finished = run.finished or {}
                    agent.audit.record(
                        caller=subject,
                        action=action_name,
                        args=run.args.model_dump(mode="json"),
                        outcome=finished.get("status", "unknown"),
                        duration_s=time.monotonic() - started,
                        run_id=run.run_id,
                        exit_code=finished.get("exit_code"),
                        truncated=finished.get("truncated", False),
                        error=finished.get("error"),
                        streamed=streamed,
                    )
            else:
                raise NotFound(f"no endpoint at {path}", details={"path": path})
        except AgentRequestError as exc:
            self._drop_unread_body()
            self._send_json(exc.status, exc.envelope())
            if audited:
                agent.audit.record(
                    caller=subject,
                    action=action_name,
                    args=args,
                    outcome="rejected",
                    duration_s=time.monotonic() - started,
                    http_status=exc.status,
                    error=exc.code,
                    message=exc.message,
                )
        except OSError as exc:
            log.info("connection from %s dropped: %s", self.client_address[0], exc)
            self.close_connection = True
        except Exception:
            log.exception("internal error serving %s %s", method, path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_json(500, _envelope("internal_error", "the agent failed; see its log"))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unsupported method) as JSON envelopes too."""
        self.close_connection = True
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "error"
        with contextlib.suppress(OSError):
            self._send_json(code, _envelope(re.sub(r"\W+", "_", phrase.lower()), message or phrase))

    def _only(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise MethodNotAllowed(f"{method} is not allowed here; use {allowed}")

    def _health(self, subject: str) -> dict[str, Any]:
        agent = self.server.agent
        return {
            "status": "ok",
            "agent": agent.config.agent_name,
            "device": agent.config.device,
            "version": __version__,
            "caller": subject,
            "actions": len(agent.registry),
            "systemd": systemd_running(),
            "scripts": {
                "dir": str(agent.config.scripts_dir) if agent.config.scripts_dir else None,
                "revision": agent.scripts_revision,
                "problems": agent.script_problems,
            },
        }

    # --- running ---------------------------------------------------------------------------

    def _read_args(self) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise LengthRequired("send the arguments with a Content-Length, not chunked")
        raw_length = self.headers.get("Content-Length", "0")
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError(raw_length)
        except ValueError:
            raise MalformedRequest(f"invalid Content-Length {raw_length!r}") from None
        limit = self.server.agent.config.max_body_bytes
        if length > limit:
            if length <= DRAIN_LIMIT:
                self._discard(length)
            raise BodyTooLarge(
                f"the request body is {length} bytes; the limit is {limit}",
                details={"limit": limit, "length": length},
            )
        body = self.rfile.read(length) if length else b""
        self._body_read = True
        if not body.strip():
            return {}
        try:
            args = json.loads(body)
        except ValueError as exc:
            raise MalformedRequest(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(args, dict):
            raise MalformedRequest("the request body must be a JSON object of arguments")
        return args

    def _drop_unread_body(self) -> None:
        """Before an error answer: drop a small unread body, or close after answering."""
        if self._body_read or "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = self.close_connection or not self._body_read
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if 0 <= length <= DRAIN_LIMIT:
            self._discard(length)
        if not self._body_read:
            self.close_connection = True

    def _discard(self, length: int) -> None:
        """Read and drop a refused body so the client gets the answer, not a connection reset."""
        while length > 0:
            chunk = self.rfile.read(min(length, 64 * 1024))
            if not chunk:
                return
            length -= len(chunk)
        self._body_read = True

    def _start_run(self, name: str, raw_args: Any, caller: str, query: dict[str, list[str]]) -> Run:
        agent = self.server.agent
        action = agent.registry.get(name)
        args = action.validate_args(raw_args, config=agent.config)
        timeout = action.timeout if action.timeout is not None else agent.config.default_timeout
        if "timeout" in query:
            try:
                requested = float(query["timeout"][-1])
                if not requested > 0:
                    raise ValueError
            except ValueError:
                raise InvalidArguments(
                    "timeout must be a positive number of seconds",
                    details={"errors": [{"field": "timeout", "message": "must be > 0"}]},
                ) from None
            timeout = min(timeout, requested)
        agent.acquire_slot()
        run = Run(
            action,
            args,
            config=agent.config,
            caller=caller,
            tracker=agent.tracker,
            timeout=timeout,
            on_done=agent.release_slot,
        )
        agent.track(run)
        run.start()
        return run

    def _stream(self, run: Run) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        gone = False
        for event in run.events():
            if gone:
                continue
            line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
            try:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(line), line))
            except OSError:
                gone = True
                run.stop("the caller disconnected")
                self.close_connection = True
        if not gone:
            with contextlib.suppress(OSError):
                self.wfile.write(b"0\r\n\r\n")

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _envelope(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": {}}}


def serve(config: AgentConfig) -> None:
    """Run the agent until SIGTERM or SIGINT; running actions' process groups are killed."""
    agent = BoltAgent(config)
    agent.bind()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        threading.Thread(target=agent.stop, name="bolt-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
