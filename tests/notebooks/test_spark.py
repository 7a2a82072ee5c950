"""Spark jobs: a real local Spark word count (one JVM), and a master that is down."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbkit
import pytest
from popcorn_testing import Api, free_port

from popcorn.notebooks import examples, execute
from popcorn.storage import get_store

BASE = "/api/v1/notebooks"


def test_a_spark_job_whose_master_is_down_fails_with_the_reason(api: Api) -> None:
    master = f"spark://127.0.0.1:{free_port()}"
    body = {"name": "down", "kind": "spark", "script": examples.WORDCOUNT, "spark_master": master}
    assert api.post(f"{BASE}/definitions", json=body).status_code == 201
    run_id = api.post(
        f"{BASE}/definitions/down/runs", json={"parameters": {"path": "x"}}
    ).get_json()["id"]
    execute.run_attempt(run_id)
    failed = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert failed["status"] == "failed"
    assert failed["error"].startswith(f"Spark master {master} is not reachable")


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("java") is None, reason="Spark needs a Java runtime (default-jre-headless)"
)
def test_a_spark_word_count_runs_in_local_mode(api: Api, tmp_path: Path) -> None:
    words = ["popcorn"] * 30 + ["kernel"] * 20 + ["spark"] * 10 + ["ops"] * 5
    text = tmp_path / "words.txt"
    text.write_text("\n".join(" ".join(words[i : i + 7]) for i in range(0, len(words), 7)))
    body = {"name": "wordcount", "kind": "spark", "script": examples.WORDCOUNT}
    assert api.post(f"{BASE}/definitions", json=body).status_code == 201
    run_id = api.post(
        f"{BASE}/definitions/wordcount/runs", json={"parameters": {"path": str(text), "top": 3}}
    ).get_json()["id"]
    execute.run_attempt(run_id)
    done = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert done["status"] == "succeeded", done["error"] + done["traceback"]
    assert done["outputs"] == {"words": 65, "top": [["popcorn", 30], ["kernel", 20], ["spark", 10]]}
    log = get_store().get(done["log_key"]).decode()
    assert "POPCORN_OUTPUT" in log


def test_a_templated_spark_notebook_gets_its_master_as_a_parameter(api: Api) -> None:
    """The notebook builds its SparkSession from `spark_master` (not started here: one JVM
    per test run is enough; the word count above starts it)."""
    notebook = nbkit.notebook(
        "app = f'popcorn-{name}'",
        parameters="spark_master = 'local[1]'\nname = 'x'",
        outputs="{'master': spark_master, 'app': app}",
    )
    body = {"name": "templated", "kind": "spark", "notebook": notebook}
    assert api.post(f"{BASE}/definitions", json=body).status_code == 201
    run_id = api.post(
        f"{BASE}/definitions/templated/runs", json={"parameters": {"name": "etl"}}
    ).get_json()["id"]
    execute.run_attempt(run_id)
    done = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert done["outputs"] == {"master": "local[2]", "app": "popcorn-etl"}
