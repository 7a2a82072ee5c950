"""Object storage: where the files the platform keeps live (signal samples, notebook outputs,
model artifacts, studio uploads).

A directory under the installation's home by default. With `storage_url = "s3://bucket/prefix"`
it is an S3-compatible bucket (`storage_endpoint_url` for MinIO, Ceph or moto; credentials from
`storage_profile` or the usual AWS chain), so every process on every machine sees the same
objects. Callers name objects by key and never by path, so the two behave the same.
Parquet readers get a pyarrow filesystem and base path (`arrow()`) so that they still skip
row groups by their statistics instead of fetching whole objects.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from popcorn.config import PRIVATE_DIR, get_settings
from popcorn.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    import pyarrow.fs

KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+@-]*(/[A-Za-z0-9][A-Za-z0-9._=+@-]*)*$")
MAX_KEY = 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None = None


def check_key(key: str) -> str:
    """Keys are relative, slash-separated names: no `..`, no leading slash, no control bytes."""
    if (
        len(key) > MAX_KEY
        or not KEY.fullmatch(key)
        or any(p in {".", ".."} for p in key.split("/"))
    ):
        raise InvalidInput(f"not a valid object key: {key[:80]!r}", details={"key": key[:200]})
    return key


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ObjectStore(Protocol):
    """What every backend does; `immutable=True` refuses to replace different content."""

    location: str

    def put(self, key: str, data: bytes, *, immutable: bool = False) -> StoredObject: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> list[StoredObject]: ...

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A file holding the object, for programs that need a path (kernels, loaders)."""
        ...

    def arrow(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """A pyarrow filesystem and the base path that keys are relative to."""
        ...


class LocalStore:
    """Objects as files under a directory, written atomically (temp file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, *, immutable: bool = False) -> StoredObject:
        path = self._path(key)
        if immutable and path.exists():
            if _digest(path.read_bytes()) == _digest(data):
                return StoredObject(key, len(data), _digest(data))
            raise Conflict(f"object {key} exists and is immutable", details={"key": key})
        path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if immutable:
                try:
                    os.link(tmp, path)  # fails if another writer got there first
                except FileExistsError:
                    raise Conflict(f"object {key} was just written", details={"key": key}) from None
            else:
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return StoredObject(key, len(data), _digest(data))

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no stored object {key}", details={"key": key})
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[StoredObject]:
        base = self.root / prefix if prefix else self.root
        if prefix:
            check_key(prefix.rstrip("/"))
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        found = []
        for path in sorted(start.rglob("*")):
            if path.is_file() and not path.name.startswith(".put-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(StoredObject(key, path.stat().st_size))
        return found

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no stored object {key}", details={"key": key})
        yield path

    def arrow(self) -> tuple[pyarrow.fs.FileSystem, str]:
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem(), str(self.root)


class S3Store:
    """Objects in an S3-compatible bucket under a prefix."""

    def __init__(self, url: str, *, endpoint_url: str | None, profile: str | None) -> None:
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise InvalidInput(f"storage_url needs a bucket: {url}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = url
        self.endpoint_url = endpoint_url or None
        self.session = boto3.session.Session(profile_name=profile or None)
        self.client: Any = self.session.client("s3", endpoint_url=self.endpoint_url)
        self._arrow: tuple[int, pyarrow.fs.FileSystem] | None = None

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _missing(self, error: Exception) -> bool:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        return code in {"404", "NoSuchKey", "NotFound"}

    def put(self, key: str, data: bytes, *, immutable: bool = False) -> StoredObject:
        digest = _digest(data)
        if immutable and self.exists(key):
            if _digest(self.get(key)) == digest:
                return StoredObject(key, len(data), digest)
            raise Conflict(f"object {key} exists and is immutable", details={"key": key})
        self.client.put_object(
            Bucket=self.bucket, Key=self._name(key), Body=data, Metadata={"sha256": digest}
        )
        return StoredObject(key, len(data), digest)

    def get(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as error:
            if self._missing(error):
                raise NotFound(f"no stored object {key}", details={"key": key}) from None
            raise
        return bytes(answer["Body"].read())

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as error:
            if self._missing(error):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def list(self, prefix: str = "") -> list[StoredObject]:
        strip = f"{self.prefix}/" if self.prefix else ""
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=strip + prefix
        ):
            for item in page.get("Contents", []):
                found.append(StoredObject(item["Key"][len(strip) :], int(item["Size"])))
        return found

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="popcorn-object-") as folder:
            path = Path(folder) / Path(key).name
            path.write_bytes(self.get(key))
            yield path

    def arrow(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """pyarrow's own S3 client with boto3's credentials, one per process (not fork-safe)."""
        import pyarrow.fs

        base = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        if self._arrow is not None and self._arrow[0] == os.getpid():
            return self._arrow[1], base
        credentials = self.session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials else None
        options: dict[str, Any] = {"region": self.session.region_name or "us-east-1"}
        if frozen is not None:
            options.update(
                access_key=frozen.access_key,
                secret_key=frozen.secret_key,
                session_token=frozen.token,
            )
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            options.update(endpoint_override=host.rstrip("/"), scheme=scheme)
        filesystem = pyarrow.fs.S3FileSystem(**options)
        self._arrow = (os.getpid(), filesystem)
        return filesystem, base


@lru_cache(maxsize=4)
def _store(url: str, endpoint: str, profile: str, home: str) -> ObjectStore:
    if url.startswith("s3://"):
        return S3Store(url, endpoint_url=endpoint or None, profile=profile or None)
    if url and not url.startswith(("file://", "/")):
        raise InvalidInput(f"storage_url must be s3://bucket/prefix or a directory: {url}")
    root = Path(url.removeprefix("file://")) if url else Path(home) / "objects"
    return LocalStore(root)


def get_store() -> ObjectStore:
    """The installation's object store, from settings (one instance per configuration)."""
    settings = get_settings()
    return _store(
        settings.storage_url,
        settings.storage_endpoint_url,
        settings.storage_profile,
        str(settings.home.resolve()),
    )
