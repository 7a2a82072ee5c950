"""Definitions and runs: validation, real kernels through papermill, stored outputs, events,
re-runs, chaining, cancel, a dying kernel, and the failing cell."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import nbkit
from console_kit import Console  # type: ignore[import-not-found]
from popcorn_testing import Api, wait_until
from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.notebooks import execute, service
from popcorn.notebooks.models import NotebookRun
from popcorn.outbox import OutboxEvent
from popcorn.storage import get_store

BASE = "/api/v1/notebooks"


def define(api: Api, name: str, notebook: dict[str, Any], **extra: Any) -> dict[str, Any]:
    answer = api.post(f"{BASE}/definitions", json={"name": name, "notebook": notebook, **extra})
    assert answer.status_code == 201, answer.get_json()
    body: dict[str, Any] = answer.get_json()
    return body


def run(api: Api, ref: str | int, parameters: dict[str, Any] | None = None) -> int:
    answer = api.post(f"{BASE}/definitions/{ref}/runs", json={"parameters": parameters or {}})
    assert answer.status_code == 202, answer.get_json()
    run_id: int = answer.get_json()["id"]
    return run_id


def events(kind: str) -> list[dict[str, Any]]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.type == kind))
        return [{"id": r.object_id, **r.payload} for r in rows]


def test_bad_definitions_are_refused_with_a_reason(api: Api) -> None:
    cases = [
        ({"notebook": {"cells": "nope"}}, "not a valid notebook"),
        ({"notebook": nbkit.GREETING, "parameters": {"whom": "x"}}, "unknown parameter(s) whom"),
        ({"notebook": nbkit.GREETING, "kernel": "cobol"}, "unknown kernel 'cobol'"),
        ({"notebook": nbkit.GREETING, "cron": "61 * * * *"}, "does not parse"),
        (
            {"notebook": nbkit.GREETING, "cron": "* * * * *", "timezone": "Mars/Olympus"},
            "time zone",
        ),
        ({"kind": "callable", "callable": "os:system"}, "not in an installed plugin"),
        ({"kind": "spark", "script": "print(1)", "spark_master": "yarn; rm -rf /"}, "Spark master"),
        ({"notebook": nbkit.GREETING, "workspace_path": "a.ipynb"}, "exactly one"),
        ({"workspace_path": "missing.ipynb"}, "no archived notebook"),
    ]
    for body, reason in cases:
        answer = api.post(f"{BASE}/definitions", json={"name": "bad", **body})
        assert 400 <= answer.status_code < 500, (body, answer.get_json())
        assert reason in answer.get_json()["error"]["message"], answer.get_json()
    assert api.get(f"{BASE}/definitions").get_json()["items"] == []
    assert (
        api.post(
            f"{BASE}/definitions", json={"name": "x", "notebook": nbkit.GREETING}, role="viewer"
        ).status_code
        == 403
    )


def test_a_run_stores_its_output_emits_and_chains_its_outputs(api: Api, client: Any) -> None:
    first = define(api, "greet", nbkit.GREETING, parameters={"who": "team"}, tags=["daily"])
    define(
        api,
        "measure",
        nbkit.notebook(
            "import os\ntotal = length * 2",
            parameters="message = ''\nlength = 0",
            outputs="{'total': total, 'settings': sorted(k for k in os.environ if 'POPCORN' in k)}",
        ),
        after="greet",
    )
    run_id = run(api, first["id"], {"times": 3})
    assert execute.run_attempt(run_id)["status"] == "succeeded"

    done = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert done["status"] == "succeeded"
    assert done["parameters"] == {"who": "team", "times": 3}
    assert done["outputs"] == {"message": "hello team x3", "length": 13}
    assert done["duration_s"] > 0 and done["failed_cell"] is None
    stored = json.loads(get_store().get(done["output_key"]))
    assert "hello team x3" in json.dumps(stored["cells"])
    assert api.get(f"{BASE}/runs/{run_id}/output").get_json()["cells"] == stored["cells"]
    assert [e["id"] for e in events("notebooks.run.succeeded")] == [str(run_id)]
    scraped = client.get("/metrics").get_data(as_text=True)
    assert 'popcorn_notebook_runs{status="succeeded"} 1.0' in scraped
    assert 'popcorn_notebook_last_success_timestamp_seconds{definition="greet"}' in scraped

    # B ran after A with A's outputs as its parameters (only the names B declares)
    chained = api.get(f"{BASE}/runs?trigger=chain").get_json()["items"]
    assert len(chained) == 1 and chained[0]["parent_run_id"] == run_id
    assert chained[0]["parameters"] == {"message": "hello team x3", "length": 13}
    execute.run_attempt(chained[0]["id"])
    # ... in a kernel that does not see the platform's settings and secrets
    chained_outputs = api.get(f"{BASE}/runs/{chained[0]['id']}").get_json()["outputs"]
    assert chained_outputs == {"total": 26, "settings": []}

    # re-run with a changed parameter; a parameter the notebook does not declare is refused
    again = api.post(f"{BASE}/runs/{run_id}/rerun", json={"parameters": {"who": "ops"}}).get_json()
    assert again["parameters"] == {"who": "ops", "times": 3} and again["trigger"] == "rerun"
    bad = api.post(f"{BASE}/runs/{run_id}/rerun", json={"parameters": {"whom": "x"}})
    assert bad.status_code == 422


def test_a_failing_run_records_the_cell_and_traceback_and_renders_it(
    api: Api, client: Any, tokens: dict[str, str]
) -> None:
    define(api, "broken", nbkit.FAILING, retries=0)
    run_id = run(api, "broken", {"who": "carol"})
    assert execute.run_attempt(run_id)["status"] == "failed"
    failed = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert failed["status"] == "failed" and not failed["retryable"]
    assert failed["error"] == "ValueError: bad input carol"
    assert "raise ValueError" in failed["traceback"]
    output = json.loads(get_store().get(failed["output_key"]))
    cell = output["cells"][failed["failed_cell"]]
    assert "raise ValueError" in "".join(cell["source"])
    assert events("notebooks.run.failed")[0]["failed_cell"] == failed["failed_cell"]
    assert events("notebooks.run.succeeded") == []

    console = Console(client, tokens["viewer"])
    html = console.page(f"/ui/notebooks/runs/{run_id}")
    assert "bad input carol" in html and "<iframe" in html and " sandbox " in html
    assert "broken" in console.page("/ui/notebooks")
    framed = console.get(f"/ui/notebooks/runs/{run_id}/output.html")
    assert "sandbox" in framed.headers["Content-Security-Policy"]
    assert "script-src" not in framed.headers["Content-Security-Policy"]
    body = framed.get_data(as_text=True)
    assert "celltag_popcorn-failed-cell" in body and "bad input carol" in body


def test_a_dying_kernel_fails_the_run_and_cancel_stops_the_kernel(api: Api) -> None:
    define(api, "dies", nbkit.DIES)
    run_id = run(api, "dies")
    execute.run_attempt(run_id)
    dead = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert dead["status"] == "failed" and "kernel died" in dead["error"]
    assert dead["failed_cell"] == 0

    define(api, "slow", nbkit.SLOW, timeout=120)
    slow_id = run(api, "slow")
    worker = threading.Thread(target=execute.run_attempt, args=(slow_id,))
    worker.start()

    def kernel_pid() -> int | None:
        with session_scope(readonly=True) as session:
            found = session.get(NotebookRun, slow_id)
            return found.kernel_pid if found else None

    pid = wait_until(kernel_pid, timeout=60)
    assert api.post(f"{BASE}/runs/{slow_id}/cancel").status_code == 200
    worker.join(timeout=30)
    assert not worker.is_alive()
    wait_until(lambda: not _alive(pid), timeout=10)
    canceled = api.get(f"{BASE}/runs/{slow_id}").get_json()
    assert canceled["status"] == "canceled"
    assert api.post(f"{BASE}/runs/{slow_id}/cancel").status_code == 409


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_exclusive_definitions_run_one_at_a_time(api: Api) -> None:
    define(api, "single", nbkit.GREETING, exclusive=True, cron="* * * * *")
    first = run(api, "single")
    answer = api.post(f"{BASE}/definitions/single/runs", json={})
    assert (
        answer.status_code == 409 and answer.get_json()["error"]["details"]["active_run"] == first
    )
    with session_scope() as session:
        definition = service.get_definition(session=session, ref="single")
        skipped = service.start_run(session=session, definition=definition, trigger="schedule")
        assert skipped.status == "skipped" and skipped.job_id is None


def test_output_formats_are_stored_beside_the_notebook(
    api: Api, client: Any, tokens: dict[str, str]
) -> None:
    """ipynb always; html and markdown through nbconvert; pdf through nbconvert's WebPDF
    exporter with Debian's chromium (no download)."""
    import shutil

    import pytest

    if shutil.which("chromium") is None:
        pytest.skip("PDF output needs chromium (Debian package, installed by .ci/run)")
    define(api, "report", nbkit.GREETING, output_formats=["html", "markdown", "pdf"])
    run_id = run(api, "report", {"who": "formats"})
    assert execute.run_attempt(run_id)["status"] == "succeeded"
    done = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert sorted(done["format_keys"]) == ["html", "markdown", "pdf"], done["format_errors"]
    html = api.get(f"{BASE}/runs/{run_id}/output/html")
    assert html.status_code == 200 and "hello formats x1" in html.get_data(as_text=True)
    markdown = api.get(f"{BASE}/runs/{run_id}/output/markdown").get_data(as_text=True)
    assert "```python" in markdown and "hello formats x1" in markdown
    pdf = api.get(f"{BASE}/runs/{run_id}/output/pdf")
    assert pdf.mimetype == "application/pdf" and pdf.get_data().startswith(b"%PDF")
    assert "attachment" in pdf.headers["Content-Disposition"]
    ipynb = api.get(f"{BASE}/runs/{run_id}/output/ipynb")
    assert json.loads(ipynb.get_data())["cells"]

    # a definition that asked for nothing has only the notebook; unknown formats are 4xx
    define(api, "plain", nbkit.GREETING)
    plain = run(api, "plain")
    execute.run_attempt(plain)
    missing = api.get(f"{BASE}/runs/{plain}/output/html")
    assert missing.status_code == 404 and "did not ask" in missing.get_json()["error"]["message"]
    assert api.get(f"{BASE}/runs/{plain}/output/docx").status_code == 422
    bad = api.post(
        f"{BASE}/definitions",
        json={"name": "x", "kind": "callable", "callable": "p:f", "output_formats": ["html"]},
    )
    assert 400 <= bad.status_code < 500

    console = Console(client, tokens["viewer"])
    page = console.page(f"/ui/notebooks/runs/{run_id}")
    assert f"/ui/notebooks/runs/{run_id}/output/pdf" in page
    download = console.get(f"/ui/notebooks/runs/{run_id}/output/markdown")
    assert download.status_code == 200 and b"hello formats x1" in download.get_data()


