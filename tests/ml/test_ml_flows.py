"""Flow discovery reads files, never imports them: a domain's flows/ folder is found by
its package location, files without a FlowSpec or with syntax errors are skipped."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from popcorn.ml import flows_registry

FLOW = '''
from metaflow import FlowSpec, Parameter, step
raise SystemExit("a flow file must never be imported by discovery")


class TestFailureFlow(FlowSpec):
    """Failure prediction.

    More text."""

    threshold = Parameter("threshold", default=0.5, help="Cut-off.")

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass
'''


def test_a_domains_flows_folder_is_found_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "devicelab"
    (package / "flows").mkdir(parents=True)
    (package / "flows" / "test_failure.py").write_text(FLOW)
    (package / "flows" / "_helpers.py").write_text(FLOW)
    (package / "flows" / "notes.py").write_text("x = 1\n")
    (package / "flows" / "broken.py").write_text("class (:\n")
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        if name == "popcorn.devicelab":
            return SimpleNamespace(submodule_search_locations=[str(package)])
        return real(name, *args)

    monkeypatch.setattr(flows_registry.importlib.util, "find_spec", find_spec)
    flows = {f.name: f for f in flows_registry.discover()}
    found = flows["test-failure"]
    assert found.source == "devicelab" and found.class_name == "TestFailureFlow"
    assert found.description == "Failure prediction."
    assert found.steps == ["start", "end"]
    assert [(p.name, p.default, p.help) for p in found.parameters] == [
        ("threshold", 0.5, "Cut-off.")
    ]
    assert not {"helpers", "notes", "broken", "-helpers"} & set(flows)
    assert flows["recommendations"].source == "popcorn"
