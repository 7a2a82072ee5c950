"""`popcorn certs`: authorities, issuance, inventory, export, revocation, rotation, discovery."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import click

from popcorn.certificates import catalog
from popcorn.certificates.schemas import (
    AuthorityCreate,
    CertificateImport,
    CertificateIssue,
    DestinationCreate,
    DestinationRead,
    EndpointRead,
    Export,
    InventoryScope,
    Scan,
    SourceCreate,
    SourceRead,
)
from popcorn.cli import json_option, output, parse_kv, progress, with_actor
from popcorn.db import session_scope
from popcorn.listing import parse_list_params

CERT_COLUMNS = ["id", "name", "status", "days_left", "common_name", "owner", "authority_id"]


class DestinationKinds(click.Choice[str]):
    """The registered destination kinds, read when KIND is parsed or shown: the registry
    imports the CA engine, which the other certificate commands do without."""

    def __init__(self) -> None:
        super().__init__([])

    @property
    def choices(self) -> tuple[str, ...]:
        from popcorn.certificates.destinations import DESTINATIONS

        return tuple(sorted(DESTINATIONS))

    @choices.setter
    def choices(self, value: tuple[str, ...]) -> None:
        """click.Choice sets its choices when made; these are read from the registry."""


def _read(path: str | None) -> str | None:
    return Path(path).read_text() if path else None


@click.group("certs")
def group() -> None:
    """Certificates: authorities, issuance, inventory, revocation, rotation, discovery."""


# --------------------------------------------------------------------------- authorities


@group.group("authority")
def authority() -> None:
    """Certificate authorities."""


@authority.command("create")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["root", "intermediate", "imported"]),
    default="root",
    show_default=True,
)
@click.option("--parent", help="Signing authority (id or name) of an intermediate.")
@click.option("--cn", "common_name", help="Subject common name (default: NAME).")
@click.option("--org", "organization")
@click.option(
    "--key-type",
    type=click.Choice(["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]),
    default="ecdsa-p384",
    show_default=True,
)
@click.option(
    "--validity-days",
    type=int,
    default=None,
    help="Default: 3650 for a root; 1825 for an intermediate, clipped to its parent's expiry.",
)
@click.option("--path-length", type=int, default=None)
@click.option("--max-validity-days", type=int, default=397, show_default=True)
@click.option("--allow-dns", multiple=True, help="Allowed DNS suffix (repeat); default any.")
@click.option("--allow-ip", multiple=True, help="Allowed IP network (repeat); default any.")
@click.option("--public-url", help="Base URL TLS clients reach for CRL and OCSP.")
@click.option("--rotate-before-days", type=int, default=None, help="Auto-rotate N days early.")
@click.option("--cert-file", type=click.Path(exists=True, dir_okay=False), help="Imported CA.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), help="Imported key.")
@click.option("--chain-file", type=click.Path(exists=True, dir_okay=False))
@json_option
@with_actor
def authority_create(
    name: str,
    kind: str,
    parent: str | None,
    common_name: str | None,
    organization: str | None,
    key_type: str,
    validity_days: int | None,
    path_length: int | None,
    max_validity_days: int,
    allow_dns: tuple[str, ...],
    allow_ip: tuple[str, ...],
    public_url: str | None,
    rotate_before_days: int | None,
    cert_file: str | None,
    key_file: str | None,
    chain_file: str | None,
    as_json: bool,
) -> None:
    """Create a root or intermediate CA, or import an existing one."""
    from popcorn.certificates import service

    spec = AuthorityCreate(
        name=name,
        kind=kind,
        parent=parent,
        common_name=common_name,
        organization=organization,
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        max_validity_days=max_validity_days,
        allowed_dns_suffixes=list(allow_dns) or None,
        allowed_ip_networks=list(allow_ip) or None,
        public_base_url=public_url,
        rotate_before_days=rotate_before_days,
        certificate_pem=_read(cert_file),
        private_key_pem=_read(key_file),
        chain_pem=_read(chain_file),
    )
    with session_scope() as session:
        row = service.create_authority(session=session, spec=spec)
        data = service.authority_read(row).model_dump(
            mode="json", exclude={"certificate_pem", "chain_pem"}
        )
    output(data, as_json=as_json)


@authority.command("list")
@json_option
def authority_list(as_json: bool) -> None:
    """List the certificate authorities."""
    from popcorn.certificates import service

    with session_scope(readonly=True) as session:
        rows = [
            service.authority_read(r).model_dump(
                mode="json", exclude={"certificate_pem", "chain_pem"}
            )
            for r in service.list_authorities(session=session)
        ]
    output(
        rows,
        as_json=as_json,
        columns=["id", "name", "kind", "key_type", "not_after", "max_validity_days", "crl_number"],
    )


@authority.command("show")
@click.argument("ref")
@json_option
def authority_show(ref: str, as_json: bool) -> None:
    """Show one authority (name or id) and its certificate."""
    from popcorn.certificates import service

    with session_scope(readonly=True) as session:
        data = service.authority_read(service.get_authority(session=session, ref=ref))
    output(data.model_dump(mode="json", exclude={"chain_pem"}), as_json=as_json)


@authority.command("bundle")
@click.argument("ref")
def authority_bundle(ref: str) -> None:
    """Print the CA bundle (PEM) clients should trust."""
    from popcorn.certificates import service

    with session_scope(readonly=True) as session:
        click.echo(service.ca_bundle(session=session, authority=ref), nl=False)


# --------------------------------------------------------------------------- certificates


@group.command("issue")
@click.option("--authority", "authority_ref", required=True, help="Authority id or name.")
@click.option("--cn", "common_name", help="Subject common name.")
@click.option("--dns", multiple=True, help="DNS name (repeat).")
@click.option("--ip", multiple=True, help="IP address (repeat).")
@click.option("--profile", type=click.Choice(["server", "client", "both"]), default="server")
@click.option("--days", "validity_days", type=int, default=None, help="Validity in days.")
@click.option("--csr", type=click.Path(exists=True, dir_okay=False), help="Sign this CSR.")
@click.option(
    "--key-type",
    type=click.Choice(["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]),
    default="ecdsa-p256",
    show_default=True,
)
@click.option("--name")
@click.option("--owner", default="")
@click.option("--team", default="")
@click.option("--rotate-before-days", type=int, default=None)
@click.option("--destination", "destinations", multiple=True, help="Deploy here (repeat).")
@json_option
@with_actor
def issue(
    authority_ref: str,
    common_name: str | None,
    dns: tuple[str, ...],
    ip: tuple[str, ...],
    profile: str,
    validity_days: int | None,
    csr: str | None,
    key_type: str,
    name: str | None,
    owner: str,
    team: str,
    rotate_before_days: int | None,
    destinations: tuple[str, ...],
    as_json: bool,
) -> None:
    """Issue a certificate; a generated key stays encrypted in Popcorn (see `export`)."""
    from popcorn.certificates import service

    spec = CertificateIssue(
        authority=authority_ref,
        common_name=common_name,
        dns_names=list(dns),
        ip_addresses=list(ip),
        profile=profile,
        validity_days=validity_days,
        csr_pem=_read(csr),
        key_type=key_type,
        name=name,
        owner=owner,
        team=team,
        rotate_before_days=rotate_before_days,
        destinations=list(destinations),
    )
    with session_scope() as session:
        row = service.issue_certificate(session=session, spec=spec)
        data = service.certificate_read(row).model_dump(mode="json")
    output(data, as_json=as_json)


@group.command("import")
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--chain", "chain_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name")
@click.option("--owner", default="")
@click.option("--team", default="")
@json_option
@with_actor
def import_command(
    cert_file: str,
    chain_file: str | None,
    key_file: str | None,
    name: str | None,
    owner: str,
    team: str,
    as_json: bool,
) -> None:
    """Import a PEM certificate (and chain, and key) into the inventory."""
    from popcorn.certificates import service

    spec = CertificateImport(
        certificate_pem=Path(cert_file).read_text(),
        chain_pem=_read(chain_file),
        private_key_pem=_read(key_file),
        name=name,
        owner=owner,
        team=team,
    )
    with session_scope() as session:
        row = service.import_certificate(session=session, spec=spec)
        data = service.certificate_read(row).model_dump(mode="json")
    output(data, as_json=as_json)


@group.command("list")
@click.option("--status", type=click.Choice(catalog.STATUSES))
@click.option("--owner")
@click.option("--team")
@click.option("--authority", "authority_id", type=int)
@click.option("--domain")
@click.option("--expires-within", type=int, help="Days.")
@click.option("-q", "--search", "q", help="Free text (name, CN, domains, owner, serial).")
@click.option("--limit", default=50, show_default=True)
@json_option
def list_command(
    status: str | None,
    owner: str | None,
    team: str | None,
    authority_id: int | None,
    domain: str | None,
    expires_within: int | None,
    q: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The inventory, soonest id first; filters combine."""
    args: dict[str, Any] = {"limit": str(limit)}
    for key, value in (
        ("status", status),
        ("owner", owner),
        ("team", team),
        ("authority_id", authority_id),
        ("domain", domain),
        ("expires_within", expires_within),
        ("q", q),
    ):
        if value is not None:
            args[key] = str(value)
    params = parse_list_params(args)
    with session_scope(readonly=True) as session:
        result = catalog.list_certificates(session=session, params=params)
        rows = [catalog.certificate_read(r).model_dump(mode="json") for r in result.items]
    output(rows, as_json=as_json, columns=[*CERT_COLUMNS, "not_after"])


