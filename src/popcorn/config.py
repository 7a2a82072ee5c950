"""Effective settings: environment, then `popcorn.toml`, then defaults.

Every process of one installation (API, workers, scheduler, CLI) must agree on
the same home, database, Redis and secret, so all of them read settings here.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from popcorn.redis_urls import check_redis_url, mask_redis_url

SECRET_FILE_NAME = "secret_key"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
ENV_PREFIX = "popcorn_"


def _toml_values(names: Collection[str]) -> dict[str, Any]:
    """The settings in `popcorn.toml` (POPCORN_CONFIG, POPCORN_HOME or the working directory)."""
    path = config_file_path()
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    section = data.get("popcorn", data)
    return {k: v for k, v in section.items() if k in names}


def _environment_values(names: Collection[str]) -> dict[str, str]:
    """`POPCORN_<NAME>` variables, the name in any case."""
    environ = {key.lower(): value for key, value in os.environ.items()}
    return {name: environ[ENV_PREFIX + name] for name in names if ENV_PREFIX + name in environ}


def config_file_path() -> Path | None:
    explicit = os.environ.get("POPCORN_CONFIG")
    if explicit:
        return Path(explicit)
    home = Path(os.environ.get("POPCORN_HOME", ".popcorn"))
    for candidate in (home / "popcorn.toml", Path("popcorn.toml")):
        if candidate.is_file():
            return candidate
    return None


class Settings(BaseModel):
    """Arguments first, then `POPCORN_*` variables, then `popcorn.toml`, then defaults.

    A plain pydantic model reading its two sources itself: pydantic-settings loaded a dozen
    settings sources (cloud vaults, dotenv, CLI parsing) into every process for these two.
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    home: Path = Field(default=Path(".popcorn"), description="Where embedded data lives.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite if unset.")
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://, rediss://, unix://, or redis+sentinel://host:26379,"
        "host2:26379/service/db for a Sentinel-managed Redis); embedded Redis if unset.",
    )
    secret_key: str | None = Field(default=None, description="Signs sessions, encrypts secrets.")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="Largest request body.")
    job_timeout: int = Field(default=600, description="Default job timeout in seconds.")
    job_retries: int = Field(default=3, description="Default retries for a failing job.")
    job_lost_after: float = Field(
        default=30.0,
        ge=2.0,
        description="Seconds after which a job whose worker went silent (no heartbeat while "
        "running, or claimed by rq but never started) is taken as lost and sent again.",
    )
    scheduler_lease_seconds: float = Field(
        default=15.0,
        ge=1.0,
        description="How long the active scheduler's lease (and the outbox dispatcher's) lasts "
        "without renewal: a standby scheduler on another machine takes over within this.",
    )
    signals_chunk_size: int = Field(
        default=500,
        ge=10,
        description="Signals per job when an alert analysis runs as jobs: larger analyses are "
        "split into chunks that any worker runs, merged into one ranking.",
    )
    signals_remote_write_max_inflight: int = Field(
        default=2,
        ge=0,
        description="Remote-write requests this machine stores at once, all web workers "
        "together; one more waits up to a second for a turn, then is answered 429 with "
        "Retry-After (senders need retry_on_http_429). Keep it below the web workers so the "
        "API stays served during a flood; 0 turns the limit off.",
    )
    log_level: str = Field(default="INFO")
    public_url: str | None = Field(
        default=None,
        description="The URL clients reach this installation at (CRL and OCSP links, console "
        "links); http://127.0.0.1:8000 style.",
    )
    plugins: str = Field(
        default="",
        description="Comma-separated modules every process imports at start: your own "
        "tasks, outbox subscribers and runbook packs.",
    )
    outbound_allow: str = Field(
        default="",
        description="Comma-separated hosts, host:port pairs, CIDR blocks or URL prefixes that "
        "the platform may call out to (webhooks, Prometheus pulls, S3 endpoints). Empty: none. "
        "Loopback, link-local and cloud metadata addresses are refused unless listed here.",
    )
    storage_url: str = Field(
        default="",
        description="Where stored objects (notebook outputs, model artifacts) live: empty for "
        "`<home>/objects`, a directory, or `s3://bucket/prefix` so that every machine shares them.",
    )
    storage_endpoint_url: str = Field(
        default="", description="S3 endpoint for MinIO, Ceph or another S3-compatible store."
    )
    storage_profile: str = Field(
        default="", description="AWS profile for the object store; the default chain if empty."
    )
    machine_name: str = Field(
        default="",
        description="This machine's name in the machines table (default: the hostname); give "
        "containers whose hostname changes at each start a stable one.",
    )
    ml_flows_dir: str = Field(
        default="",
        description="A directory of your own Metaflow flow files (`*.py`) that `popcorn ml` "
        "lists and runs beside the shipped ones.",
    )
    packs_dir: str = Field(
        default="",
        description="Directories of your own runbook packs, joined with `:`; `<home>/packs` if "
        "empty.",
    )
    bolt_dir: str = Field(
        default="",
        description="Where the runbook client's certificate for Bolt agents lives (client.pem, "
        "client.key, ca.pem); `<home>/bolt` if empty.",
    )
    studio_rate_per_s: float = Field(
        default=50.0,
        ge=0,
        allow_inf_nan=False,
        description="Studio API requests a token may make per second, refilled into its bucket; "
        "0 turns the limit off.",
    )
    studio_rate_burst: int = Field(
        default=200, ge=1, description="Studio API requests a token may make at once."
    )
    devicelab_offline_s: float = Field(
        default=30.0,
        ge=0.5,
        description="Seconds without an agent heartbeat after which the device lab marks a "
        "device offline and reschedules its running tests.",
    )
    notebooks_run_as: str = Field(
        default="",
        description="An unprivileged OS user that notebook kernels and spark-submit run as, so "
        "an operator's job cannot read POPCORN_HOME; workers then need root or CAP_SETUID, "
        "CAP_SETGID and CAP_CHOWN. Empty: jobs run as the worker's user, and only admins may "
        "create or change notebook and Spark jobs (callable jobs are always admins').",
    )
    deploy_roots: str = Field(
        default="",
        description="Comma-separated directories under which directory destinations may "
        "write certificates and keys. Empty: none.",
    )

    @field_validator("redis_url")
    @classmethod
    def _known_redis_url(cls, value: str | None) -> str | None:
        """A wrong Redis URL stops every process at start, in one line, not at first use."""
        return check_redis_url(value) if value else None

    def __init__(self, **values: Any) -> None:
        names = type(self).model_fields
        super().__init__(**{**_toml_values(names), **_environment_values(names), **values})

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{(self.home / 'popcorn.db').resolve()}"

    @property
    def effective_secret_key(self) -> str:
        """The configured secret, or one generated once and kept in POPCORN_HOME."""
        if self.secret_key:
            return self.secret_key
        path = self.home / SECRET_FILE_NAME
        if path.exists():
            make_private(path)
            return path.read_text().strip()
        ensure_home(self.home)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        try:
            os.write(fd, key.encode())
        finally:
            os.close(fd)
        return key

    def masked(self) -> dict[str, Any]:
        """Settings as shown to people: secrets and passwords replaced by stars."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            shown[name] = str(value) if isinstance(value, Path) else value
        shown["database_url"] = _mask_url(self.effective_database_url)
        shown["redis_url"] = mask_redis_url(self.redis_url) if self.redis_url else "embedded"
        shown["secret_key"] = "********" if self.secret_key else "generated (in home)"
        shown["config_file"] = str(config_file_path() or "")
        return shown


def ensure_home(home: Path) -> Path:
    """POPCORN_HOME, created (or tightened to) 0700: it holds the database, Redis's files
    and the secret key, none of which anyone else on the machine may read."""
    home.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    make_private(home, PRIVATE_DIR)
    return home


def make_private(path: Path, mode: int = PRIVATE_FILE) -> None:
    """Take group and other permissions off a file or folder of ours that has them."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        path.chmod(mode)


@contextmanager
def private_umask() -> Iterator[None]:
    """Files created inside (and by daemons started inside) are readable by their owner only."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def normalize_database_url(url: str) -> str:
    """Let users write plain `postgresql://` URLs and still get psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _mask_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:****@{host}"
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and `popcorn` subcommands that change the environment)."""
    get_settings.cache_clear()
