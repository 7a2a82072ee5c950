"""What an operator's code job can reach: without `notebooks_run_as` only admins make or
change jobs (operators run them); with it, kernels run as that user and cannot read
POPCORN_HOME, and a worker that cannot switch users refuses to start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbkit
import pytest
from click.testing import CliRunner
from popcorn_testing import Api

from popcorn import runas
from popcorn.config import get_settings, reset_settings
from popcorn.db import session_scope
from popcorn.notebooks import execute, service

BASE = "/api/v1/notebooks"
USER = "nobody"
as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="starting kernels as another user needs root (CI runs as root)"
)


@pytest.fixture
def run_as(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Kernels and spark-submit run as `nobody`."""
    monkeypatch.setenv("POPCORN_NOTEBOOKS_RUN_AS", USER)
    reset_settings()
    yield USER
    monkeypatch.delenv("POPCORN_NOTEBOOKS_RUN_AS")
    reset_settings()


def definition(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "notebook": nbkit.GREETING, **extra}


def test_without_run_as_only_admins_make_or_change_code_jobs(api: Api) -> None:
    refused = [
        definition("nb"),
        {"name": "sp", "kind": "spark", "script": "print(1)"},
        {"name": "fn", "kind": "callable", "callable": "popcorn_test_plugins:flaky"},
    ]
    for body in refused:
        answer = api.post(f"{BASE}/definitions", json=body, role="operator")
        assert answer.status_code == 403, answer.get_json()
        assert "only an admin" in answer.get_json()["error"]["message"]
    assert api.get(f"{BASE}/definitions").get_json()["items"] == []

    made = api.post(f"{BASE}/definitions", json=definition("nb", parameters={"who": "a"}))
    assert made.status_code == 201, made.get_json()
    changed = api.patch(f"{BASE}/definitions/nb", json={"timeout": 5}, role="operator")
    assert changed.status_code == 403
    assert api.get(f"{BASE}/definitions/nb").get_json()["timeout"] == made.get_json()["timeout"]
    assert api.patch(f"{BASE}/definitions/nb", json={"timeout": 5}).status_code == 200

    # operators still run what admins defined, with parameters (papermill injects literals)
    started = api.post(
        f"{BASE}/definitions/nb/runs", json={"parameters": {"who": "op"}}, role="operator"
    )
    assert started.status_code == 202, started.get_json()
    again = api.post(f"{BASE}/runs/{started.get_json()['id']}/rerun", json={}, role="operator")
    assert again.status_code == 202


def test_a_workspace_job_takes_new_versions_only_from_who_may_change_it(api: Api) -> None:
    """A job on an archived path runs its latest version: archiving one changes its code."""
    first = {"path": "team/report.ipynb", "notebook": nbkit.GREETING}
    assert api.post(f"{BASE}/versions", json=first, role="operator").status_code == 201
    body = {"name": "ws", "workspace_path": "team/report.ipynb"}
    assert api.post(f"{BASE}/definitions", json=body).status_code == 201

    changed = {"path": "team/report.ipynb", "notebook": nbkit.FAILING}
    refused = api.post(f"{BASE}/versions", json=changed, role="operator")
    assert refused.status_code == 403 and "only an admin" in refused.get_json()["error"]["message"]
    listed = api.get(f"{BASE}/versions?path=team/report.ipynb").get_json()["items"]
    assert [v["version"] for v in listed] == [1]
    assert api.post(f"{BASE}/versions", json=changed).status_code == 201
    other = {"path": "mine.ipynb", "notebook": nbkit.FAILING}
    assert api.post(f"{BASE}/versions", json=other, role="operator").status_code == 201


def test_with_run_as_operators_make_notebook_jobs_but_never_callables(
    api: Api, run_as: str
) -> None:
    made = api.post(f"{BASE}/definitions", json=definition("nb"), role="operator")
    assert made.status_code == 201, made.get_json()
    assert (
        api.patch(f"{BASE}/definitions/nb", json={"timeout": 9}, role="operator").status_code == 200
    )
    callable_job = {"name": "fn", "kind": "callable", "callable": "popcorn_test_plugins:flaky"}
    refused = api.post(f"{BASE}/definitions", json=callable_job, role="operator")
    assert refused.status_code == 403
    assert "a callable runs inside the worker" in refused.get_json()["error"]["message"]


def test_a_worker_that_cannot_run_jobs_as_the_user_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from popcorn.cli import cli

    monkeypatch.setenv("POPCORN_NOTEBOOKS_RUN_AS", "no-such-user-here")
    reset_settings()
    try:
        result = CliRunner().invoke(cli, ["worker", "--burst"])
        assert result.exit_code == 1
        assert "no OS user named 'no-such-user-here'" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        monkeypatch.setattr(runas, "missing_capabilities", lambda: ["CAP_SETUID"])
        monkeypatch.setenv("POPCORN_NOTEBOOKS_RUN_AS", USER)
        reset_settings()
        result = CliRunner().invoke(cli, ["worker", "--burst"])
        assert result.exit_code == 1 and "needs this worker to run as root or with CAP_SETUID" in (
            result.output
        )
    finally:
        monkeypatch.delenv("POPCORN_NOTEBOOKS_RUN_AS")
        reset_settings()
    assert runas.problem("root").endswith("is root; name an unprivileged user")