def test_console_forms_define_edit_and_run_now(
    api: Api, client: Any, tokens: dict[str, str]
) -> None:
    """An admin defines a job by uploading a notebook and edits it in the console; an
    operator (kernels run as the worker's user) gets neither form but runs it now; forms
    need the CSRF token; viewers see no form and cannot post."""
    import io

    admin = Console(client, tokens["admin"])
    form = admin.page("/ui/notebooks/new")
    assert 'enctype="multipart/form-data"' in form and 'name="csrf"' in form

    def create(**fields: Any) -> Any:
        data = {
            "csrf": admin.csrf,
            "name": "console-job",
            "kind": "notebook",
            "parameters": '{"who": "console"}',
            "timezone": "UTC",
            "timeout": "120",
            "retries": "1",
            "tags": "daily, console",
            "output_formats": ["html"],
            "enabled": "on",
            "notebook": (io.BytesIO(json.dumps(nbkit.GREETING).encode()), "greet.ipynb"),
            **fields,
        }
        return client.post(
            "/ui/notebooks/definitions", data=data, content_type="multipart/form-data"
        )

    refused = create(cron="61 * * * *")
    assert refused.status_code == 422 and "does not parse" in refused.get_data(as_text=True)
    assert 'value="console-job"' in refused.get_data(as_text=True)  # what was typed stays
    bad_json = create(parameters="{who")
    assert bad_json.status_code == 422 and "parameters: not JSON" in bad_json.get_data(as_text=True)
    no_csrf = client.post(
        "/ui/notebooks/definitions",
        data={"name": "x", "notebook": (io.BytesIO(b"{}"), "x.ipynb")},
        content_type="multipart/form-data",
    )
    assert no_csrf.status_code in (400, 403)
    assert api.get(f"{BASE}/definitions").get_json()["items"] == []

    made = create(cron="0 6 * * *", timezone="Europe/Amsterdam")
    assert made.status_code == 302, made.get_data(as_text=True)[:2000]
    [definition] = api.get(f"{BASE}/definitions").get_json()["items"]
    assert definition["parameters"] == {"who": "console"} and definition["cron"] == "0 6 * * *"
    assert definition["tags"] == ["console", "daily"] and definition["output_formats"] == ["html"]
    assert definition["retries"] == 1 and definition["timezone"] == "Europe/Amsterdam"

    edit = admin.page(f"/ui/notebooks/definitions/{definition['id']}/edit")
    assert "Europe/Amsterdam" in edit
    saved = admin.post(
        f"/ui/notebooks/definitions/{definition['id']}/edit",
        {
            "parameters": '{"who": "edited"}',
            "cron": "",
            "timezone": "UTC",
            "timeout": "60",
            "retries": "0",
            "tags": "console",
            "enabled": "on",
        },
    )
    assert saved.status_code == 302
    changed = api.get(f"{BASE}/definitions/{definition['id']}").get_json()
    assert changed["cron"] is None and changed["parameters"] == {"who": "edited"}
    assert changed["timeout"] == 60 and changed["output_formats"] == []
    wrong = admin.post(
        f"/ui/notebooks/definitions/{definition['id']}/edit",
        {"parameters": '{"whom": "x"}', "timezone": "UTC", "enabled": "on"},
    )
    assert wrong.status_code == 422 and "unknown parameter" in wrong.get_data(as_text=True)

    operator = Console(client, tokens["operator"])
    page = operator.page(f"/ui/notebooks/definitions/{definition['id']}")
    assert "Run now" in page and "/edit" not in page
    assert "New job definition" not in operator.page("/ui/notebooks")
    assert operator.get("/ui/notebooks/new").status_code == 403
    assert operator.get(f"/ui/notebooks/definitions/{definition['id']}/edit").status_code == 403
    refused_edit = operator.post(
        f"/ui/notebooks/definitions/{definition['id']}/edit",
        {"parameters": "{}", "timezone": "UTC", "timeout": "5", "enabled": "on"},
    )
    assert refused_edit.status_code == 403
    assert api.get(f"{BASE}/definitions/{definition['id']}").get_json()["timeout"] == 60
    started = operator.post(
        f"/ui/notebooks/definitions/{definition['id']}/run", {"parameters": '{"times": 2}'}
    )
    assert started.status_code == 302 and "/ui/notebooks/runs/" in started.headers["Location"]
    [queued] = api.get(f"{BASE}/runs").get_json()["items"]
    assert queued["parameters"] == {"who": "edited", "times": 2} and queued["status"] == "queued"
    assert execute.run_attempt(queued["id"])["status"] == "succeeded"

    viewer = Console(client, tokens["viewer"])
    page = viewer.page(f"/ui/notebooks/definitions/{definition['id']}")
    assert "Run now" not in page and "/edit" not in page
    assert viewer.post(f"/ui/notebooks/definitions/{definition['id']}/run", {}).status_code == 403
    assert viewer.get("/ui/notebooks/new").status_code == 403
