"""Traffic, the slice's entry point: settings, what the other traffic modules share, metrics.

The behaviour lives in one module per kind of object, each taking `session=` and called by
the API, the CLI, the jobs and the console alike (the engines beside them do the arithmetic:
`optimize`, `evacuate`, `forecast`, `placement`; `executor` carries an execution out):

- `regions`: regions and CDN sites (`create_region`, `sync_from_inventory`, ...) and client
  groups with their demand (`create_group`, `resolve_demand`, ...).
- `costs`: the group x region cost matrix (`parse_costs`, `set_costs`, `cost_matrix`).
- `plans`: steering, evacuation, return and CDN shift plans (`plan_steering_for`,
  `plan_evacuation_for`, `plan_return_for`, `shift_site_load`) and their plots; `planbook`
  looks plans up and lists them without the engines.
- `executions`: `execute_plan` queues the job, `cancel_execution`, `bind_sandbox` (Auto
  Scaling groups and weighted records on an AWS-compatible endpoint such as moto).
- `forecasts`: demand forecasts with backtests and scaling plans.
- `placements`: content placement plans.
- `world`: `generate_world`, regions, groups and costs for a demo or a trial.
- `health`: the health checks an execution runs, and the registry of Python ones.

Remediation asks for a CDN shift with the `remediation.traffic.shift_requested` event
(`subscribers`), so no other domain calls traffic directly.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from popcorn.audit import recording_update
from popcorn.db import put_setting
from popcorn.errors import InvalidInput
from popcorn.traffic import models as m
from popcorn.traffic.health import check_spec

SETTINGS: dict[str, Any] = {
    "aws_endpoint_url": None,
    "aws_region": "us-east-1",
    "aws_profile": None,
    "scale_timeout_seconds": 2700.0,
    "poll_seconds": 15.0,
    "health_selector": None,
    "health_threshold": None,
    "health_window_seconds": 300.0,
    "health_url": None,
    "health_callable": None,
    "health_timeout_seconds": 5.0,
}


def json_safe(value: Any) -> Any:
    """Replace infinities and NaN by None: PostgreSQL's JSONB (and JSON itself) has no such
    numbers, and "no value" is what they mean here (no capacity, no error to score)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def read_table(content: bytes | str, *, name: str, filename: str = "") -> list[dict[str, Any]]:
    """Rows of a CSV, JSON (records) or Parquet file; the format comes from the file name."""
    import pandas as pd

    lower = filename.lower()
    raw = content.encode() if isinstance(content, str) else content
    try:
        if lower.endswith(".parquet") or raw[:4] == b"PAR1":
            frame = pd.read_parquet(io.BytesIO(raw))
        elif lower.endswith(".json") or raw.lstrip()[:1] in (b"[", b"{"):
            data = json.loads(raw.decode("utf-8-sig"))
            frame = pd.DataFrame(data if isinstance(data, list) else data.get(name, data))
        else:
            frame = pd.read_csv(io.BytesIO(raw))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{name}: cannot read {filename or 'the file'}: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


# --- settings --------------------------------------------------------------------------------


def get_settings_view(*, session: Session) -> dict[str, Any]:
    """Every traffic setting with its effective value (stored, else the default)."""
    rows = session.scalars(select(m.Setting).execution_options(populate_existing=True))
    stored = {row.name: row.value for row in rows}
    return {name: stored.get(name, default) for name, default in SETTINGS.items()}


def update_settings(*, session: Session, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Store the given settings; None puts a setting back to its default."""
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise InvalidInput(
            f"unknown setting(s) {', '.join(unknown)}", details={"allowed": sorted(SETTINGS)}
        )
    check_spec({"callable": changes.get("health_callable"), "url": changes.get("health_url")})

    def view(_: object) -> dict[str, Any]:
        return get_settings_view(session=session)

    with recording_update(session, "traffic_settings", None, view, object_id="traffic"):
        for name, value in changes.items():
            if value is None:
                session.execute(delete(m.Setting).where(m.Setting.name == name))
            else:
                put_setting(session, m.Setting, name, value)
    return get_settings_view(session=session)


# --- metrics ---------------------------------------------------------------------------------


def collect_metrics() -> Iterator[Any]:
    """Executions by status and plans by kind, read at scrape time."""
    from prometheus_client.core import GaugeMetricFamily

    from popcorn.db import session_scope

    executions = GaugeMetricFamily(
        "popcorn_traffic_executions", "Traffic plan executions by status", labels=["status"]
    )
    plans = GaugeMetricFamily(
        "popcorn_traffic_plans",
        "Traffic plans by kind and feasibility",
        labels=["kind", "feasible"],
    )
    with session_scope(readonly=True) as session:
        for status, count in session.execute(
            select(m.Execution.status, func.count()).group_by(m.Execution.status)
        ):
            executions.add_metric([status], count)
        for kind, feasible, count in session.execute(
            select(m.Plan.kind, m.Plan.feasible, func.count()).group_by(
                m.Plan.kind, m.Plan.feasible
            )
        ):
            plans.add_metric([kind, str(bool(feasible)).lower()], count)
    yield executions
    yield plans
