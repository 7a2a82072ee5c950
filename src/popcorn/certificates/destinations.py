"""Destinations: where Popcorn deploys a certificate once it is issued or renewed.

A directory on a host (what nginx, HAProxy or Envoy read), a PKCS#12 file, an
S3 bucket, an AWS IAM server certificate (classic ELB, CloudFront) and AWS
Certificate Manager. Each destination checks the bundle first, so a mismatched
key is refused before anything is written.

Destination kinds form a registry, like issuers in `plugins.py`: a kind is one
`register_destination(DestinationKind(...))` call naming its options schema,
how to build it from a stored row, and what it reaches (a local directory
checked against the deploy roots, or an endpoint checked against the outbound
allow-list). Adding a kind touches only the module that registers it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from popcorn.certificates.ca import (
    CertificateError,
    IssuedCertificate,
    certificates_to_pem,
    is_issued_by,
    keys_match,
    load_certificate,
    load_private_key,
    parse_pem_bundle,
)
from popcorn.certificates.keystore import export_pkcs12
from popcorn.schemas import Schema


class BundleError(CertificateError):
    """The certificate, chain and key given for deployment do not fit together."""


class DeploymentError(RuntimeError):
    """The destination refused or failed the deployment."""


@dataclass(frozen=True)
class CertificateBundle:
    """What gets deployed: a certificate, its chain (issuer first) and usually its key."""

    name: str
    certificate_pem: str
    chain_pem: str = ""
    private_key_pem: str | None = None

    @classmethod
    def from_issued(
        cls, name: str, issued: IssuedCertificate, *, include_root: bool = False
    ) -> CertificateBundle:
        """Servers send intermediates only: the root is left out unless asked for."""
        chain = list(issued.chain)
        if chain and not include_root and chain[-1].subject == chain[-1].issuer:
            chain.pop()
        return cls(name, issued.certificate_pem, certificates_to_pem(chain), issued.private_key_pem)

    @property
    def fullchain_pem(self) -> str:
        return _pem_text(self.certificate_pem) + _pem_text(self.chain_pem)

    def validate(self, *, require_key: bool) -> None:
        """Refuse a bundle whose parts do not belong together."""
        if not self.name:
            raise BundleError("name: must not be empty")
        try:
            certificate = load_certificate(self.certificate_pem)
            chain = parse_pem_bundle(self.chain_pem) if self.chain_pem.strip() else []
        except CertificateError as exc:
            raise BundleError(str(exc)) from None
        child = certificate
        for issuer in chain:
            if not is_issued_by(child, issuer):
                raise BundleError(
                    f"chain: {issuer.subject.rfc4514_string()} did not issue "
                    f"{child.subject.rfc4514_string()}"
                )
            child = issuer
        if self.private_key_pem is None:
            if require_key:
                raise BundleError("private_key: required by this destination")
            return
        try:
            key = load_private_key(self.private_key_pem)
        except CertificateError as exc:
            raise BundleError(str(exc)) from None
        if not keys_match(certificate, key):
            raise BundleError("private_key: does not match the certificate")


def _pem_text(pem: str) -> str:
    text = pem.strip()
    return text + "\n" if text else ""


@dataclass(frozen=True)
class Deployment:
    """Where a bundle landed, for the slice to record."""

    kind: str
    location: str
    details: dict[str, str] = field(default_factory=dict)


class Destination(ABC):
    """A place certificates are deployed to."""

    kind: ClassVar[str]

    @abstractmethod
    def deploy(self, bundle: CertificateBundle) -> Deployment:
        """Deploy `bundle`; raises BundleError for a bad bundle, DeploymentError otherwise."""


# --------------------------------------------------------------------------- directory


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class DirectoryDestination(Destination):
    """cert.pem, chain.pem, fullchain.pem and key.pem (0600) in a directory."""

    kind = "directory"

    def __init__(self, directory: str | os.PathLike[str], *, key_mode: int = 0o600) -> None:
        self.directory = Path(directory)
        self.key_mode = key_mode

    def deploy(self, bundle: CertificateBundle) -> Deployment:
        bundle.validate(require_key=False)
        key_path = self.directory / "key.pem"
        if bundle.private_key_pem is None and key_path.exists():
            existing = load_private_key(key_path.read_bytes())
            if not keys_match(load_certificate(bundle.certificate_pem), existing):
                raise BundleError(
                    f"private_key: none given and {key_path} belongs to another certificate"
                )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if bundle.private_key_pem is not None:
                atomic_write(key_path, bundle.private_key_pem.encode(), self.key_mode)
            atomic_write(self.directory / "chain.pem", _pem_text(bundle.chain_pem).encode(), 0o644)
            atomic_write(self.directory / "fullchain.pem", bundle.fullchain_pem.encode(), 0o644)
            atomic_write(
                self.directory / "cert.pem", _pem_text(bundle.certificate_pem).encode(), 0o644
            )
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise DeploymentError(f"directory {self.directory}: {exc.strerror or exc}") from exc
        return Deployment(self.kind, str(self.directory))


# --------------------------------------------------------------------------- AWS


def aws_client(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client; `endpoint_url` points it at another endpoint (a test server, a proxy)."""
    import boto3  # here, not at the top: the CLI imports this module

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def _aws_error(what: str, exc: Exception) -> DeploymentError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return DeploymentError(f"{what}: {error.get('Code', 'Error')}: {error.get('Message', '')}")
    return DeploymentError(f"{what}: {exc}")


