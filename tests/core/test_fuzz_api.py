"""schemathesis against the app in-process: every operation, a few generated requests each
(destructive ones included, on the test database), as an admin. Fails on any 5xx and on any
status the OpenAPI document does not declare.

Operations in KNOWN_DOMAIN_FAILURES answer a 5xx for reasons inside their domain; each
names the problem and leaves the list once the domain's fix has landed.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

EXAMPLES = 6

# "METHOD /path": why it fails (fix in the domain, then delete the line).
KNOWN_DOMAIN_FAILURES: dict[str, str] = {}


def _fuzz(operation: Any, token: str) -> str | None:
    """The first problem found in a few generated requests to `operation`, or None."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"},
            checks=[not_a_server_error, status_code_conformance],
        )

    try:
        run()
    except (
        Exception,
        BaseExceptionGroup,
    ) as exc:  # a failed check: keep its first lines for the report
        text = "\n".join(str(e) for e in getattr(exc, "exceptions", [exc]))
        return " ".join(text.split())[:700]
    return None


@pytest.mark.slow
def test_api_answers_only_what_it_declares(app: Any, tokens: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    found: dict[str, str] = {}
    fixed: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        key = f"{operation.method.upper()} {operation.path}"
        problem = _fuzz(operation, tokens["admin"])
        if problem and key not in KNOWN_DOMAIN_FAILURES:
            found[key] = problem
        elif not problem and key in KNOWN_DOMAIN_FAILURES:
            fixed.append(key)
    assert not found, "\n".join(f"{key}: {problem}" for key, problem in found.items())
    if fixed:
        warnings.warn(f"fixed now, delete from KNOWN_DOMAIN_FAILURES: {fixed}", stacklevel=1)
