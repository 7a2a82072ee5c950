"""PNG pictures of one signal in an analysis: what an operator looks at to believe a ranking."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt


def analysis_png(
    name: str,
    grid_s: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    alert_time: datetime,
    finding: dict[str, Any] | None,
) -> bytes:
    """The signal on the analysis grid, its change points dashed, the chosen change in red
    and the alert time in black."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    def at(seconds: float) -> float:
        return float(date2num(datetime.fromtimestamp(seconds, UTC)))

    times = [at(float(t)) for t in grid_s]
    fig = Figure(figsize=(8, 3), dpi=100)
    ax = fig.add_subplot()
    ax.plot(times, values, lw=1.0, color="#1f77b4")
    if finding:
        for cp in finding.get("change_points") or []:
            ax.axvline(at(cp), color="#ff7f0e", ls="--", lw=0.8)
        if finding.get("change_time") is not None:
            ax.axvline(
                at(finding["change_time"]),
                color="#d62728",
                lw=1.5,
                label=f"{finding.get('verdict')} (score {finding.get('score', 0):.2f})",
            )
    ax.axvline(at(alert_time.timestamp()), color="black", lw=1.5, label="alert")
    ax.xaxis_date()
    ax.legend(loc="upper left", fontsize=7)
    title = name if len(name) <= 90 else name[:87] + "..."
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
