"""Key export: the one way a private key leaves Popcorn to a person (admin, audited)."""

from __future__ import annotations

import base64

from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.certificates import ca
from popcorn.certificates.keystore import export_pkcs12
from popcorn.certificates.schemas import (
    Export,
    ExportRead,
)
from popcorn.certificates.service.common import engine_errors, get_certificate, slug, unseal
from popcorn.errors import Conflict
from popcorn.outbox import emit

# --------------------------------------------------------------------------- export


def export_certificate(*, session: Session, certificate_id: int, spec: Export) -> ExportRead:
    """The certificate with its private key, as PEM or PKCS#12; always audited."""
    row = get_certificate(session=session, certificate_id=certificate_id)
    if row.status == "pending":
        raise Conflict(f"certificate {row.id} is pending and has nothing to export yet")
    key_pem = (
        unseal(row.private_key_encrypted, row.sha256_fingerprint or "")
        if row.private_key_encrypted is not None
        else None
    )
    filename = slug(row.name)
    if spec.format == "pem":
        result = ExportRead(
            format="pem",
            filename=f"{filename}.pem",
            certificate_pem=row.certificate_pem,
            chain_pem=row.chain_pem,
            private_key_pem=key_pem,
        )
    else:
        if key_pem is None:
            raise Conflict(
                f"certificate {row.id} has no private key in Popcorn (it was issued from a CSR "
                "or imported without one); PKCS#12 needs the key"
            )
        with engine_errors():
            chain = ca.parse_pem_bundle(row.chain_pem) if row.chain_pem.strip() else []
            data = export_pkcs12(
                ca.load_certificate(row.certificate_pem),
                ca.load_private_key(key_pem),
                chain,
                password=spec.password or "",
                friendly_name=row.name,
                legacy=spec.legacy,
            )
        result = ExportRead(
            format="pkcs12",
            filename=f"{filename}.p12",
            pkcs12_base64=base64.b64encode(data).decode("ascii"),
        )
    record_change(
        session,
        "export",
        "certificate",
        row.id,
        after={"format": spec.format, "private_key": key_pem is not None, "name": row.name},
    )
    emit(
        session,
        "certificates.certificate.exported",
        "certificate",
        row.id,
        {"name": row.name, "format": spec.format, "private_key": key_pem is not None},
    )
    return result
