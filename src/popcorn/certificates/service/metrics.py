"""Scrape-time metrics of the certificate inventory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select

from popcorn.certificates.catalog import status_expression
from popcorn.certificates.models import (
    STATUSES,
    Certificate,
)
from popcorn.db import session_scope, utcnow

# --------------------------------------------------------------------------- metrics

SOONEST_EXPIRING = 20
EXPIRY_BUCKETS = (0, 1, 7, 15, 30, 90)


def collect_metrics() -> Iterator[Any]:
    """Scrape-time gauges: certificates by status, expiry buckets, the soonest to expire."""
    from prometheus_client.core import GaugeMetricFamily

    now = utcnow()
    by_status = GaugeMetricFamily(
        "popcorn_certificates", "Certificates in the inventory by status", labels=["status"]
    )
    buckets = GaugeMetricFamily(
        "popcorn_certificates_expiring_within_days",
        "In-use certificates (active, expiring, expired) expiring within N days (cumulative)",
        labels=["days"],
    )
    soonest = GaugeMetricFamily(
        "popcorn_certificate_expiry_days",
        f"Days until expiry of the {SOONEST_EXPIRING} in-use certificates expiring soonest",
        labels=["id", "name", "common_name"],
    )
    with session_scope(readonly=True) as session:
        status = status_expression(now)
        counts = dict(session.execute(select(status, func.count()).group_by(status)).all())
        for name in STATUSES:
            by_status.add_metric([name], float(counts.get(name, 0)))
        sums = session.execute(
            select(
                *[
                    func.count().filter(Certificate.not_after <= now + dt.timedelta(days=d))
                    for d in EXPIRY_BUCKETS
                ]
            ).where(Certificate.status == "active")
        ).one()
        for days, count in zip(EXPIRY_BUCKETS, sums, strict=True):
            buckets.add_metric([str(days)], float(count or 0))
        rows = session.execute(
            select(Certificate.id, Certificate.name, Certificate.common_name, Certificate.not_after)
            .where(Certificate.status == "active", Certificate.not_after.is_not(None))
            .order_by(Certificate.not_after)
            .limit(SOONEST_EXPIRING)
        )
        for cid, name, common_name, not_after in rows:
            left = (not_after - now).total_seconds() / 86400 if not_after else 0.0
            soonest.add_metric([str(cid), name, common_name], round(left, 3))
    yield by_status
    yield buckets
    yield soonest
