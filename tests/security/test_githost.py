"""Default-branch protection read from the Git host's API (GitHub REST and GitLab), against
a local HTTP server answering with the JSON shapes the hosts document, for a real local
checkout whose origin remote names the project."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_git import _open_titles, git, make_repo

from popcorn.db import session_scope
from popcorn.errors import Forbidden
from popcorn.listing import ListParams
from popcorn.security import schemas as s
from popcorn.security import service
from popcorn.security.models import SecurityAccount

GITHUB_PROTECTED = {  # GET /repos/{owner}/{repo}/branches/{branch}/protection
    "url": "https://api.github.com/repos/acme/service/branches/main/protection",
    "required_status_checks": {"strict": True, "contexts": ["ci/test", "ci/lint"]},
    "enforce_admins": {"enabled": True},
    "required_pull_request_reviews": {
        "dismiss_stale_reviews": True,
        "require_code_owner_reviews": False,
        "required_approving_review_count": 2,
    },
    "required_linear_history": {"enabled": False},
    "allow_force_pushes": {"enabled": True},
    "allow_deletions": {"enabled": False},
    "required_signatures": {"enabled": False},
}
GITHUB_UNPROTECTED = {
    "message": "Branch not protected",
    "documentation_url": "https://docs.github.com/rest/branches/branch-protection",
}
GITLAB_PROTECTED = [  # GET /projects/:id/protected_branches
    {
        "id": 1,
        "name": "release/*",
        "push_access_levels": [{"access_level": 40, "access_level_description": "Maintainers"}],
        "merge_access_levels": [{"access_level": 30, "access_level_description": "Developers"}],
        "allow_force_push": False,
        "code_owner_approval_required": False,
    },
    {
        "id": 2,
        "name": "main",
        "push_access_levels": [{"access_level": 0, "access_level_description": "No one"}],
        "merge_access_levels": [{"access_level": 40, "access_level_description": "Maintainers"}],
        "allow_force_push": False,
        "code_owner_approval_required": True,
    },
]


class Host:
    """What the fake host answers next, and the requests it saw."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.url = ""


@pytest.fixture
def host() -> Iterator[Host]:
    state = Host()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            status, body = state.answers.get(self.path, (404, {"message": "Not Found"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _checkout(tmp_path: Path, remote: str) -> Path:
    repo = make_repo(tmp_path)
    git(repo, "remote", "add", "origin", remote)
    return repo


def _config(account: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        [item] = service.list_items(
            session=session, params=ListParams(filters={"account_id": [str(account)]})
        ).items
        return dict(service.list_revisions(session=session, item_id=item.id)[-1].config)


def test_github_branch_protection_opens_and_fixes_the_issue(tmp_path: Path, host: Host) -> None:
    repo = _checkout(tmp_path, "git@github.com:acme/service.git")
    path = "/api/v3/repos/acme/service/branches/main/protection"
    host.answers[path] = (404, GITHUB_UNPROTECTED)
    with session_scope() as session:
        account = service.create_account(
            session=session,
            spec=s.AccountCreate(
                name="code",
                kind="git",
                repositories=[str(repo)],
                git_host="github",
                git_api_url=host.url + "/api/v3",
                git_token="ghp_secret-token",
            ),
        ).id
        sealed = session.get(SecurityAccount, account).secret_sealed
    assert sealed and "ghp_secret-token" not in sealed
    assert service.poll(account)["git_repository"]["status"] == "ok"
    assert _config(account)["branch_protection"] is False
    assert "default branch main is not protected" in _open_titles(account)
    assert host.seen[-1][0] == path
    assert host.seen[-1][1]["authorization"] == "Bearer ghp_secret-token"

    host.answers[path] = (200, GITHUB_PROTECTED)
    service.poll(account)
    protection = _config(account)["branch_protection"]
    assert protection["required_reviews"] == 2 and protection["enforce_admins"] is True
    assert protection["status_checks"] == ["ci/lint", "ci/test"]
    assert protection["force_pushes"] is True
    assert _open_titles(account)[-1] == "force pushes are allowed on the protected branch main"
    assert "default branch main is not protected" not in _open_titles(account)

    # A refused token is a failed poll of that repository, never "not protected".
    host.answers[path] = (401, {"message": "Bad credentials"})
    result = service.poll(account)["git_repository"]
    assert result["status"] == "failed" and "HTTP 401: Bad credentials" in result["error"]
    assert "ghp_secret-token" not in result["error"]
    assert _config(account)["branch_protection"]["required_reviews"] == 2  # last one kept


def test_gitlab_protected_branches_and_outbound_rules(
    tmp_path: Path, host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _checkout(tmp_path, "https://gitlab.example.com/acme/service.git")
    path = "/api/v4/projects/acme%2Fservice/protected_branches"
    host.answers[path] = (200, GITLAB_PROTECTED[:1])  # only release/* is protected
    with session_scope() as session:
        account = service.create_account(
            session=session,
            spec=s.AccountCreate(
                name="lab",
                kind="git",
                repositories=[str(repo)],
                git_host="gitlab",
                git_api_url=host.url + "/api/v4",
                git_token="glpat-token",
            ),
        ).id
    service.poll(account)
    assert _config(account)["branch_protection"] is False
    assert host.seen[-1][1]["private-token"] == "glpat-token"
    host.answers[path] = (200, GITLAB_PROTECTED)
    service.poll(account)
    assert _config(account)["branch_protection"] == {
        "host": "gitlab",
        "rule": "main",
        "push": ["No one"],
        "merge": ["Maintainers"],
        "force_pushes": False,
        "code_owner_reviews": True,
    }
    assert "default branch main is not protected" not in _open_titles(account)

    # The API is called only where an admin allowed it.
    from popcorn.config import reset_settings

    monkeypatch.setenv("POPCORN_OUTBOUND_ALLOW", "")
    reset_settings()
    try:
        seen = len(host.seen)
        result = service.poll(account)["git_repository"]
        assert result["status"] == "failed" and "not allowed" in result["error"]
        assert len(host.seen) == seen
        with session_scope() as session, pytest.raises(Forbidden):
            service.create_account(
                session=session,
                spec=s.AccountCreate(
                    name="lab2",
                    kind="git",
                    repositories=[str(repo)],
                    git_host="gitlab",
                    git_api_url=host.url,
                ),
            )
    finally:
        monkeypatch.undo()
        reset_settings()
    with session_scope(readonly=True) as session:
        assert (
            session.scalar(select(SecurityAccount.id).where(SecurityAccount.name == "lab2")) is None
        )


def test_host_api_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="git_host and git_api_url"):
        s.AccountCreate(name="x", kind="git", repositories=["/tmp"], git_host="github")
    with pytest.raises(ValueError, match="belong to a git account"):
        s.AccountCreate(name="x", git_host="github", git_api_url="https://api.github.com")
