"""Metaflow's datastore follows the platform's object store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from popcorn.config import reset_settings
from popcorn.ml.runner import metaflow_env


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("METAFLOW_DEFAULT_DATASTORE", "METAFLOW_DATASTORE_SYSROOT_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("METAFLOW_S3_ENDPOINT_URL", raising=False)
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def test_an_s3_store_puts_flow_artifacts_in_the_bucket(settings: pytest.MonkeyPatch) -> None:
    reset_settings()
    assert metaflow_env()["METAFLOW_DEFAULT_DATASTORE"] == "local"
    settings.setenv("POPCORN_STORAGE_URL", "s3://models/popcorn/")
    settings.setenv("POPCORN_STORAGE_ENDPOINT_URL", "http://minio.internal:9000")
    reset_settings()
    env = metaflow_env()
    assert env["METAFLOW_DEFAULT_DATASTORE"] == "s3"
    assert env["METAFLOW_DATASTORE_SYSROOT_S3"] == "s3://models/popcorn/metaflow"
    assert env["METAFLOW_S3_ENDPOINT_URL"] == "http://minio.internal:9000"
    settings.setenv("METAFLOW_DEFAULT_DATASTORE", "local")  # an admin's own choice wins
    assert metaflow_env()["METAFLOW_DEFAULT_DATASTORE"] == "local"