@as_root
def test_the_check_refuses_a_home_the_user_can_enter() -> None:
    folder = Path(tempfile.mkdtemp(prefix="popcorn-home-", dir="/tmp"))  # /tmp: anyone passes
    try:
        folder.chmod(0o755)
        assert "nobody can read" in runas.problem(USER, [folder])
        folder.chmod(0o700)  # what ensure_home makes of POPCORN_HOME
        assert str(folder) not in runas.problem(USER, [folder])
    finally:
        shutil.rmtree(folder)
    home = get_settings().home.resolve()
    assert home.stat().st_mode & 0o777 == 0o700


def _kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel `nobody` can start: python3 when it may run this interpreter; else the system
    Python of the same version with this environment's packages (the venv's interpreter may
    live under /root, which no other user can enter)."""
    account = runas.lookup(USER)
    try:
        subprocess.run([sys.executable, "-c", "pass"], check=True, cwd="/", **account.popen())
        return "python3"
    except (PermissionError, subprocess.CalledProcessError):
        pass
    system = Path("/usr/bin/python3")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not system.exists() or version not in subprocess.check_output(
        [str(system), "-V"], text=True
    ):
        pytest.skip(f"no Python {version} that {USER} may run")
    spec = tmp_path / "jupyter" / "kernels" / "sandboxed"
    spec.mkdir(parents=True)
    argv = [str(system), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"]}
    kernel = {"argv": argv, "display_name": "sandboxed", "language": "python", "env": env}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "sandboxed"


PROBE = nbkit.notebook(
    "import os\nopen('made.txt', 'w').write('mine')\nrefused = []\n"
    "for path in private:\n"
    "    try:\n        open(path, 'rb').read(1)\n"
    "    except PermissionError:\n        refused.append(path)\n"
    "try:\n    os.symlink('/etc/passwd', '../output.ipynb.new')\n    planted = True\n"
    "except PermissionError:\n    planted = False",
    parameters="private = []",
    outputs="{'uid': os.getuid(), 'refused': refused, 'planted': planted, "
    "'files': sorted(os.listdir('.'))}",
)
PRYING = nbkit.notebook("data = open(secret, 'rb').read()", parameters="secret = ''")


@as_root
def test_a_kernel_run_as_the_user_cannot_read_the_platforms_files(
    api: Api, run_as: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = _kernel(tmp_path, monkeypatch)
    settings = get_settings()
    secret = settings.home.resolve() / "secret_key"
    settings.effective_secret_key  # noqa: B018  (made once, in the home)
    database = settings.home.resolve() / "popcorn.db"
    private = [str(secret), str(database)]
    for name, notebook in (("probe", PROBE), ("prying", PRYING)):
        made = api.post(
            f"{BASE}/definitions",
            json={"name": name, "notebook": notebook, "kernel": kernel},
            role="operator",
        )
        assert made.status_code == 201, made.get_json()

    probe = api.post(
        f"{BASE}/definitions/probe/runs", json={"parameters": {"private": private}}, role="operator"
    ).get_json()["id"]
    assert execute.run_attempt(probe)["status"] == "succeeded"
    prying = api.post(
        f"{BASE}/definitions/prying/runs", json={"parameters": {"secret": str(secret)}}
    ).get_json()["id"]
    assert execute.run_attempt(prying)["status"] == "failed"

    with session_scope(readonly=True) as session:
        ran = service.get_run(session=session, run_id=probe)
        failed = service.get_run(session=session, run_id=prying)
        assert ran.outputs["uid"] == runas.lookup(USER).uid
        assert ran.outputs["refused"] == private
        assert "made.txt" in ran.outputs["files"]  # its own folder is writable
        assert ran.outputs["planted"] is False  # the worker's folder is not
        assert ran.output_key  # the output notebook is stored
        assert failed.error.startswith("PermissionError"), failed.error
        assert failed.failed_cell is not None and failed.output_key


def test_a_pdf_output_never_loads_a_file_the_notebook_names(tmp_path: Path) -> None:
    """The PDF is printed by a Chromium with the worker's rights: a notebook's HTML (an
    operator's parameter shown as HTML is enough) must not make it load a worker's file."""
    import nbformat

    from popcorn.notebooks import formats

    if not formats.chromium():
        pytest.skip("no chromium for PDF output")
    secret = tmp_path / "secret_key"
    secret.write_text("not for operators")

    def read_since_reset() -> bool:
        return secret.stat().st_atime > 0

    def reset() -> None:  # relatime updates an access time older than the change time
        os.utime(secret, (0, secret.stat().st_mtime))

    reset()
    secret.read_text()
    if not read_since_reset():
        pytest.skip("this file system does not record reads (noatime)")
    url = secret.as_uri()
    tags = f'<iframe src="{url}"></iframe><img src="{url}"><object data="{url}"></object>'
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": tags})]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(tags), cell])
    reset()
    pdf = formats.convert(nbformat.writes(nb).encode(), "pdf")
    assert pdf.startswith(b"%PDF")
    assert not read_since_reset()
