"""Write the import-linter contracts in pyproject.toml from the list of installed domains.

Run it after adding a domain to `popcorn.domains.DOMAINS` or a top-level core module, so
the boundaries CI checks always cover every domain: `python scripts/importlinter_contracts.py`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "popcorn"
PYPROJECT = ROOT / "pyproject.toml"
MARKER = "[tool.importlinter]"
# Packages every domain may build on besides the facades: the runbook-pack and agent SDKs.
SDKS = ["popcorn.remediation.engine", "popcorn.remediation.agent"]


def _literal_list(module: Path, name: str) -> list[str]:
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id == name and node.value is not None:
                return list(ast.literal_eval(node.value))
    raise SystemExit(f"{module}: no literal list named {name}")


def _names(values: list[str]) -> str:
    return json.dumps(values)


def contracts() -> str:
    domains = _literal_list(PACKAGE / "domains.py", "DOMAINS")
    extras = _literal_list(PACKAGE / "domains.py", "EXTRAS")
    core = sorted(
        f"popcorn.{path.stem if path.is_file() else path.name}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem not in {"__init__", "__main__"})
        or (path.is_dir() and (path / "__init__.py").exists())
        if (path.stem if path.is_file() else path.name) not in {*domains, *extras, "migrations"}
    )
    modules = [f"popcorn.{name}" for name in domains]
    out = [
        MARKER,
        'root_package = "popcorn"',
        "",
        "[[tool.importlinter.contracts]]",
        'name = "The core imports no domain, no console and no demo"',
        'type = "forbidden"',
        f"source_modules = {_names(core)}",
        f"forbidden_modules = {_names([*modules, *(f'popcorn.{x}' for x in extras)])}",
    ]
    for name in domains:
        others = [m for m in modules if m != f"popcorn.{name}"]
        allowed = [f"{m}.api" for m in others] + [
            s for s in SDKS if not s.startswith(f"popcorn.{name}.")
        ]
        out += [
            "",
            "[[tool.importlinter.contracts]]",
            f'name = "{name} uses other domains only through their api facades"',
            'type = "forbidden"',
            f'source_modules = ["popcorn.{name}"]',
            f"forbidden_modules = {_names(others)}",
            "# the facades, and the runbook-pack and agent-action SDKs",
            "ignore_imports = [",
            *(f'  "popcorn.{name}.** -> {target}",' for target in allowed),
            "]",
            'unmatched_ignore_imports_alerting = "none"',
        ]
    thin = [
        f"popcorn.{name}.{part}"
        for name in domains
        for part in ("views", "cli")
        if (PACKAGE / name / f"{part}.py").exists() or (PACKAGE / name / part).is_dir()
    ]
    models = [
        f"popcorn.{name}.models" for name in domains if (PACKAGE / name / "models.py").exists()
    ]
    out += [
        "",
        "[[tool.importlinter.contracts]]",
        'name = "Domains do not import the console or the demo"',
        'type = "forbidden"',
        f"source_modules = {_names(modules)}",
        f"forbidden_modules = {_names([f'popcorn.{x}' for x in extras])}",
        "",
        "[[tool.importlinter.contracts]]",
        'name = "Views and CLIs use their service, never the models"',
        'type = "forbidden"',
        f"source_modules = {_names(thin)}",
        f"forbidden_modules = {_names(models)}",
        'allow_indirect_imports = "true"',
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    text = PYPROJECT.read_text()
    head = text[: text.index(MARKER)] if MARKER in text else text + "\n"
    PYPROJECT.write_text(head + contracts())


if __name__ == "__main__":
    main()
