"""The ml domain's facade for other domains: serve the promoted models.

Other domains (traffic placement, the device lab) call these with keyword arguments and
get read models back; they never touch the registry's tables or unpickle anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from popcorn.ml import registry


class PromotedModel(BaseModel):
    """The version a model serves now and how it was evaluated."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    run_id: int | None
    input_schema: dict[str, str]
    evaluation: dict[str, Any]
    created_at: datetime


class Prediction(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    predictions: list[Any]


def promoted(*, session: Session, name: str) -> PromotedModel | None:
    """The promoted version of a model, or None when nothing is promoted."""
    from popcorn.errors import NotFound

    try:
        found = registry.promoted_version(session=session, name=name)
    except NotFound:
        return None
    return PromotedModel(
        name=name,
        version=found.version,
        run_id=found.run_id,
        input_schema=dict(found.input_schema),
        evaluation=dict(found.evaluation),
        created_at=found.created_at,
    )


def predict(*, session: Session, name: str, rows: list[dict[str, Any]]) -> Prediction:
    """Predictions of the promoted version (404 when none, 422 naming a bad field)."""
    answer = registry.predict(session=session, name=name, rows=rows)
    return Prediction(name=name, version=answer["version"], predictions=answer["predictions"])


class RegionForecast(BaseModel):
    """Hourly demand of a region from the promoted demand-forecast model."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    region: str
    start: datetime
    step_seconds: int
    values: list[float]
    evaluation: dict[str, Any]


def region_demand(
    *, session: Session, region: str, hours: int, start: datetime
) -> RegionForecast | None:
    """The next `hours` hours of demand (requests per second, hourly) of a region from
    `start`, from the promoted demand-forecast model; None when nothing is promoted or the
    model does not know the region."""
    from popcorn.errors import NotFound

    name = "demand-forecast"
    try:
        version = registry.promoted_version(session=session, name=name)
        model = registry.load_promoted(session=session, name=name)
    except NotFound:
        return None
    values = model.ahead(region, start, hours) if hasattr(model, "ahead") else None
    if values is None:
        return None
    return RegionForecast(
        name=name,
        version=version.version,
        region=region,
        start=start,
        step_seconds=3600,
        values=[float(v) for v in values],
        evaluation=dict(version.evaluation),
    )


def title_demand(*, session: Session, region: str) -> dict[str, float]:
    """Predicted plays per title in a region over the next week, from the promoted
    recommendations model (empty when none is promoted or the region is unknown to it)."""
    from popcorn.errors import NotFound

    try:
        model = registry.load_promoted(session=session, name="recommendations")
    except NotFound:
        return {}
    table = getattr(model, "demand", {}) or {}
    return {str(title): float(plays) for title, plays in table.get(region, {}).items()}
