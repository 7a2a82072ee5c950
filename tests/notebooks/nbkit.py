"""Small notebooks for the notebook tests (a few cells each, so kernels finish fast)."""

from __future__ import annotations

import json
from typing import Any

import nbformat


def notebook(
    *cells: str, parameters: str | None = None, outputs: str | None = None
) -> dict[str, Any]:
    """A notebook with an optional `parameters` cell first and an `outputs` cell last."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    if outputs is not None:
        nb.cells.append(nbformat.v4.new_code_cell(outputs, metadata={"tags": ["outputs"]}))
    data: dict[str, Any] = json.loads(nbformat.writes(nb))
    return data


GREETING = notebook(
    "message = f'hello {who} x{times}'\nprint(message)",
    parameters="who = 'world'\ntimes = 1",
    outputs="{'message': message, 'length': len(message)}",
)
FAILING = notebook(
    "a = 1",
    "raise ValueError(f'bad input {who}')",
    "b = 2",
    parameters="who = 'nobody'",
)
SLOW = notebook("import time\ntime.sleep(float(seconds))", parameters="seconds = 60")
DIES = notebook("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
