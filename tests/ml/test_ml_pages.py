"""ML console pages: models, flows, a run with its steps and its card in a sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from console_kit import Console, text_of  # type: ignore[import-not-found]

pytestmark = pytest.mark.slow


def test_pages_show_models_runs_and_a_sandboxed_card(
    app: Any, tokens: dict[str, str], recorded: int
) -> None:
    operator = Console(app.test_client(), tokens["operator"])
    promoted = operator.post(f"/ui/ml/runs/{recorded}/promote")
    assert promoted.status_code == 302
    index = text_of(operator.page("/ui/ml"))
    assert "recommendations" in index and "recall@20" in index and "v1" in index
    assert "artwork-personalization" in index and "demand-forecast" in index

    run = operator.page(f"/ui/ml/runs/{recorded}")
    assert "<iframe sandbox " in run
    assert "start" in text_of(run) and "evaluate" in text_of(run)
    card = operator.get(f"/ui/ml/runs/{recorded}/cards/evaluate")
    assert card.status_code == 200
    assert card.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "<script" not in card.get_data(as_text=True)
    assert "beats the baseline" in card.get_data(as_text=True)

    model = text_of(operator.page("/ui/ml/models/recommendations"))
    assert "v1" in model and "member: int" in model

    viewer = Console(app.test_client(), tokens["viewer"])
    assert viewer.post(f"/ui/ml/runs/{recorded}/promote").status_code == 403
    assert "Run</button>" not in viewer.page("/ui/ml")


def test_run_form_queues_a_run(app: Any, tokens: dict[str, str]) -> None:
    operator = Console(app.test_client(), tokens["operator"])
    answer = operator.post("/ui/ml/runs", {"flow": "flaky"})
    assert answer.status_code == 302 and "/ui/ml/runs/" in answer.headers["Location"]
    page = text_of(operator.page(answer.headers["Location"]))
    assert "queued" in page and "flaky" in page
