"""Security fixtures: each test gets its own AWS account on the shared moto server (moto
keeps accounts apart; a role assumed in an account acts in it), so tests never see each
other's resources and the server is never reset."""

from __future__ import annotations

import random
from typing import Any

import pytest


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Throwaway credentials in the environment, where boto3 finds them."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return env


class Sandbox:
    """A fresh account on the moto server: its id, the role Popcorn assumes, and boto3
    clients acting in it."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self.account_id = str(random.randint(10**11, 10**12 - 1))
        self.role_arn = f"arn:aws:iam::{self.account_id}:role/popcorn-audit"
        sts = boto3.client(
            "sts",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="test-setup")["Credentials"]
        self._kwargs = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, **self._kwargs)

    def account_spec(self, name: str = "prod", **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "role_arn": self.role_arn,
            "endpoint_url": self.endpoint,
            "regions": ["us-east-1"],
            **extra,
        }


@pytest.fixture
def sandbox(moto_endpoint: str, aws_env: dict[str, str]) -> Sandbox:
    return Sandbox(moto_endpoint)
