"""Default-branch protection from the Git host's API, where the account names one.

A plain Git remote does not say whether a branch is protected; GitHub and GitLab do:
- GitHub REST: `GET {api}/repos/{owner}/{repo}/branches/{branch}/protection`
  (404 with "Branch not protected" when it is not);
- GitLab: `GET {api}/projects/{url-encoded path}/protected_branches` (a list; a protected
  name may be a wildcard such as `release/*`).

The project is the path of the clone URL, or, for a local checkout, of its `origin` remote.
Every call goes through the outbound allow-list; the token comes from the account's sealed
secret and is sent only to the API URL the account names. A refused token or an unreachable
host fails this repository's poll (reported on the watcher, the last revision kept): it is
never read as "not protected".
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from popcorn.errors import InvalidInput
from popcorn.outbound import check_url

HOSTS = ("github", "gitlab")
TIMEOUT = 20.0
_SCP = re.compile(r"^[\w.-]+@[\w.-]+:(?P<path>[^\s]+)$")


@dataclass(frozen=True)
class HostApi:
    """Which API answers for the account's repositories, and the token to send."""

    kind: str
    url: str
    token: str = ""


def project_path(remote: str) -> str:
    """`owner/name` (GitHub) or `group/sub/name` (GitLab) from a clone URL ('' if none)."""
    match = _SCP.match(remote)
    path = match.group("path") if match else urlsplit(remote).path
    path = path.strip("/").removesuffix(".git")
    return path if path.count("/") >= 1 and ".." not in path.split("/") else ""


def protection(api: HostApi, project: str, branch: str) -> dict[str, Any] | bool:
    """The branch's protection rules, normalised, or False when it is not protected."""
    if not project:
        raise InvalidInput(
            "branch protection: no project path (give a clone URL, or an origin remote)"
        )
    if api.kind == "github":
        return _github(api, project, branch)
    if api.kind == "gitlab":
        return _gitlab(api, project, branch)
    raise InvalidInput(f"unknown Git host {api.kind!r} (one of {', '.join(HOSTS)})")


def _get(api: HostApi, path: str, headers: dict[str, str]) -> Any:
    import httpx

    url = api.url.rstrip("/") + path
    check_url(url, purpose="Git host API")
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            return client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise InvalidInput(f"Git host API {api.url}: {type(exc).__name__}: {exc}") from None


def _message(answer: Any) -> str:
    try:
        return str(answer.json().get("message", ""))[:200]
    except (ValueError, AttributeError):
        return str(answer.text[:200])


def _refused(api: HostApi, answer: Any) -> InvalidInput:
    return InvalidInput(
        f"Git host API {api.url} answered HTTP {answer.status_code}: {_message(answer)}"
    )


def _github(api: HostApi, project: str, branch: str) -> dict[str, Any] | bool:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if api.token:
        headers["Authorization"] = f"Bearer {api.token}"
    owner, _, repo = project.partition("/")
    answer = _get(
        api,
        f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}/branches/"
        f"{quote(branch, safe='')}/protection",
        headers,
    )
    if answer.status_code == 404 and "not protected" in _message(answer).lower():
        return False
    if answer.status_code != 200:
        raise _refused(api, answer)
    data = answer.json()
    reviews = data.get("required_pull_request_reviews") or {}
    checks = data.get("required_status_checks") or {}

    def enabled(key: str) -> bool:
        return bool((data.get(key) or {}).get("enabled"))

    return {
        "host": "github",
        "required_reviews": int(reviews.get("required_approving_review_count", 0) or 0)
        if reviews
        else 0,
        "dismiss_stale_reviews": bool(reviews.get("dismiss_stale_reviews")),
        "code_owner_reviews": bool(reviews.get("require_code_owner_reviews")),
        "status_checks": sorted(checks.get("contexts") or []),
        "strict_status_checks": bool(checks.get("strict")),
        "enforce_admins": enabled("enforce_admins"),
        "force_pushes": enabled("allow_force_pushes"),
        "deletions": enabled("allow_deletions"),
        "linear_history": enabled("required_linear_history"),
        "signed_commits": enabled("required_signatures"),
    }


def _gitlab(api: HostApi, project: str, branch: str) -> dict[str, Any] | bool:
    headers = {"PRIVATE-TOKEN": api.token} if api.token else {}
    answer = _get(api, f"/projects/{quote(project, safe='')}/protected_branches", headers)
    if answer.status_code != 200:
        raise _refused(api, answer)
    data = answer.json()
    if not isinstance(data, list):
        raise InvalidInput(f"Git host API {api.url}: protected_branches is not a list")
    rules = [b for b in data if isinstance(b, dict) and isinstance(b.get("name"), str)]
    rule = next((b for b in rules if b["name"] == branch), None) or next(
        (b for b in rules if fnmatch.fnmatchcase(branch, b["name"])), None
    )
    if rule is None:
        return False

    def levels(key: str) -> list[str]:
        return sorted(
            str(level.get("access_level_description") or level.get("access_level"))
            for level in rule.get(key) or []
            if isinstance(level, dict)
        )

    return {
        "host": "gitlab",
        "rule": rule["name"],
        "push": levels("push_access_levels"),
        "merge": levels("merge_access_levels"),
        "force_pushes": bool(rule.get("allow_force_push")),
        "code_owner_reviews": bool(rule.get("code_owner_approval_required")),
    }