@group.command("show")
@click.argument("certificate_id", type=int)
@click.option("--pem", is_flag=True, help="Print the certificate and chain as PEM.")
@json_option
def show(certificate_id: int, pem: bool, as_json: bool) -> None:
    """Show a certificate (and its PEM with --pem)."""
    from popcorn.certificates import service

    with session_scope(readonly=True) as session:
        row = service.get_certificate(session=session, certificate_id=certificate_id)
        detail = service.certificate_detail(session=session, row=row)
    if pem:
        click.echo(detail.certificate_pem + detail.chain_pem, nl=False)
        return
    data = detail.model_dump(mode="json")
    if not as_json:
        data.pop("certificate_pem")
        data.pop("chain_pem")
        data["endpoints"] = [f"{e['host']}:{e['port']}" for e in data["endpoints"]]
    output(data, as_json=as_json)


@group.command("export")
@click.argument("certificate_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["pem", "pkcs12"]), default="pem")
@click.option("--password", envvar="POPCORN_EXPORT_PASSWORD", help="PKCS#12 password.")
@click.option("--legacy", is_flag=True, help="PKCS#12 readable by old Java/Windows.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="File to write.")
@with_actor
def export(certificate_id: int, fmt: str, password: str | None, legacy: bool, out: str) -> None:
    """Write the certificate with its private key (0600); audited."""
    from popcorn.certificates import service

    spec = Export(format=fmt, password=password, legacy=legacy)
    with session_scope() as session:
        result = service.export_certificate(
            session=session, certificate_id=certificate_id, spec=spec
        )
    if result.pkcs12_base64 is not None:
        data = base64.b64decode(result.pkcs12_base64)
    else:
        data = (
            (result.private_key_pem or "")
            + (result.certificate_pem or "")
            + (result.chain_pem or "")
        ).encode()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    click.echo(f"wrote {out} ({fmt})", err=True)


@group.command("revoke")
@click.argument("certificate_id", type=int)
@click.option("--reason", default="unspecified", show_default=True, help="e.g. keyCompromise.")
@with_actor
def revoke(certificate_id: int, reason: str) -> None:
    """Revoke a certificate; its authority's CRL is republished at once."""
    from popcorn.certificates import service

    with session_scope() as session:
        row = service.revoke_certificate(
            session=session, certificate_id=certificate_id, reason=reason
        )
        click.echo(f"revoked certificate {row.id} ({row.name}): {row.revocation_reason}")


@group.command("rotate")
@click.argument("certificate_id", type=int)
@click.option("--days", "validity_days", type=int, default=None)
@json_option
@with_actor
def rotate(certificate_id: int, validity_days: int | None, as_json: bool) -> None:
    """Reissue, deploy to the certificate's destinations, and retire the old one."""
    from popcorn.certificates import service

    with session_scope() as session:
        new = service.rotate_certificate(
            session=session, certificate_id=certificate_id, validity_days=validity_days
        )
        old = service.get_certificate(session=session, certificate_id=certificate_id)
        data = {
            "old": certificate_id,
            "old_status": old.status,
            "new": new.id,
            "name": new.name,
            "not_after": new.not_after,
        }
    output(data, as_json=as_json)


# --------------------------------------------------------------------------- discovery and scan


@group.command("discover")
@click.argument("endpoints", nargs=-1)
@click.option("--source", help="A discovery source (id or name) instead of endpoints.")
@click.option("--timeout", type=float, default=None, help="Seconds per endpoint (default 5).")
@json_option
@with_actor
def discover(
    endpoints: tuple[str, ...], source: str | None, timeout: float | None, as_json: bool
) -> None:
    """Read the certificate chains that host:port endpoints serve, and record them."""
    from popcorn.certificates import service

    if bool(endpoints) == (source is not None):
        raise click.UsageError("give endpoints or --source, not both or neither")
    with progress(None, "discovering"):
        summary = service.run_discovery(endpoints=endpoints, source=source, timeout=timeout)
    output(summary, as_json=as_json)


@group.command("scan")
@click.option("--intervals", default="30,15,7,1", show_default=True, help="Warning days.")
@json_option
@with_actor
def scan(intervals: str, as_json: bool) -> None:
    """Expiry warnings, automatic rotation and CRL refresh, now."""
    from popcorn.certificates import service

    try:
        days = [int(v) for v in intervals.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{intervals!r} is not a comma-separated list of days") from None
    spec = Scan(intervals=days)
    bar = progress(None, "rotating")
    with bar:
        result = service.run_scan(
            intervals=spec.intervals,
            progress=lambda done, total: bar.update(bar.task_ids[0], completed=done, total=total),
        )
    output(result, as_json=as_json)


@group.command("endpoints")
@click.option("--host")
@click.option("--certificate", "certificate_id", type=int)
@click.option("--limit", default=100, show_default=True)
@json_option
def endpoints_command(
    host: str | None, certificate_id: int | None, limit: int, as_json: bool
) -> None:
    """TLS endpoints found by discovery."""
    from popcorn.certificates import service

    args: dict[str, Any] = {"limit": str(limit)}
    if host:
        args["host"] = host
    if certificate_id is not None:
        args["certificate_id"] = str(certificate_id)
    with session_scope(readonly=True) as session:
        page = service.list_endpoints(session=session, params=parse_list_params(args))
        rows = page.serialize(EndpointRead)["items"]
    output(
        rows,
        as_json=as_json,
        columns=[
            "id",
            "host",
            "port",
            "server_name",
            "certificate_id",
            "last_seen_at",
            "last_error",
        ],
    )


@group.group("sources")
def sources() -> None:
    """Discovery sources (endpoints swept on a schedule)."""


@sources.command("list")
@json_option
def sources_list(as_json: bool) -> None:
    """List the discovery sources."""
    from popcorn.certificates import service

    with session_scope(readonly=True) as session:
        rows = [
            SourceRead.model_validate(r).model_dump(mode="json")
            for r in service.list_sources(session=session)
        ]
    for row in rows:
        row["endpoints"] = len(row["endpoints"])
    output(rows, as_json=as_json, columns=["id", "name", "endpoints", "owner", "last_run_at"])


@sources.command("add")
@click.argument("name")
@click.argument("endpoints", nargs=-1)
@click.option("--site", "sites", multiple=True, help="Inventory site (repeat): sweep its devices.")
@click.option("--region", "regions", multiple=True, help="Inventory region (repeat).")
@click.option("--role", "roles", multiple=True, help="Inventory device role (repeat).")
@click.option("--port", "ports", multiple=True, type=int, help="Ports of inventory devices.")
@click.option("--cron", help="Sweep on this schedule, e.g. '0 * * * *'.")
@click.option("--owner", default="")
@click.option("--team", default="")
@with_actor
def sources_add(
    name: str,
    endpoints: tuple[str, ...],
    sites: tuple[str, ...],
    regions: tuple[str, ...],
    roles: tuple[str, ...],
    ports: tuple[int, ...],
    cron: str | None,
    owner: str,
    team: str,
) -> None:
    """Sweep ENDPOINTS (host:port[/sni]), or the inventory devices of --site/--region/--role."""
    from popcorn.certificates import service

    from_inventory = bool(sites or regions or roles)
    scope = (
        InventoryScope(
            site=list(sites) or None, region=list(regions) or None, role=list(roles) or None
        )
        if from_inventory
        else None
    )
    spec = SourceCreate(
        name=name,
        kind="inventory" if from_inventory else "hosts",
        endpoints=list(endpoints),
        scope=scope,
        ports=list(ports) or [443],
        cron=cron,
        owner=owner,
        team=team,
    )
    with session_scope() as session:
        row = service.create_source(session=session, spec=spec)
        click.echo(f"source {row.name!r} ({row.kind}) added")


@group.group("destinations")
def destinations() -> None:
    """Where certificates are deployed."""


@destinations.command("list")
@json_option
def destinations_list(as_json: bool) -> None:
    """List the destinations certificates are deployed to."""
    from popcorn.certificates import service

    with session_scope(readonly=True) as session:
        rows = [
            DestinationRead.model_validate(r).model_dump(mode="json")
            for r in service.list_destinations(session=session)
        ]
    output(rows, as_json=as_json, columns=["id", "name", "kind", "options"])


@destinations.command("add")
@click.argument("name")
@click.argument("kind", type=DestinationKinds())
@click.argument("options", nargs=-1)
@click.option(
    "--password", envvar="POPCORN_PKCS12_PASSWORD", help="Kinds with a password (pkcs12)."
)
@with_actor
def destinations_add(name: str, kind: str, options: tuple[str, ...], password: str | None) -> None:
    """Add a destination with key=value options (directory: path=/etc/tls/www)."""
    from popcorn.certificates import service

    spec = DestinationCreate(
        name=name,
        kind=kind,
        options=parse_kv(options),
        password=password,
    )
    with session_scope() as session:
        row = service.create_destination(session=session, spec=spec)
        click.echo(f"destination {row.name!r} ({row.kind}) added")


@destinations.command("remove")
@click.argument("ref")
@with_actor
def destinations_remove(ref: str) -> None:
    """Remove a destination (name or id)."""
    from popcorn.certificates import service

    with session_scope() as session:
        row = service.delete_destination(session=session, ref=ref)
        click.echo(f"destination {row.name!r} removed")