class S3Destination(Destination):
    """PEM objects under a prefix of a bucket, encrypted server-side."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        sse: str = "AES256",
        kms_key_id: str | None = None,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        if sse not in ("AES256", "aws:kms"):
            raise BundleError(f"sse: {sse!r} is not AES256 or aws:kms")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.client = client or aws_client("s3", region=region, endpoint_url=endpoint_url)

    def _key(self, name: str, filename: str) -> str:
        return "/".join(p for p in (self.prefix, name, filename) if p)

    def deploy(self, bundle: CertificateBundle) -> Deployment:
        bundle.validate(require_key=False)
        if "/" in bundle.name or bundle.name in (".", ".."):
            raise BundleError(f"name: {bundle.name!r} cannot be an S3 key segment")
        objects = {
            "cert.pem": _pem_text(bundle.certificate_pem),
            "chain.pem": _pem_text(bundle.chain_pem),
            "fullchain.pem": bundle.fullchain_pem,
        }
        if bundle.private_key_pem is not None:
            objects["key.pem"] = bundle.private_key_pem
        extra: dict[str, str] = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        keys = []
        for filename, body in objects.items():
            key = self._key(bundle.name, filename)
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body.encode(),
                    ContentType="application/x-pem-file",
                    **extra,
                )
            except (ClientError, BotoCoreError) as exc:
                raise _aws_error(f"s3://{self.bucket}/{key}", exc) from exc
            keys.append(key)
        return Deployment(
            self.kind,
            f"s3://{self.bucket}/{self._key(bundle.name, '')}/",
            {"keys": ",".join(keys)},
        )


_IAM_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")


class IAMServerCertificateDestination(Destination):
    """An IAM server certificate, as classic load balancers and CloudFront use."""

    kind = "aws-iam"

    def __init__(
        self,
        *,
        path: str = "/",
        client: Any = None,
        endpoint_url: str | None = None,
    ) -> None:
        if not (path.startswith("/") and path.endswith("/")):
            raise BundleError(f"path: {path!r} must start and end with '/'")
        self.path = path
        self.client = client or aws_client("iam", endpoint_url=endpoint_url)

    def deploy(self, bundle: CertificateBundle) -> Deployment:
        bundle.validate(require_key=True)
        if not _IAM_NAME.match(bundle.name):
            raise BundleError(
                f"name: {bundle.name!r} is not a valid IAM name (1-128 of letters, digits, +=,.@_-)"
            )
        args: dict[str, str] = {
            "Path": self.path,
            "ServerCertificateName": bundle.name,
            "CertificateBody": _pem_text(bundle.certificate_pem),
            "PrivateKey": bundle.private_key_pem or "",
        }
        if bundle.chain_pem.strip():
            args["CertificateChain"] = _pem_text(bundle.chain_pem)
        try:
            meta = self.client.upload_server_certificate(**args)["ServerCertificateMetadata"]
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"IAM server certificate {bundle.name}", exc) from exc
        return Deployment(
            self.kind, meta["Arn"], {"server_certificate_id": meta["ServerCertificateId"]}
        )


class ACMDestination(Destination):
    """AWS Certificate Manager: a new import, or a re-import over `certificate_arn`."""

    kind = "aws-acm"

    def __init__(
        self,
        *,
        certificate_arn: str | None = None,
        tags: dict[str, str] | None = None,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.certificate_arn = certificate_arn
        self.tags = tags or {}
        self.client = client or aws_client("acm", region=region, endpoint_url=endpoint_url)

    def deploy(self, bundle: CertificateBundle) -> Deployment:
        bundle.validate(require_key=True)
        args: dict[str, Any] = {
            "Certificate": _pem_text(bundle.certificate_pem).encode(),
            "PrivateKey": (bundle.private_key_pem or "").encode(),
        }
        if bundle.chain_pem.strip():
            args["CertificateChain"] = _pem_text(bundle.chain_pem).encode()
        if self.certificate_arn:
            args["CertificateArn"] = self.certificate_arn
        else:
            tags = {"popcorn:name": bundle.name, **self.tags}
            args["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        try:
            arn = self.client.import_certificate(**args)["CertificateArn"]
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"ACM import of {bundle.name}", exc) from exc
        return Deployment(self.kind, arn)


class PKCS12Destination(Destination):
    """`<name>.p12` in a directory, protected by the destination's password (Java, Windows)."""

    kind = "pkcs12"

    def __init__(
        self, directory: str | os.PathLike[str], *, password: str, legacy: bool = False
    ) -> None:
        if not password:
            raise BundleError("password: required for a PKCS#12 destination")
        self.directory = Path(directory)
        self.password = password
        self.legacy = legacy

    def deploy(self, bundle: CertificateBundle) -> Deployment:
        bundle.validate(require_key=True)
        if not re.fullmatch(r"[\w.@+-]{1,200}", bundle.name) or bundle.name.startswith("."):
            raise BundleError(f"name: {bundle.name!r} cannot be a file name")
        chain = parse_pem_bundle(bundle.chain_pem) if bundle.chain_pem.strip() else []
        data = export_pkcs12(
            load_certificate(bundle.certificate_pem),
            load_private_key(bundle.private_key_pem or ""),
            chain,
            password=self.password,
            friendly_name=bundle.name,
            legacy=self.legacy,
        )
        path = self.directory / f"{bundle.name}.p12"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data, 0o600)
        except OSError as exc:
            raise DeploymentError(f"pkcs12 {path}: {exc.strerror or exc}") from exc
        return Deployment(self.kind, str(path))


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DestinationKind:
    """One kind of destination: its options, how to build it, and what it reaches.

    `local_path` names the option holding a directory on this host (checked
    against the deploy roots before every deploy); `endpoint` gives the URL the
    destination's client talks to (checked against the outbound allow-list).
    A kind has one or the other, so no deploy reaches an unchecked target.
    """

    kind: str
    options: type[Schema]
    build: Callable[[dict[str, Any], str | None], Destination]
    local_path: str | None = None
    endpoint: Callable[[dict[str, Any]], str] | None = None
    secret: bool = False
    """Takes a password (sealed at rest), e.g. a PKCS#12 file's."""


