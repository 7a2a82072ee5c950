"""Issuer and destination plugins, registered by slug.

An authority row names its issuer plugin (`popcorn-ca` is Popcorn's own CA);
an external CA (an ACME client, a cloud PCA, a vendor's API) registers a
factory with `register_issuer`. Plugins that sign later return a
`PendingCertificate` and implement `fetch_certificate`, which the
`certificates.complete_pending` job polls. Destination kinds have their own
registry, in `destinations.py`.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from popcorn.certificates.ca import (
    Authority,
    IssuedCertificate,
    IssuerPlugin,
    LocalCAIssuer,
)

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
