"""The demo's security part against a moto server: it watches, opens and fixes issues, and
repoes a role from CloudTrail usage held in S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.mark.slow
def test_demo_security_part(moto_endpoint: str, aws_env: dict[str, str], tmp_path: Path) -> None:
    from popcorn.demo import security as security_demo

    found = security_demo.build(moto_endpoint, tmp_path)
    assert found["open_issues"] >= 5 and found["fixed_issues"] == 1
    assert found["worst"] == "deploy"
    assert found["cloudtrail_records"] == 10_000
    assert found["removed"]  # the app role lost what it never used
    summary: dict[str, Any] = found
    assert summary["git_account"] == "demo-git"
