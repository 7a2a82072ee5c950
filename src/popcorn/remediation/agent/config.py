"""Configuration of the Bolt agent, read from one YAML file per host.

Relative paths in the file are taken relative to the file's own directory, so a
config directory (certificates, scripts, config) can be shipped as one unit.

Example (`/etc/popcorn/bolt.yaml`)::

    host: 0.0.0.0
    port: 8443
    cert_file: tls/agent.crt          # server certificate (SAN = this host's name/IP)
    key_file: tls/agent.key
    ca_file: tls/popcorn-ca.pem       # the agents authority first (it must have signed each
                                      # client certificate), then its issuers up to the root
    allowed_client_subjects: [popcorn-runbook, "CN=oncall,O=Popcorn"]
    scripts_dir: actions              # NAME.yaml manifests beside their scripts
    allowed_log_files: [/var/log/nginx/error.log, "/var/log/popcorn/*.log"]
    allowed_services: [nginx, varnish]
    restart_command: [systemctl, restart, "{name}"]
    service_pidfiles: {varnish: /run/varnishd.pid}   # used when systemd is absent
    audit_log: /var/log/popcorn/bolt-audit.jsonl
    popcorn_url: https://popcorn.example.net
    token: "..."                      # Popcorn API token for heartbeats
    device: oca-lax-017               # the inventory device this host is
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from popcorn.remediation.agent.errors import ConfigError

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._:+-]{0,255}$")

_PATH_FIELDS = (
    "cert_file",
    "key_file",
    "ca_file",
    "scripts_dir",
    "audit_log",
    "disk_health_file",
    "popcorn_ca",
)


def _default_audit_log() -> Path:
    return Path(os.environ.get("POPCORN_HOME", ".popcorn")) / "bolt-audit.jsonl"


class AgentConfig(BaseModel):
    """Everything one agent needs; unknown keys are refused so typos do not go unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    cert_file: Path
    key_file: Path
    ca_file: Path
    allowed_client_subjects: list[str] = Field(default_factory=list)

    scripts_dir: Path | None = None
    action_modules: list[str] = Field(default_factory=list)
    allowed_log_files: list[str] = Field(default_factory=list)
    allowed_services: list[str] = Field(default_factory=list)
    restart_command: list[str] = Field(default_factory=lambda: ["systemctl", "restart", "{name}"])
    service_check: Literal["auto", "systemd", "pidfile", "process"] = "auto"
    service_pidfiles: dict[str, Path] = Field(default_factory=dict)
    service_processes: dict[str, str] = Field(default_factory=dict)
    disk_health_file: Path | None = None
    smartctl: str | None = "smartctl"

    output_cap_bytes: int = Field(default=1024 * 1024, ge=1024)
    default_timeout: float = Field(default=30.0, gt=0)
    kill_grace: float = Field(default=2.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_concurrent_runs: int = Field(default=8, ge=1)
    idle_timeout: float = Field(default=30.0, gt=0)
    audit_log: Path = Field(default_factory=_default_audit_log)

    popcorn_url: str | None = None
    token: str | None = None
    agent_name: str = Field(default_factory=socket.gethostname)
    device: str | None = None
    advertise_url: str | None = None
    heartbeat_interval: float = Field(default=30.0, gt=0)
    popcorn_ca: Path | None = None

    @field_validator("allowed_services")
    @classmethod
    def _service_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not SERVICE_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid service name")
        return names

    @field_validator("restart_command")
    @classmethod
    def _restart_command(cls, argv: list[str]) -> list[str]:
        if not argv or not any("{name}" in part for part in argv):
            raise ValueError("must be a non-empty argv list with a '{name}' element")
        return argv

    @field_validator("allowed_log_files")
    @classmethod
    def _log_paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not os.path.isabs(path) or os.path.normpath(path) != path:
                raise ValueError(f"{path!r} must be an absolute, normalized path")
        return paths

    @property
    def url(self) -> str:
        """The address Popcorn and runbooks use to reach this agent."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"


def load_config(path: str | Path) -> AgentConfig:
    """Read an agent config file; errors name the file and the offending field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    return config_from_mapping(data, base_dir=path.parent, source=str(path))


def config_from_mapping(
    data: dict[str, Any], *, base_dir: Path | None = None, source: str = "config"
) -> AgentConfig:
    """Build a config from a mapping, resolving relative paths against `base_dir`."""
    data = dict(data)
    if base_dir is not None:
        for key in _PATH_FIELDS:
            value = data.get(key)
            if isinstance(value, str) and value and not os.path.isabs(value):
                data[key] = str(base_dir / value)
        pidfiles = data.get("service_pidfiles")
        if isinstance(pidfiles, dict):
            data["service_pidfiles"] = {
                name: str(base_dir / p) if isinstance(p, str) and not os.path.isabs(p) else p
                for name, p in pidfiles.items()
            }
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc
