"""Static HTML for the flows' cards: readable with scripts off (Popcorn shows cards in a
sandbox that runs none), so the flows use Metaflow's `html` card type with this markup."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;"
    "text-align:right}th{background:#f3f3f3}.win{color:#176f2c;font-weight:bold}"
    ".lose{color:#a11;font-weight:bold}"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def report(title: str, evaluation: dict[str, Any], sections: Sequence[tuple[str, str]]) -> str:
    """A card: the verdict (model against baseline) first, then the given sections."""
    higher = evaluation.get("higher_is_better", True)
    model, baseline = float(evaluation["model"]), float(evaluation["baseline"])
    wins = model > baseline if higher else model < baseline
    verdict = (
        f"<p class='{'win' if wins else 'lose'}'>{escape(str(evaluation['metric']))}: model "
        f"{model:.4g} vs baseline {baseline:.4g} ({'beats' if wins else 'does not beat'} the "
        f"baseline; {'higher' if higher else 'lower'} is better)</p>"
    )
    parts = "".join(f"<h2>{escape(h)}</h2>{body}" for h, body in sections)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{STYLE}</style>"
        f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{verdict}{parts}"
        "</body></html>"
    )
