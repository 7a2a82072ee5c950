"""The remediation facade other domains use: start_runbook answers an ExecutionRead."""

from __future__ import annotations

import pytest
from remediation_kit import drain, steps

from popcorn.db import session_scope
from popcorn.errors import InvalidInput, NotFound
from popcorn.remediation import api as remediation_api

pytestmark = pytest.mark.usefixtures("test_packs")


def test_start_runbook_returns_the_execution_as_a_read_schema() -> None:
    with session_scope() as session:
        execution = remediation_api.start_runbook(
            session=session, runbook="testing.trivial", inputs={"n": 4}, trigger={"alert": "x"}
        )
    assert isinstance(execution, remediation_api.ExecutionRead)
    assert execution.status == "pending" and execution.runbook == "testing.trivial"
    assert execution.inputs["n"] == 4 and execution.trigger == {"alert": "x"}
    assert execution.job_id is not None
    drain()
    assert steps(execution.id)["think"]["outputs"] == {"double": 8}


def test_start_runbook_refuses_unknown_runbooks_and_bad_inputs() -> None:
    with session_scope() as session, pytest.raises(NotFound):
        remediation_api.start_runbook(session=session, runbook="testing.nope", inputs={})
    with session_scope() as session, pytest.raises(InvalidInput):
        remediation_api.start_runbook(session=session, runbook="testing.trivial", inputs={"n": "x"})
