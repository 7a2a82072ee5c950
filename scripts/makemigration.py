"""Generate an Alembic revision for one branch (core or a domain) from the models.

Usage: .venv/bin/python scripts/makemigration.py <branch> "<message>"
where <branch> is `core` or a domain name (e.g. `inventory`). A new domain's
first revision depends on the core's head.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory

from popcorn.db import alembic_config, upgrade

JSON_RENDERED = re.compile(
    r"sa\.JSON\(\)\.with_variant\(postgresql\.JSONB\(astext_type=(?:sa\.)?Text\(\)\), "
    r"'postgresql'\)"
)


def main() -> None:
    branch, message = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/gen.db"
        upgrade(url)
        cfg = alembic_config(url)
        script = ScriptDirectory.from_config(cfg)
        labels = {label for rev in script.walk_revisions() for label in (rev.branch_labels or ())}
        src = Path(__file__).resolve().parent.parent / "src" / "popcorn"
        path = (
            src / "migrations" / "versions"
            if branch == "core"
            else (src / branch / "migrations" / "versions")
        )
        kwargs: dict[str, Any] = {"head": f"{branch}@head"}
        if branch not in labels:
            path.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").touch()
            kwargs = {"head": "base", "branch_label": branch}
            if branch != "core":
                kwargs["depends_on"] = "core@head"
        if branch != "core":
            cfg.attributes["only_prefix"] = f"{branch}_"
        count = len(list(path.glob("*.py")))
        rev = command.revision(
            cfg,
            message=message,
            autogenerate=True,
            rev_id=f"{branch}_{count + 1:04d}",
            version_path=str(path),
            **kwargs,
        )
    assert rev is not None and not isinstance(rev, list)
    file = Path(rev.path)
    text = JSON_RENDERED.sub("popcorn.db.JSONType", file.read_text())
    text = text.replace("from sqlalchemy.dialects import postgresql\n", "")
    file.write_text(text)
    print(file)


if __name__ == "__main__":
    main()
