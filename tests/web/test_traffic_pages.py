"""Traffic pages: regions and loads, plans with per-step loads, executions, forecasts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from console_kit import Console, text_of, traffic_world

from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.traffic import planbook


def figure_of(html: str) -> dict[str, object]:
    match = re.search(r'data-figure="([^"]+)"', html)
    assert match, "page has no chart"
    return dict(json.loads(match.group(1).replace("&#34;", '"')))


def test_fresh_install_says_how_to_add_regions(console: Callable[[str], Console]) -> None:
    page = text_of(console("viewer").page("/ui/traffic"))
    assert "No traffic regions yet" in page and "No plans yet" in page


def test_regions_show_capacity_and_the_latest_steering_loads(
    console: Callable[[str], Console],
) -> None:
    ids = traffic_world()
    html = console("viewer").page("/ui/traffic")
    page = text_of(html)
    assert "us-east-1" in page and "eu-west-1" in page
    assert f"loads from steering plan #{ids['steering']}" in page
    figure = figure_of(html)
    loads = dict(zip(figure["data"][0]["x"], figure["data"][0]["y"], strict=True))  # type: ignore[index]
    assert abs(sum(loads.values()) - 0.75 * 2700) < 1e-6  # all demand is placed
    assert "Plan evacuation" not in page  # viewers do not plan


def test_evacuation_plan_charts_every_step(console: Callable[[str], Console]) -> None:
    ids = traffic_world()
    html = console("viewer").page(f"/ui/traffic/plans/{ids['evacuation']}")
    page = text_of(html)
    assert "Evacuation plan" in page and "us-east-1" in page and "drill" in page
    assert "req/s" in page and "demand units" not in page  # cloud demand has a unit
    figure = figure_of(html)
    east = next(t for t in figure["data"] if t["name"] == "us-east-1")  # type: ignore[attr-defined]
    assert east["x"] == ["start", "step 1", "step 2", "step 3", "step 4"]
    assert east["y"][0] > 0 and east["y"][-1] == 0  # traffic leaves us-east-1 step by step
    assert "before" in page  # scale-up actions happen before the shift


def test_execution_progress_and_cancel(console: Callable[[str], Console]) -> None:
    ids = traffic_world()
    viewer = console("viewer")
    page = text_of(viewer.page(f"/ui/traffic/executions/{ids['execution']}"))
    assert "pending" in page and "0 of" in page and "Cancel" not in page
    assert viewer.post(f"/ui/traffic/executions/{ids['execution']}/cancel").status_code == 403
    operator = console("operator")
    done = operator.post(f"/ui/traffic/executions/{ids['execution']}/cancel")
    assert done.status_code == 302
    page = text_of(operator.page(f"/ui/traffic/executions/{ids['execution']}"))
    assert "canceled" in page and "Canceled before it changed anything." in page
    assert "404" in text_of(operator.page("/ui/traffic/executions/999", status=404))
    for ident in (str(2**63), "\u0661", "\uff11"):  # too big, Arabic-Indic and fullwidth one
        operator.page(f"/ui/traffic/executions/{ident}", status=404)
        operator.page(f"/ui/traffic/plans/{ident}", status=404)
        operator.page(f"/ui/traffic/forecasts/{ident}", status=404)


def test_operators_plan_and_see_refusals(console: Callable[[str], Console]) -> None:
    traffic_world()
    operator = console("operator")
    made = operator.post("/ui/traffic/plans", {"kind": "evacuation", "evacuate": "eu-west-1"})
    assert made.status_code == 302 and "/ui/traffic/plans/" in made.headers["Location"]
    empty = operator.post("/ui/traffic/plans", {"kind": "evacuation"})
    assert empty.status_code == 302
    assert "evacuate" in text_of(operator.page("/ui/traffic"))
    with session_scope(readonly=True) as session:
        before = planbook.list_plans(session=session, params=ListParams(limit=1)).count
    assert operator.post("/ui/traffic/plans", {"kind": "steering"}, csrf=False).status_code == 400
    busy = operator.post(f"/ui/traffic/plans/{made.headers['Location'].rsplit('/', 1)[1]}/execute")
    assert busy.status_code == 302  # another execution is still active: the page says so
    assert "still active" in text_of(operator.page(busy.headers["Location"]))
    with session_scope(readonly=True) as session:
        assert planbook.list_plans(session=session, params=ListParams(limit=1)).count == before


def test_forecast_page_charts_history_forecast_and_scaling(
    console: Callable[[str], Console],
) -> None:
    ids = traffic_world()
    html = console("viewer").page(f"/ui/traffic/forecasts/{ids['forecast']}")
    names = [t["name"] for t in figure_of(html)["data"]]  # type: ignore[attr-defined]
    assert names[:2] == ["history", "forecast"] and "planned instances" in names
    page = text_of(html)
    assert "seasonal naive" in page and "Scaling plan" in page
    overview = text_of(console("viewer").page("/ui/"))
    assert f"evacuation plan #{ids['evacuation']} off us-east-1" in overview
