"""Reaching an AWS account: a boto3 session from a profile, sealed keys or an assumed role,
and the one retry policy (backoff on throttling) every watcher and repo call goes through.

Credential failures are told apart from the rest, so a poll can mark its account degraded
without stopping the other accounts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from popcorn.config import get_settings
from popcorn.sealing import KeyStore

T = TypeVar("T")
SEAL_CONTEXT = "popcorn/security/aws-secret-key"
THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestThrottled",
    }
)
CREDENTIALS = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AuthFailure",
        "InvalidAccessKeyId",
        "AccessDenied",
        "AccessDeniedException",
    }
)


class CredentialsFailed(Exception):
    """The account's credentials were refused or could not be found."""


class CloudFailed(Exception):
    """An AWS call failed for another reason (after retries when throttled)."""


def keystore() -> KeyStore:
    return KeyStore(get_settings().effective_secret_key, context=SEAL_CONTEXT)


@dataclass
class Target:
    """What a watcher needs to reach one account: how to sign and where to send."""

    profile: str = ""
    access_key_id: str = ""
    secret_sealed: str = ""
    role_arn: str = ""
    endpoint_url: str = ""
    retries: int = 4
    base_delay: float = 0.2

    def credentials(self) -> dict[str, Any]:
        """Signing keys for this account: a profile's, sealed keys, the default chain's,
        then (with a role ARN) the assumed role's."""
        import boto3
        import botocore.exceptions

        try:
            if self.access_key_id:
                creds = {
                    "aws_access_key_id": self.access_key_id,
                    "aws_secret_access_key": keystore().decrypt_text(self.secret_sealed),
                }
            else:
                found = boto3.Session(profile_name=self.profile or None).get_credentials()
                if found is None:
                    raise CredentialsFailed("no AWS credentials found")
                frozen = found.get_frozen_credentials()
                creds = {
                    "aws_access_key_id": frozen.access_key,
                    "aws_secret_access_key": frozen.secret_key,
                    "aws_session_token": frozen.token,
                }
        except botocore.exceptions.ProfileNotFound as exc:
            raise CredentialsFailed(str(exc)) from exc
        except ValueError as exc:  # a sealed secret that no longer opens
            raise CredentialsFailed(f"stored secret key: {exc}") from exc
        if not self.role_arn:
            return creds
        sts = _client("sts", creds, self._client_kwargs("us-east-1"))
        got = self.call(
            lambda: sts.assume_role(RoleArn=self.role_arn, RoleSessionName="popcorn-security")
        )["Credentials"]
        return {
            "aws_access_key_id": got["AccessKeyId"],
            "aws_secret_access_key": got["SecretAccessKey"],
            "aws_session_token": got["SessionToken"],
        }

    def _client_kwargs(self, region: str) -> dict[str, Any]:
        from botocore.config import Config

        kwargs: dict[str, Any] = {
            "region_name": region,
            # One retry policy, ours: botocore's own would hide throttling from the report.
            "config": Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5),
        }
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return kwargs

    def clients(self, region: str, credentials: dict[str, Any] | None = None) -> Clients:
        return Clients(self, credentials or self.credentials(), region)

    def call(self, fn: Callable[[], T], *, counter: list[int] | None = None) -> T:
        """Run one AWS call: back off and retry on throttling, classify everything else."""
        import botocore.exceptions

        attempt = 0
        while True:
            try:
                return fn()
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in THROTTLING and attempt < self.retries:
                    attempt += 1
                    if counter is not None:
                        counter[0] += 1
                    time.sleep(self.base_delay * 2 ** (attempt - 1))
                    continue
                if code in CREDENTIALS:
                    raise CredentialsFailed(f"{code}: {exc}") from exc
                raise CloudFailed(f"{code}: {exc}") from exc
            except botocore.exceptions.NoCredentialsError as exc:
                raise CredentialsFailed(str(exc)) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise CloudFailed(str(exc)) from exc


class Clients:
    """boto3 clients of one session and region, made once each."""

    def __init__(self, target: Target, credentials: dict[str, Any], region: str) -> None:
        self.target = target
        self.credentials = credentials
        self.region = region
        self.retried = [0]
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = _client(
                service, self.credentials, self.target._client_kwargs(self.region)
            )
        return self._made[service]

    def call(self, fn: Callable[[], T]) -> T:
        return self.target.call(fn, counter=self.retried)

    def pages(self, service: str, operation: str, key: str, **kwargs: Any) -> list[Any]:
        """Every element of `key` over all pages (each page retried on its own)."""
        client = self(service)
        out: list[Any] = []
        token_in, token_out = _TOKENS.get((service, operation), ("Marker", "Marker"))
        request = dict(kwargs)
        while True:
            page = self.call(lambda: getattr(client, operation)(**request))
            out.extend(page.get(key, []))
            token = page.get(token_out)
            if not token or (token_out == "Marker" and not page.get("IsTruncated", True)):
                return out
            request[token_in] = token


_FACTORY: list[Any] = []
_FACTORY_LOCK = threading.Lock()


def _client(service: str, credentials: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """A client from one shared boto3 session, so service models load once per process;
    the keys are given to each client, never stored on the shared session."""
    import boto3

    with _FACTORY_LOCK:
        if not _FACTORY:
            _FACTORY.append(boto3.Session())
        return _FACTORY[0].client(service, **credentials, **kwargs)


_TOKENS: dict[tuple[str, str], tuple[str, str]] = {
    ("iam", "list_roles"): ("Marker", "Marker"),
    ("iam", "list_users"): ("Marker", "Marker"),
    ("iam", "list_groups"): ("Marker", "Marker"),
    ("iam", "list_policies"): ("Marker", "Marker"),
    ("ec2", "describe_security_groups"): ("NextToken", "NextToken"),
    ("elbv2", "describe_load_balancers"): ("Marker", "NextMarker"),
    ("kms", "list_keys"): ("Marker", "NextMarker"),
    ("sqs", "list_queues"): ("NextToken", "NextToken"),
    ("sns", "list_topics"): ("NextToken", "NextToken"),
    ("lambda", "list_functions"): ("Marker", "NextMarker"),
    ("s3", "list_objects_v2"): ("ContinuationToken", "NextContinuationToken"),
    ("iam", "list_role_policies"): ("Marker", "Marker"),
    ("iam", "list_attached_role_policies"): ("Marker", "Marker"),
}
