"""Helpers for the ml tests (imported by bare name: the test folders are on the path)."""

from __future__ import annotations


def start(flow: str, **parameters: str) -> int:
    """Record a run (no job) and return its id."""
    from popcorn.db import session_scope
    from popcorn.ml import schemas, service

    with session_scope() as session:
        spec = schemas.RunCreate(flow=flow, parameters=parameters)
        return service.start_run(session=session, spec=spec, queue_job=False).id
