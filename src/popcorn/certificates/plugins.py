"""Issuer and destination plugins, registered by slug.

An authority row names its issuer plugin (`popcorn-ca` is Popcorn's own CA);
an external CA (an ACME client, a cloud PCA, a vendor's API) registers a
factory with `register_issuer`. Plugins that sign later return a
`PendingCertificate` and implement `fetch_certificate`, which the
`certificates.complete_pending` job polls. Destinations are built from a
row's kind and options; `pkcs12` writes a password-protected PKCS#12 file.
"""

from __future__ import annotations

import os
import re
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from popcorn.certificates.ca import (
    Authority,
    IssuedCertificate,
    IssuerPlugin,
    LocalCAIssuer,
    load_certificate,
    load_private_key,
    parse_pem_bundle,
)
from popcorn.certificates.destinations import (
    ACMDestination,
    BundleError,
    CertificateBundle,
    Deployment,
    DeploymentError,
    Destination,
    DirectoryDestination,
    IAMServerCertificateDestination,
    S3Destination,
    atomic_write,
)
from popcorn.certificates.keystore import export_pkcs12

LOCAL_ISSUER = "popcorn-ca"


@dataclass(frozen=True)
class IssuerContext:
    """What a plugin factory gets: the authority's name, options, and its CA when local."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    certificate: x509.Certificate | None = None
    signing: Authority | None = None


class PendingIssuerPlugin(IssuerPlugin):
    """An issuer that may answer later: the job asks it again with the id it gave."""

    @abstractmethod
    def fetch_certificate(self, external_id: str) -> IssuedCertificate | None:
        """The signed certificate once ready, None while still pending; raise if refused."""


IssuerFactory = Callable[[IssuerContext], IssuerPlugin]
ISSUERS: dict[str, IssuerFactory] = {}


def register_issuer(slug: str, factory: IssuerFactory) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,79}", slug):
        raise ValueError(f"slug: {slug!r} must be lowercase letters, digits and dashes")
    ISSUERS[slug] = factory


def _local(context: IssuerContext) -> IssuerPlugin:
    if context.signing is None:
        raise ValueError(f"authority {context.name}: no signing key stored")
    return LocalCAIssuer(context.signing)


register_issuer(LOCAL_ISSUER, _local)


# --------------------------------------------------------------------------- destinations


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


DESTINATION_KINDS = ("directory", "s3", "aws-iam", "aws-acm", "pkcs12")


def build_destination(kind: str, options: dict[str, Any], secret: str | None) -> Destination:
    """The engine destination for a stored row (options were validated when it was created)."""
    if kind == "directory":
        return DirectoryDestination(options["path"])
    if kind == "s3":
        return S3Destination(
            options["bucket"],
            prefix=options.get("prefix", ""),
            sse=options.get("sse", "AES256"),
            kms_key_id=options.get("kms_key_id"),
            region=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
        )
    if kind == "aws-iam":
        return IAMServerCertificateDestination(
            path=options.get("path", "/"), endpoint_url=options.get("endpoint_url")
        )
    if kind == "aws-acm":
        return ACMDestination(
            certificate_arn=options.get("certificate_arn"),
            tags=options.get("tags"),
            region=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
        )
    if kind == "pkcs12":
        return PKCS12Destination(
            options["path"], password=secret or "", legacy=bool(options.get("legacy"))
        )
    raise ValueError(f"kind: {kind!r} is not one of {', '.join(DESTINATION_KINDS)}")
