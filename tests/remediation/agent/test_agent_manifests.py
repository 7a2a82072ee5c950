"""Script manifests: what they may declare, how arguments reach the script, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from popcorn.remediation.agent.config import AgentConfig
from popcorn.remediation.agent.errors import InvalidArguments, ManifestError
from popcorn.remediation.agent.registry import ActionRegistry
from popcorn.remediation.agent.scripts import ScriptAction, load_manifest, load_scripts


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    directory = tmp_path / "scripts"
    directory.mkdir()
    script = directory / "purge.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (directory / "plain.py").write_text("print('not executable')\n")
    return directory


def _manifest(directory: Path, name: str, body: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _command(directory: Path, body: dict[str, Any], args: dict[str, Any]) -> list[str]:
    action = load_manifest(_manifest(directory, "purge", body), directory)
    assert isinstance(action.func, ScriptAction)
    argv, env = action.func.command(action.args_model.model_validate(args))
    return argv[1:] + [f"{k}={v}" for k, v in sorted(env.items())]


ARGS = {
    "path": {"type": "string", "required": True, "pattern": "/[a-z/]+"},
    "depth": {"type": "integer", "default": 2, "minimum": 1, "maximum": 9},
    "dry_run": {"type": "boolean", "default": False},
    "tier": {"type": "string", "enum": ["edge", "origin"]},
}


def test_arguments_become_one_argv_element_each(scripts: Path) -> None:
    body = {"script": "purge.sh", "args": {"note": {"type": "string"}}}
    assert _command(scripts, body, {"note": "a b; rm -rf / $(id)"}) == [
        "--note=a b; rm -rf / $(id)"
    ]


def test_arguments_in_declaration_order(scripts: Path) -> None:
    body = {"script": "purge.sh", "args": ARGS}
    assert _command(scripts, body, {"path": "/var/cache", "tier": "edge"}) == [
        "--path=/var/cache",
        "--depth=2",
        "--dry_run=false",
        "--tier=edge",
    ]


def test_an_argv_template_drops_elements_of_absent_arguments(scripts: Path) -> None:
    body = {"script": "purge.sh", "argv": ["purge", "{path}", "--tier={tier}"], "args": ARGS}
    assert _command(scripts, body, {"path": "/x"}) == ["purge", "/x"]
    assert _command(scripts, body, {"path": "/x", "tier": "origin"}) == [
        "purge",
        "/x",
        "--tier=origin",
    ]


def test_env_mode_passes_arguments_as_variables(scripts: Path) -> None:
    body = {"script": "purge.sh", "args_via": "env", "args": ARGS}
    assert _command(scripts, body, {"path": "/x"}) == [
        "POPCORN_ARG_DEPTH=2",
        "POPCORN_ARG_DRY_RUN=false",
        "POPCORN_ARG_PATH=/x",
    ]


def test_an_interpreter_runs_scripts_without_the_executable_bit(scripts: Path) -> None:
    action = load_manifest(
        _manifest(scripts, "plain", {"script": "plain.py", "interpreter": ["python3", "-I"]}),
        scripts,
    )
    assert isinstance(action.func, ScriptAction)
    argv, _ = action.func.command(action.args_model.model_validate({}))
    assert argv == ["python3", "-I", str(scripts / "plain.py")]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"path": "/a b"}, "path"),  # the pattern must match the whole value
        ({"path": "/x", "depth": "3"}, "depth"),  # strings are not silently numbers
        ({"path": "/x", "depth": 10}, "depth"),
        ({"path": "/x", "tier": "cdn"}, "tier"),
        ({"path": "/x", "force": True}, "force"),
        ({"path": "/x", "dry_run": "yes"}, "dry_run"),
    ],
)
def test_values_are_checked_strictly(scripts: Path, args: dict[str, Any], field: str) -> None:
    action = load_manifest(
        _manifest(scripts, "purge", {"script": "purge.sh", "args": ARGS}), scripts
    )
    config = AgentConfig(cert_file=Path("c"), key_file=Path("k"), ca_file=Path("a"))
    with pytest.raises(InvalidArguments) as caught:
        action.validate_args(args, config=config)
    assert [e["field"] for e in caught.value.details["errors"]] == [field]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"script": "purge.sh", "shell": True}, "shell: Extra inputs"),
        ({"script": "purge.sh", "args": {"n": {"type": "list"}}}, "args.n.type"),
        ({"script": "../outside.sh"}, "lies outside"),
        ({"script": "missing.sh"}, "does not exist"),
        ({"script": "plain.py"}, "not executable"),
        ({"script": "purge.sh", "argv": ["{nope}"]}, "undeclared argument 'nope'"),
        (
            {
                "script": "purge.sh",
                "args": {"t": {"type": "string", "enum": ["a"], "default": "b"}},
            },
            "args.t.default",
        ),
        (
            {
                "script": "purge.sh",
                "args": {"t": {"type": "string", "required": True, "default": "a"}},
            },
            "both required and have a default",
        ),
        (
            {"script": "purge.sh", "args": {"t": {"type": "string", "pattern": "("}}},
            "args.t.pattern",
        ),
        ({"script": "purge.sh", "args": {"Bad-Name": {"type": "string"}}}, "Bad-Name"),
        ({"script": "purge.sh", "timeout": 0}, "timeout: Input should be greater than 0"),
        ({"script": "purge.sh", "name": "Bad Name"}, "name: 'Bad Name' must match"),
    ],
)
def test_bad_manifests_name_the_file_and_field(
    scripts: Path, body: dict[str, Any], message: str
) -> None:
    (scripts.parent / "outside.sh").write_text("#!/bin/sh\n")
    path = _manifest(scripts, "bad", body)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, scripts)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_bad_manifest_is_skipped_and_the_rest_load(scripts: Path) -> None:
    _manifest(scripts, "good", {"script": "purge.sh", "description": "Purge"})
    _manifest(scripts, "bad", {"script": "missing.sh"})
    (scripts / "garbled.yml").write_text("script: [unclosed\n")
    registry = ActionRegistry()
    problems = load_scripts(scripts, registry)
    assert [a.name for a in registry] == ["good"]
    assert len(problems) == 2
    assert any("garbled.yml" in p and "not valid YAML" in p for p in problems)


def test_a_script_version_changes_with_its_content(scripts: Path) -> None:
    path = _manifest(scripts, "purge", {"script": "purge.sh"})
    before = load_manifest(path, scripts).version
    (scripts / "purge.sh").write_text("#!/bin/sh\nexit 1\n")
    assert load_manifest(path, scripts).version != before
