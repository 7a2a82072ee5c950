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


def test_yarn_and_kubernetes_masters_are_configuration_passed_to_spark_submit(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No YARN or Kubernetes cluster runs here: what is tested is that such masters are
    accepted, checked, and passed to spark-submit with their --conf pairs (argument list)."""
    conf = {
        "spark.kubernetes.container.image": "apache/spark:4.0.0",
        "spark.executor.instances": "2",
    }
    cases = [
        ({"spark_master": "yarn", "spark_conf": {"spark.yarn.queue": "etl"}}, 201, ""),
        ({"spark_master": "k8s://https://127.0.0.1:6443", "spark_conf": conf}, 201, ""),
        ({"spark_master": "k8s://https://127.0.0.1:6443"}, 422, "spark.kubernetes.container.image"),
        ({"spark_master": "yarn", "spark_conf": {"not.spark": "x"}}, 422, "keys are spark.*"),
        ({"spark_master": "yarn", "spark_conf": {"spark.a": "x\n--jars y"}}, 422, "one-line"),
        ({"spark_master": "mesos://h:5050"}, 422, "must be local"),
        (
            {"spark_master": "k8s://https://metadata.internal.invalid:443", "spark_conf": conf},
            4,
            "",
        ),
    ]
    for n, (extra, status, reason) in enumerate(cases):
        body = {"name": f"cluster-{n}", "kind": "spark", "script": examples.WORDCOUNT, **extra}
        answer = api.post(f"{BASE}/definitions", json=body)
        if status == 4:  # an API server the admin did not allow (or that does not resolve)
            assert 400 <= answer.status_code < 500, answer.get_json()
            continue
        assert answer.status_code == status, answer.get_json()
        if reason:
            assert reason in answer.get_json()["error"]["message"]
    notebook_with_master = {"name": "nb", "notebook": nbkit.GREETING, "spark_master": "yarn"}
    assert api.post(f"{BASE}/definitions", json=notebook_with_master).status_code == 422

    attempt = execute.Attempt(
        run_id=0,
        number=1,
        kind="spark",
        source=b"",
        parameters={"path": "/data/words.txt"},
        kernel="python3",
        timeout=60,
        master="k8s://https://127.0.0.1:6443",
        callable="",
        retries=0,
        spark_conf=conf,
    )
    command = execute.submit_command(attempt, Path("/tmp/job.py"))
    assert command[1:3] == ["--master", "k8s://https://127.0.0.1:6443"]
    assert command[3:9] == [
        "--conf",
        "spark.executor.instances=2",
        "--conf",
        "spark.kubernetes.container.image=apache/spark:4.0.0",
        "--conf",
        "spark.ui.enabled=false",
    ]
    assert command[-2:] == ["/tmp/job.py", '{"path": "/data/words.txt"}']

    # Before spark-submit: YARN needs its configuration, a Kubernetes API server must answer.
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    assert "HADOOP_CONF_DIR" in execute.master_unreachable("yarn")
    monkeypatch.setenv("HADOOP_CONF_DIR", "/etc/hadoop/conf")
    assert execute.master_unreachable("yarn") == ""
    down = f"k8s://https://127.0.0.1:{free_port()}"
    assert execute.master_unreachable(down).startswith(f"Spark master {down} is not reachable")
    run_id = api.post(
        f"{BASE}/definitions/cluster-1/runs", json={"parameters": {"path": "x"}}
    ).get_json()["id"]
    execute.run_attempt(run_id)  # 127.0.0.1:6443: nothing listens here
    failed = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert failed["status"] == "failed" and "is not reachable" in failed["error"]
