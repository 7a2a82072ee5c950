"""Traffic fixtures: a real moto server over HTTP for the AWS execution primitives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


@pytest.fixture
def moto_client_kwargs(moto_endpoint: str) -> dict[str, str]:
    """Endpoint and throwaway credentials for boto3 clients, so no real account is touched."""
    return {
        "endpoint_url": moto_endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_session_token": "testing",
    }


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Throwaway credentials in the environment, where boto3 (and a worker) find them."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def sandbox(moto_endpoint: str, aws_env: dict[str, str]) -> dict[str, Any]:
    """Three generated regions (demand at 75% of capacity) bound to fresh Auto Scaling groups
    and a fresh weighted record on the moto server, with the endpoint in the settings."""
    from popcorn.db import session_scope
    from popcorn.traffic import executions as execution_service
    from popcorn.traffic import world as world_service

    prefix = f"t{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        world = world_service.generate_world(session=session, seed=1)
        bound = execution_service.bind_sandbox(
            session=session, endpoint_url=moto_endpoint, prefix=prefix
        )
    return {**world, **bound, "endpoint": moto_endpoint, "prefix": prefix}
