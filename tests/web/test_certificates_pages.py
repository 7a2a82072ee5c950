"""Certificate pages: expiring, authorities, revocations, inventory, one certificate."""

from __future__ import annotations

from collections.abc import Callable

from console_kit import Console, certificates_world, text_of

from popcorn.certificates import service
from popcorn.db import session_scope


def test_fresh_install_says_how_to_start(console: Callable[[str], Console]) -> None:
    ui = console("viewer")
    assert "No certificates or authorities yet" in text_of(ui.page("/ui/certificates"))
    assert "No certificates yet" in text_of(ui.page("/ui/certificates/inventory"))


def test_summary_shows_expiring_authorities_and_revocations(
    console: Callable[[str], Console],
) -> None:
    certificates_world()
    page = text_of(console("viewer").page("/ui/certificates"))
    expiring = page.split("Expiring within 30 days")[1].split("Authorities")[0]
    assert "edge-api" in expiring and ("in 9 days" in expiring or "in 10 days" in expiring)
    assert "origin" not in expiring
    authorities = page.split("Authorities")[1].split("Revocations")[0]
    assert "Console Root" in authorities and "Console Issuing" in authorities
    assert "CRL" in authorities
    revocations = page.split("Revocations")[1]
    assert "old-cache" in revocations and "superseded" in revocations
    overview = text_of(console("viewer").page("/ui/"))
    assert "edge-api" in overview and "other certificates, valid past 30 days" in overview


def test_inventory_search_and_authority_page(console: Callable[[str], Console]) -> None:
    ids = certificates_world()
    ui = console("viewer")
    found = text_of(ui.page("/ui/certificates/inventory?q=origin"))
    assert "origin.example.test" in found and "edge-api" not in found
    revoked = text_of(ui.page("/ui/certificates/inventory?status=revoked"))
    assert "old-cache" in revoked and "origin" not in revoked
    authority = text_of(ui.page(f"/ui/certificates/authorities/{ids['issuing']}"))
    assert (
        "Issued certificates (3)" in authority and "http://pki.example.test/pki/crl/" in authority
    )
    assert "404" in text_of(ui.page("/ui/certificates/authorities/999", status=404))


def test_operators_revoke_viewers_cannot(console: Callable[[str], Console]) -> None:
    ids = certificates_world()
    viewer = console("viewer")
    page = viewer.page(f"/ui/certificates/{ids['origin']}")
    assert "origin.example.test" in text_of(page) and ">Revoke</button>" not in page
    assert viewer.post(f"/ui/certificates/{ids['origin']}/revoke").status_code == 403
    operator = console("operator")
    assert ">Revoke</button>" in operator.page(f"/ui/certificates/{ids['origin']}")
    refused = operator.post(f"/ui/certificates/{ids['origin']}/revoke", csrf=False)
    assert refused.status_code == 400
    done = operator.post(f"/ui/certificates/{ids['origin']}/revoke", {"reason": "keyCompromise"})
    assert done.status_code == 302
    page = text_of(operator.page(f"/ui/certificates/{ids['origin']}"))
    assert "revoked" in page and "keyCompromise" in page
    with session_scope(readonly=True) as session:
        assert service.get_certificate(session=session, certificate_id=ids["origin"]).status == (
            "revoked"
        )
    again = operator.post(f"/ui/certificates/{ids['origin']}/revoke", {"reason": "superseded"})
    assert again.status_code == 302
    assert "already revoked" in text_of(operator.page(f"/ui/certificates/{ids['origin']}"))
    assert "no certificate 777" in text_of(operator.page("/ui/certificates/777", status=404))