DESTINATIONS: dict[str, DestinationKind] = {}


def register_destination(kind: DestinationKind) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", kind.kind):
        raise ValueError(f"kind: {kind.kind!r} must be lowercase letters, digits and dashes")
    if (kind.local_path is None) == (kind.endpoint is None):
        raise ValueError(f"kind {kind.kind!r}: give exactly one of local_path and endpoint")
    DESTINATIONS[kind.kind] = kind


def destination_kind(kind: str) -> DestinationKind:
    found = DESTINATIONS.get(kind)
    if found is None:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(sorted(DESTINATIONS))}")
    return found


def aws_endpoint(service: str, options: dict[str, Any]) -> str:
    """The URL an AWS client of this destination calls: its endpoint_url, else AWS's own."""
    if options.get("endpoint_url"):
        return str(options["endpoint_url"])
    return str(aws_client(service, region=options.get("region") or "us-east-1").meta.endpoint_url)


_URL = r"^https?://\S+$"


class DirectoryOptions(Schema):
    path: str = Field(min_length=1, description="An absolute directory under a deploy root")


class PKCS12Options(Schema):
    path: str = Field(min_length=1, description="An absolute directory under a deploy root")
    legacy: bool = False


class S3Options(Schema):
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    sse: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None
    region: str | None = None
    endpoint_url: str | None = Field(default=None, pattern=_URL)


class IAMOptions(Schema):
    path: str = Field(default="/", pattern=r"^/(.*/)?$", description="The IAM path")
    endpoint_url: str | None = Field(default=None, pattern=_URL)


class ACMOptions(Schema):
    certificate_arn: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    region: str | None = None
    endpoint_url: str | None = Field(default=None, pattern=_URL)


register_destination(
    DestinationKind(
        "directory",
        DirectoryOptions,
        lambda options, _secret: DirectoryDestination(options["path"]),
        local_path="path",
    )
)
register_destination(
    DestinationKind(
        "pkcs12",
        PKCS12Options,
        lambda options, secret: PKCS12Destination(
            options["path"], password=secret or "", legacy=bool(options.get("legacy"))
        ),
        local_path="path",
        secret=True,
    )
)
register_destination(
    DestinationKind(
        "s3",
        S3Options,
        lambda options, _secret: S3Destination(
            options["bucket"],
            prefix=options.get("prefix", ""),
            sse=options.get("sse", "AES256"),
            kms_key_id=options.get("kms_key_id"),
            region=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
        ),
        endpoint=lambda options: aws_endpoint("s3", options),
    )
)
register_destination(
    DestinationKind(
        "aws-iam",
        IAMOptions,
        lambda options, _secret: IAMServerCertificateDestination(
            path=options.get("path", "/"), endpoint_url=options.get("endpoint_url")
        ),
        endpoint=lambda options: aws_endpoint("iam", options),
    )
)
register_destination(
    DestinationKind(
        "aws-acm",
        ACMOptions,
        lambda options, _secret: ACMDestination(
            certificate_arn=options.get("certificate_arn"),
            tags=options.get("tags"),
            region=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
        ),
        endpoint=lambda options: aws_endpoint("acm", options),
    )
)
