"""Demand forecasts: from a signals selector or uploaded history, backtested, with a scaling
plan for a region with an instance model. The arithmetic is in `forecast`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import domains
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import InvalidInput, PopcornError
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id
from popcorn.traffic import models as m
from popcorn.traffic import schemas as s
from popcorn.traffic.forecast import (
    Backtest,
    Forecast,
    forecast_demand,
    forecast_png,
    plan_scaling,
)
from popcorn.traffic.regions import get_region
from popcorn.traffic.service import json_safe, read_table

FORECAST_FILTERS = {
    "region_id": m.Forecast.region_id,
    "source": m.Forecast.source,
    "created_at": m.Forecast.created_at,
}


def create_forecast(*, session: Session, spec: s.ForecastCreate) -> m.Forecast:
    """Forecast demand from a signals selector or given history, backtest it (MAPE per
    predictor) and, for a region with an instance model, plan its scaling."""
    region = get_region(session=session, ref=spec.region) if spec.region else None
    step = float(spec.step_seconds)
    end = spec.end or utcnow()
    if spec.demand == "predicted":
        assert region is not None  # the schema asks for one
        forecast = _ml_forecast(session, spec.ml_region or region.name, end, spec.horizon)
        history = np.zeros(0, dtype=np.float64)
        source = "ml"
    elif spec.selector is not None:
        history = _history_from_signals(session, spec.selector, end, spec.days, step)
        source = "signals"
    else:
        history = np.array(
            [np.nan if v is None else float(v) for v in spec.history or []], dtype=np.float64
        )
        source = "upload"
    if source != "ml":
        forecast = forecast_demand(history, step, spec.horizon, folds=spec.folds)
    scaling = None
    if region is not None and region.throughput_per_instance:
        scaling = plan_scaling(
            forecast.values,
            step,
            throughput_per_instance=region.throughput_per_instance,
            headroom=region.headroom,
            readiness_seconds=region.readiness_seconds,
            min_instances=spec.min_instances,
            max_instances=region.max_instances,
            current_instances=region.instances,
            band=spec.band,
        ).to_dict()
    clean = np.nan_to_num(history, nan=0.0)
    row = m.Forecast(
        name=spec.name or (f"{region.name} demand" if region else spec.selector or "uploaded"),
        region_id=region.id if region else None,
        source=source,
        selector=spec.selector,
        start=end,
        step_seconds=step,
        horizon=spec.horizon,
        history=[float(v) for v in clean.tolist()],
        values=[float(v) for v in forecast.values.tolist()],
        backtest=json_safe(forecast.backtest.to_dict()),
        weights=json_safe(forecast.weights),
        scaling=json_safe(scaling),
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        "create",
        "traffic_forecast",
        row.id,
        after={"name": row.name, "source": source, "horizon": spec.horizon, "step": step},
    )
    return row


def _ml_forecast(session: Session, region: str, start: datetime, horizon: int) -> Forecast:
    """The region's hourly demand from ML's promoted demand-forecast model, scored by the
    model's own rolling-origin backtest (its MAPE beside seasonal-naive)."""
    domains.require("ml", "a predicted forecast reads ML's demand-forecast model")
    from popcorn.ml import api as ml_api

    found = ml_api.region_demand(session=session, region=region, hours=horizon, start=start)
    if found is None:
        raise InvalidInput(
            f"no predicted demand for region {region!r}: promote a demand-forecast model that "
            "knows it first (`popcorn ml run demand-forecast --param regions=...`)",
            details={"ml_region": region},
        )
    values = np.asarray(found.values, dtype=np.float64)
    evaluation = found.evaluation
    mape = {
        f"{found.name} v{found.version}": 100 * float(evaluation.get("model", np.nan)),
        "seasonal_naive": 100 * float(evaluation.get("baseline", np.nan)),
    }
    return Forecast(
        values=values,
        step_seconds=3600.0,
        weights={f"{found.name} v{found.version}": 1.0},
        backtest=Backtest(horizon=24, folds=14, mape=mape),
        components={"ml": values},
    )


def _history_from_signals(
    session: Session, selector: str, end: datetime, days: float, step: float
) -> np.ndarray[Any, Any]:
    domains.require("signals", "a forecast from a selector reads signals")
    from popcorn.signals import api as signals_api

    start = end - timedelta(days=days)
    result = signals_api.query(
        session=session, selector=selector, start=start, end=end, step=step, agg="mean"
    )
    stacked = np.vstack(result.values)
    present = np.isfinite(stacked).any(axis=0)
    total = np.where(present, np.nansum(stacked, axis=0), np.nan)
    first = int(np.argmax(present)) if present.any() else total.size
    return np.asarray(total[first:], dtype=np.float64)


def read_history(content: bytes | str, *, filename: str = "") -> list[float | None]:
    """Demand samples from a file: a JSON list of numbers, or a table (CSV, JSON records,
    Parquet) with a `value` or `demand` column, oldest first."""
    raw = content.encode() if isinstance(content, str) else content
    if raw.lstrip()[:1] == b"[":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"history: not valid JSON: {exc.msg}") from None
        if all(v is None or isinstance(v, int | float) for v in data):
            return [None if v is None else float(v) for v in data]
    rows = read_table(raw, name="history", filename=filename)
    for column in ("value", "demand"):
        if rows and column in rows[0]:
            out: list[float | None] = []
            for line, row in enumerate(rows, start=1):
                value = row[column]
                try:
                    out.append(None if value is None else float(value))
                except (TypeError, ValueError):
                    raise InvalidInput(f"history: row {line}: {value!r} is not a number") from None
            return out
    raise InvalidInput("history: expected a 'value' or 'demand' column")


def get_forecast(*, session: Session, forecast_id: int | str) -> m.Forecast:
    """One forecast by id; an id that cannot exist (too big, not ASCII digits) is a 404."""
    return get_by_id(session, m.Forecast, forecast_id, label="forecast")


def list_forecasts(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Forecast).where(*filter_clauses(params.filters, FORECAST_FILTERS))
    return paginate(session, stmt, params, key=m.Forecast.id)


def forecast_actuals(*, session: Session, forecast: m.Forecast) -> list[float] | None:
    """What happened over the forecast's horizon, when signals have it (for the plot)."""
    if forecast.source != "signals" or not forecast.selector:
        return None
    if not domains.installed("signals"):
        return None
    from popcorn.signals import api as signals_api

    end = min(
        utcnow(), forecast.start + timedelta(seconds=forecast.step_seconds * forecast.horizon)
    )
    if end <= forecast.start:
        return None
    try:
        result = signals_api.query(
            session=session,
            selector=forecast.selector,
            start=forecast.start,
            end=end,
            step=forecast.step_seconds,
            agg="mean",
        )
    except PopcornError:
        return None
    stacked = np.vstack(result.values)
    present = np.isfinite(stacked).any(axis=0)
    values = np.where(present, np.nansum(stacked, axis=0), np.nan)
    return [float(v) for v in values.tolist()]


def forecast_plot(*, session: Session, forecast_id: int | str) -> bytes:
    row = get_forecast(session=session, forecast_id=forecast_id)
    return forecast_png(
        row.history,
        row.values,
        row.step_seconds,
        actuals=forecast_actuals(session=session, forecast=row),
    )
