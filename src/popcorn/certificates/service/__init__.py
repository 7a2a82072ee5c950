"""Certificate management: authorities, issuance, inventory, revocation, rotation, expiry.

Everything the API, the CLI, the jobs and other domains do with certificates
goes through these functions, one module per concern (as Lemur keeps
authorities, certificates, destinations, sources and notifications apart):

- `authorities`: the CAs Popcorn signs with, their policies and bundles;
- `issuance`: issue, import and change certificates; Bolt agents' (listing and
  reading rows is `certificates.catalog`, re-exported here, which needs no CA engine);
- `revocation`: revoke, CRLs, OCSP;  `export`: keys out to a person;
- `deployments`: destinations and what was sent where;
- `rotation`: reissue, pending issuers, the daily scan;
- `discovery`: TLS sweeps;  `notifications`: expiry warnings;  `metrics`.

They take a session (the caller's transaction) and raise `popcorn.errors`
types; engine errors (`ca.CertificateError`) become `InvalidInput` naming the
field. The few functions that do network I/O (`run_discovery`, `run_scan`)
open their own short transactions around it, so no database transaction
waits on a remote host. Import from here: `from popcorn.certificates import service`.
"""

from __future__ import annotations

from popcorn.certificates.catalog import (
    EXPIRING_DAYS,
    certificate_filters,
    certificate_read,
    days_left,
    effective_status,
    list_certificates,
    status_expression,
)
from popcorn.certificates.service.authorities import (
    authority_read,
    authority_reads,
    ca_bundle,
    ca_certificate_der,
    ca_issuers_url,
    create_authority,
    crl_url,
    get_authority,
    issuer_for,
    list_authorities,
    list_issuers,
    ocsp_url,
    policy_of,
    public_base_url,
    signing_authority,
    update_authority,
)
from popcorn.certificates.service.common import (
    CRL_REFRESH_BEFORE,
    CRL_VALIDITY,
    DEFAULT_INTERVALS,
    DEFAULT_VALIDITY_DAYS,
    KEY_CONTEXT,
    PENDING_CHECK_SECONDS,
    authority_audit,
    certificate_audit,
    engine_errors,
    event_payload,
    get_certificate,
    get_destination,
    iso,
    key_store,
    seal,
    slug,
    unseal,
)
from popcorn.certificates.service.deployments import (
    create_destination,
    delete_destination,
    deploy_certificate,
    list_deployments,
    list_destinations,
)
from popcorn.certificates.service.discovery import (
    create_source,
    get_source,
    inventory_endpoints,
    list_endpoints,
    list_sources,
    queue_discovery,
    record_discovery,
    run_discovery,
)
from popcorn.certificates.service.export import (
    export_certificate,
)
from popcorn.certificates.service.issuance import (
    AgentCertificate,
    IssueMeta,
    authority_index,
    certificate_detail,
    certificate_history,
    import_certificate,
    issue_agent_certificate,
    issue_agent_credentials,
    issue_certificate,
    issue_under,
    list_certificate_reads,
    record_foreign,
    record_issued,
    update_certificate,
)
from popcorn.certificates.service.metrics import (
    EXPIRY_BUCKETS,
    SOONEST_EXPIRING,
    collect_metrics,
)
from popcorn.certificates.service.notifications import (
    list_notifications,
    send_expiry_notifications,
)
from popcorn.certificates.service.revocation import (
    current_crl,
    ocsp_response,
    publish_crl,
    refresh_crls,
    republish_crl,
    revoke_certificate,
    serve_crl,
)
from popcorn.certificates.service.rotation import (
    complete_pending,
    finish_rotation,
    queue_scan,
    rotate_certificate,
    rotation_candidates,
    run_scan,
)

__all__ = [
    "CRL_REFRESH_BEFORE",
    "CRL_VALIDITY",
    "DEFAULT_INTERVALS",
    "DEFAULT_VALIDITY_DAYS",
    "EXPIRING_DAYS",
    "EXPIRY_BUCKETS",
    "KEY_CONTEXT",
    "PENDING_CHECK_SECONDS",
    "SOONEST_EXPIRING",
    "AgentCertificate",
    "IssueMeta",
    "authority_audit",
    "authority_index",
    "authority_read",
    "authority_reads",
    "ca_bundle",
    "ca_certificate_der",
    "ca_issuers_url",
    "certificate_audit",
    "certificate_detail",
    "certificate_filters",
    "certificate_history",
    "certificate_read",
    "collect_metrics",
    "complete_pending",
    "create_authority",
    "create_destination",
    "create_source",
    "crl_url",
    "current_crl",
    "days_left",
    "delete_destination",
    "deploy_certificate",
    "effective_status",
    "engine_errors",
    "event_payload",
    "export_certificate",
    "finish_rotation",
    "get_authority",
    "get_certificate",
    "get_destination",
    "get_source",
    "import_certificate",
    "inventory_endpoints",
    "iso",
    "issue_agent_certificate",
    "issue_agent_credentials",
    "issue_certificate",
    "issue_under",
    "issuer_for",
    "key_store",
    "list_authorities",
    "list_certificate_reads",
    "list_certificates",
    "list_deployments",
    "list_destinations",
    "list_endpoints",
    "list_issuers",
    "list_notifications",
    "list_sources",
    "ocsp_response",
    "ocsp_url",
    "policy_of",
    "public_base_url",
    "publish_crl",
    "queue_discovery",
    "queue_scan",
    "record_discovery",
    "record_foreign",
    "record_issued",
    "refresh_crls",
    "republish_crl",
    "revoke_certificate",
    "rotate_certificate",
    "rotation_candidates",
    "run_discovery",
    "run_scan",
    "seal",
    "send_expiry_notifications",
    "serve_crl",
    "signing_authority",
    "slug",
    "status_expression",
    "unseal",
    "update_authority",
    "update_certificate",
]
