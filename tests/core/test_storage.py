"""The object store: the same behaviour on a local directory and on S3 (moto over HTTP)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.storage import LocalStore, ObjectStore, S3Store


@pytest.fixture(params=["local", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "objects")
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"objects-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    yield S3Store(f"s3://{bucket}/popcorn", endpoint_url=endpoint, profile=None)


def test_put_get_list_delete(store: ObjectStore) -> None:
    stored = store.put("runs/1/output.ipynb", b'{"cells": []}')
    assert stored.size == 13 and stored.sha256 is not None
    store.put("runs/2/output.ipynb", b"two")
    store.put("models/a.pkl", b"model")
    assert store.get("runs/1/output.ipynb") == b'{"cells": []}'
    assert [o.key for o in store.list("runs/")] == ["runs/1/output.ipynb", "runs/2/output.ipynb"]
    with store.local_copy("models/a.pkl") as path:
        assert path.read_bytes() == b"model"
    store.delete("runs/2/output.ipynb")
    assert not store.exists("runs/2/output.ipynb")
    with pytest.raises(NotFound):
        store.get("runs/2/output.ipynb")


def test_immutable_objects_are_never_replaced(store: ObjectStore) -> None:
    store.put("runs/7/output.ipynb", b"first", immutable=True)
    store.put("runs/7/output.ipynb", b"first", immutable=True)  # the same content again: fine
    with pytest.raises(Conflict):
        store.put("runs/7/output.ipynb", b"second", immutable=True)
    assert store.get("runs/7/output.ipynb") == b"first"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", "a//b", "", "a/./b", "x\n"])
def test_keys_cannot_escape(key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        LocalStore(tmp_path).put(key, b"x")
