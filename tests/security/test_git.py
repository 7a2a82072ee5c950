"""The Git watcher over real repositories made with git: committers, files that look like
secrets (issues that open and are fixed), and bad repositories reported, not fatal."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.security import issues, service
from popcorn.security import schemas as s
from popcorn.security.models import SecurityWatcherState


def git(repo: Path, *args: str, author: str = "Ada <ada@example.com>") -> None:
    name, email = author[:-1].split(" <")
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "HOME": str(repo.parent),
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def make_repo(root: Path) -> Path:
    repo = root / "service"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "README.md").write_text("service\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "--quiet", "-m", "start")
    (repo / "deploy").mkdir()
    (repo / "deploy" / "settings.py").write_text('KEY = "AKIAABCDEFGHIJKLMNOP"\n')
    (repo / "deploy" / ".env").write_text("TOKEN=x\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "deploy", author="Bob <bob@example.com>")
    return repo


def _open_titles(account_id: int) -> list[str]:
    with session_scope(readonly=True) as session:
        page = issues.list_issues(
            session=session,
            params=ListParams(filters={"account_id": [str(account_id)], "status": ["open"]}),
        )
        return sorted(i.title for i in page.items)


def test_git_repository_is_watched_and_audited(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    with session_scope() as session:
        account = service.create_account(
            session=session,
            spec=s.AccountCreate(
                name="code", kind="git", repositories=[str(repo), str(tmp_path / "gone")]
            ),
        ).id
    result = service.poll(account)["git_repository"]
    assert result["status"] == "partial" and "gone" in result["error"]
    with session_scope(readonly=True) as session:
        [item] = service.list_items(session=session, params=ListParams()).items
        config = service.list_revisions(session=session, item_id=item.id)[-1].config
        state = session.scalars(select(SecurityWatcherState)).one()
        assert state.status == "partial" and state.items == 1
    assert item.name == "service" and item.score == 20
    assert config["default_branch"] == "main" and config["branch_protection"] is None
    assert config["committers"] == ["Ada <ada@example.com>", "Bob <bob@example.com>"]
    assert _open_titles(account) == [
        "deploy/.env looks like a secret (environment file)",
        "deploy/settings.py looks like a secret (AWS access key id)",
    ]

    git(repo, "rm", "--quiet", "deploy/settings.py")
    git(repo, "commit", "--quiet", "-m", "no keys in code")
    service.poll(account)
    assert _open_titles(account) == ["deploy/.env looks like a secret (environment file)"]
    with session_scope(readonly=True) as session:
        d = service.diff(session=session, item_id=item.id)
    assert {c["path"] for c in d["changes"]} == {"files", "head", "secret_files"}
