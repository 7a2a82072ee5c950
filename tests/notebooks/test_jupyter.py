"""The Jupyter server extension inside a real `jupyter server` (one per module), talking to
a real Popcorn server: archive on save, restore, publish, clone, schedule, log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import nbkit
import pytest
from popcorn_testing import Processes, free_port, wait_until

from popcorn.db import session_scope
from popcorn.notebooks import execute, service
from popcorn.notebooks.schemas import DefinitionCreate, DefinitionRead

JUPYTER_TOKEN = "jupyter-test-token"


def _up(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=2, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def servers(
    installation: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A Popcorn server and a Jupyter server with the extension, configured with its token."""
    from popcorn.auth import create_token

    with session_scope() as session:
        _, token = create_token(session=session, name="jupyter", role="operator")
    folder = tmp_path_factory.mktemp("jupyter")
    root = folder / "work"
    root.mkdir()
    procs = Processes(installation)
    popcorn_port, jupyter_port = free_port(), free_port()
    popcorn_url = f"http://127.0.0.1:{popcorn_port}"
    procs.start("serve", "--port", str(popcorn_port), "--workers", "1", log=folder / "serve.log")

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            f"--port={jupyter_port}",
            "--ip=127.0.0.1",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={JUPYTER_TOKEN}",
            "--ServerApp.jpserver_extensions=popcorn.notebooks.jupyter=True",
            f"--PopcornNotebooks.url={popcorn_url}",
            f"--PopcornNotebooks.token={token}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env={
            **procs.env,
            "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
            "JUPYTER_CONFIG_DIR": str(folder / "config"),
        },
        stdout=open(folder / "jupyter.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.procs.append(server)
    jupyter_url = f"http://127.0.0.1:{jupyter_port}"
    auth = {"Authorization": f"token {JUPYTER_TOKEN}"}
    try:
        wait_until(lambda: _up(popcorn_url + "/healthz"), timeout=60)
        wait_until(
            lambda: server.poll() is not None or _up(jupyter_url + "/api/status", auth), timeout=60
        )
        assert server.poll() is None, "jupyter server exited"
        yield {"jupyter": jupyter_url, "popcorn": popcorn_url, "root": root, "auth": auth}
    finally:
        procs.stop_all()
        print((folder / "jupyter.log").read_text()[-3000:])


@pytest.mark.slow
def test_save_archive_publish_clone_schedule_and_log_from_jupyter(servers: dict[str, Any]) -> None:
    base, auth = servers["jupyter"] + "/popcorn", servers["auth"]
    contents = servers["jupyter"] + "/api/contents/report.ipynb"

    def save(nb: dict[str, Any]) -> None:
        body = {"type": "notebook", "format": "json", "content": nb}
        answer = httpx.put(contents, json=body, headers=auth, timeout=60)
        assert answer.status_code in (200, 201), answer.text

    def versions(count: int) -> list[int]:
        """The archived version numbers once there are `count` (archiving is in the background)."""

        def listed() -> list[int] | None:
            answer = httpx.get(f"{base}/archive?path=report.ipynb", headers=auth, timeout=60)
            found = [v["version"] for v in answer.json()["versions"]]
            return found if len(found) >= count else None

        result: list[int] = wait_until(listed, timeout=60, interval=0.3)
        return result

    # the server's own auth guards the endpoints: no token, no access; a browser needs XSRF
    assert httpx.get(f"{base}/archive?path=report.ipynb").status_code == 403
    assert (
        httpx.post(timeout=60, url=f"{base}/publish", json={"path": "report.ipynb"}).status_code
        == 403
    )

    # every save is archived as a new version
    save(nbkit.GREETING)
    changed = json.loads(json.dumps(nbkit.GREETING))
    changed["cells"][1]["source"] = "message = f'bonjour {who} x{times}'\nprint(message)"
    assert versions(1) == [1]
    save(changed)
    assert versions(2) == [1, 2]

    # restore version 1: the file is version 1 again (and that save is version 3)
    answer = httpx.post(
        timeout=60,
        url=f"{base}/archive/restore",
        json={"path": "report.ipynb", "version": 1},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    restored = json.loads((servers["root"] / "report.ipynb").read_text())
    assert "hello" in "".join(restored["cells"][1]["source"])
    assert versions(3) == [1, 2, 3]
    bad_version = {"path": "report.ipynb", "version": "latest"}
    refused = httpx.post(timeout=60, url=f"{base}/archive/restore", json=bad_version, headers=auth)
    assert refused.status_code == 400

    # publish version 2 under a stable name; it reads back from Popcorn, read-only
    published = httpx.post(
        timeout=60,
        url=f"{base}/publish",
        json={"path": "report.ipynb", "version": 2, "slug": "weekly"},
        headers=auth,
    )
    assert published.status_code == 201, published.text
    assert published.json()["url"] == servers["popcorn"] + "/ui/notebooks/published/weekly"

    # clone the published version into the workspace, never over an existing file
    cloned = httpx.post(
        timeout=60,
        url=f"{base}/clone",
        json={"slug": "weekly", "target": "copy.ipynb"},
        headers=auth,
    )
    assert cloned.status_code == 201, cloned.text
    assert "bonjour" in (servers["root"] / "copy.ipynb").read_text()
    again = httpx.post(
        timeout=60,
        url=f"{base}/clone",
        json={"slug": "weekly", "target": "copy.ipynb"},
        headers=auth,
    )
    assert again.status_code == 409

    # scheduling makes a job whose code would run with the worker's rights: the extension's
    # operator token is refused, with Popcorn's reason; an admin defines it
    refused = httpx.post(
        timeout=60,
        url=f"{base}/schedule",
        json={"path": "report.ipynb", "name": "report", "cron": "*/5 * * * *"},
        headers=auth,
    )
    assert refused.status_code == 403 and "only an admin" in refused.json()["message"]
    with session_scope() as session:
        row = service.create_definition(
            session=session,
            spec=DefinitionCreate(
                name="report",
                workspace_path="report.ipynb",
                cron="*/5 * * * *",
                timezone="Europe/Paris",
                parameters={"who": "jupyter"},
            ),
        )
        definition = DefinitionRead.model_validate(row).model_dump(mode="json")
    assert definition["workspace_path"] == "report.ipynb" and definition["next_run_at"]

    # its tick comes: one run, executed on a real kernel, and the log shows it
    from datetime import datetime

    tick = datetime.fromisoformat(definition["next_run_at"])
    assert service.fire_due(now=tick) == 1
    with session_scope(readonly=True) as session:
        run = service.recent_runs(session=session, limit=1)[0]
        run_id, run_tick = run.id, run.tick
    assert run_tick == tick
    assert execute.run_attempt(run_id)["status"] == "succeeded"
    runs = httpx.get(timeout=60, url=f"{base}/log?path=report.ipynb", headers=auth).json()["runs"]
    assert [(r["id"], r["status"], r["outputs"]["message"]) for r in runs] == [
        (run_id, "succeeded", "hello jupyter x1")
    ]
