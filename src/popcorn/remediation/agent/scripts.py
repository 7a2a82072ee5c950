"""Version-controlled action scripts: one manifest (`NAME.yaml`) beside each script.

A manifest declares the description, the arguments (type, required, default,
enum, pattern, bounds), the timeout and how arguments reach the script: as argv
elements (`--name=value`, or an explicit `argv` template) or as environment
variables (`POPCORN_ARG_NAME`). Scripts always run without a shell, with a
minimal environment, from their own directory, which must lie inside the
configured scripts directory.

Example manifest::

    description: Purge one path from the local cache
    script: purge_cache.sh
    timeout: 20
    args:
      path: {type: string, required: true, pattern: "/[A-Za-z0-9/._-]+"}
      dry_run: {type: boolean, default: false}
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from popcorn.remediation.agent.errors import ActionFailed, ManifestError
from popcorn.remediation.agent.registry import ACTION_NAME, Action, ActionArgs, ActionRegistry
from popcorn.remediation.agent.runs import ActionContext

log = logging.getLogger(__name__)

ARG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Scalar = str | int | float | bool


class ArgSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean"]
    description: str = ""
    required: bool = False
    default: Scalar | None = None
    enum: list[Scalar] | None = None
    pattern: str | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=0)
    minimum: float | None = None
    maximum: float | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern

    @model_validator(mode="after")
    def _consistent(self) -> ArgSpec:
        if self.required and self.default is not None:
            raise ValueError("an argument cannot be both required and have a default")
        if self.type != "string" and (self.pattern or self.min_length or self.max_length):
            raise ValueError("pattern/min_length/max_length apply to string arguments only")
        if self.type not in ("integer", "number") and (
            self.minimum is not None or self.maximum is not None
        ):
            raise ValueError("minimum/maximum apply to integer and number arguments only")
        if self.enum is not None and not self.enum:
            raise ValueError("enum must list at least one value")
        return self

    def annotation(self) -> Any:
        """The pydantic type of this argument; strict, so '5' is not silently an integer."""
        if self.enum is not None:
            return Literal[tuple(self.enum)]
        if self.type == "boolean":
            return Annotated[bool, Strict()]
        if self.type in ("integer", "number"):
            base = int if self.type == "integer" else float
            return Annotated[base, Strict(), Field(ge=self.minimum, le=self.maximum)]
        constraints: list[Any] = [
            Strict(),
            Field(min_length=self.min_length, max_length=self.max_length),
        ]
        if self.pattern is not None:
            constraints.append(AfterValidator(_fullmatch(self.pattern)))
        return Annotated[str, *constraints]


def _fullmatch(pattern: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must match the pattern {pattern!r}")
        return value

    return check


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    script: str
    interpreter: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, gt=0)
    args_via: Literal["argv", "env"] = "argv"
    argv: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    args: dict[str, ArgSpec] = Field(default_factory=dict)

    @field_validator("args")
    @classmethod
    def _arg_names(cls, args: dict[str, ArgSpec]) -> dict[str, ArgSpec]:
        for name in args:
            if not ARG_NAME.match(name):
                raise ValueError(f"argument name {name!r} must match {ARG_NAME.pattern}")
        return args

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not valid")
        return env

    @model_validator(mode="after")
    def _template(self) -> Manifest:
        if self.argv is not None:
            if self.args_via != "argv":
                raise ValueError("an argv template needs args_via: argv")
            for element in self.argv:
                for ref in PLACEHOLDER.findall(element):
                    if ref not in self.args:
                        raise ValueError(f"argv template refers to undeclared argument {ref!r}")
        return self


def _render(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ScriptAction:
    """The callable behind one script action: builds argv/env from validated arguments."""

    def __init__(self, manifest: Manifest, script: Path, name: str) -> None:
        self.manifest = manifest
        self.script = script
        self.name = name

    def command(self, args: BaseModel) -> tuple[list[str], dict[str, str]]:
        values: dict[str, Scalar | None] = args.model_dump()
        argv = [*self.manifest.interpreter, str(self.script)]
        env: dict[str, str] = {}
        if self.manifest.args_via == "env":
            for name, value in values.items():
                if value is not None:
                    env[f"POPCORN_ARG_{name.upper()}"] = _render(value)
        elif self.manifest.argv is None:
            argv += [f"--{name}={_render(v)}" for name, v in values.items() if v is not None]
        else:
            for element in self.manifest.argv:
                refs = PLACEHOLDER.findall(element)
                if any(values.get(ref) is None for ref in refs):
                    continue
                argv.append(
                    PLACEHOLDER.sub(lambda m: _render(values[m.group(1)]), element)  # type: ignore[arg-type]
                )
        return argv, env

    def __call__(self, ctx: ActionContext, args: BaseModel) -> None:
        argv, arg_env = self.command(args)
        env = {
            "PATH": os.environ.get("PATH", DEFAULT_PATH),
            "LANG": "C.UTF-8",
            **self.manifest.env,
            **arg_env,
            "POPCORN_ACTION": self.name,
            "POPCORN_RUN_ID": ctx.run_id,
            "POPCORN_CALLER": ctx.caller,
        }
        done = ctx.run_process(argv, env=env, cwd=self.script.parent)
        if done.exit_code != 0:
            raise ActionFailed(
                f"{self.script.name} exited with status {done.exit_code}",
                exit_code=done.exit_code,
            )


def load_manifest(path: Path, scripts_dir: Path) -> Action:
    """Read one manifest into an action; `ManifestError` names the file and the field."""
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest must be a mapping")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ManifestError(f"{path}: {problems}") from exc

    name = manifest.name or path.stem
    if not ACTION_NAME.match(name):
        raise ManifestError(f"{path}: name: {name!r} must match {ACTION_NAME.pattern}")
    script = _script_path(path, manifest, scripts_dir)
    model = _args_model(path, name, manifest)
    digest = hashlib.sha256(raw + b"\0" + script.read_bytes()).hexdigest()[:16]
    return Action(
        name=name,
        func=ScriptAction(manifest, script, name),
        args_model=model,
        description=manifest.description,
        timeout=manifest.timeout,
        kind="script",
        version=digest,
        extra={"script": script.name},
    )


def _script_path(path: Path, manifest: Manifest, scripts_dir: Path) -> Path:
    root = scripts_dir.resolve()
    script = (path.parent / manifest.script).resolve()
    if not script.is_relative_to(root):
        raise ManifestError(f"{path}: script: {manifest.script!r} lies outside {scripts_dir}")
    if not script.is_file():
        raise ManifestError(f"{path}: script: {manifest.script!r} does not exist")
    if not manifest.interpreter and not os.access(script, os.X_OK):
        raise ManifestError(
            f"{path}: script: {manifest.script!r} is not executable (chmod +x, or set interpreter)"
        )
    return script


def _args_model(path: Path, name: str, manifest: Manifest) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for arg, spec in manifest.args.items():
        annotation = spec.annotation()
        if spec.default is not None:
            try:
                TypeAdapter(annotation).validate_python(spec.default)
            except ValidationError as exc:
                message = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise ManifestError(f"{path}: args.{arg}.default: {message}") from exc
        if spec.required:
            fields[arg] = (annotation, Field(..., description=spec.description))
        else:
            fields[arg] = (
                annotation | None,
                Field(default=spec.default, description=spec.description),
            )
    model_name = "".join(part.capitalize() for part in re.split(r"[^a-z0-9]+", name)) + "Args"
    return create_model(model_name, __base__=ActionArgs, **fields)


def load_scripts(scripts_dir: Path, registry: ActionRegistry) -> list[str]:
    """Add every manifest in `scripts_dir` to `registry`; return the problems of those skipped.

    A bad manifest is skipped (and reported in /v1/health) rather than stopping the
    agent, so one broken script does not take the other actions off a host.
    """
    problems: list[str] = []
    manifests = sorted([*scripts_dir.glob("*.yaml"), *scripts_dir.glob("*.yml")])
    for path in manifests:
        try:
            action = load_manifest(path, scripts_dir)
            if action.name in registry:
                raise ManifestError(f"{path}: name: action {action.name!r} already exists")
            registry.add(action)
        except ManifestError as exc:
            log.error("skipping action script: %s", exc)
            problems.append(str(exc))
    return problems


def scripts_revision(scripts_dir: Path) -> str | None:
    """The git commit the scripts directory is checked out at, when it is a git work tree."""
    try:
        done = subprocess.run(
            ["git", "-C", str(scripts_dir), "rev-parse", "HEAD"],
            shell=False,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
