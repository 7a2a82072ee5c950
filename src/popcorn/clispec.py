"""The `popcorn` root group that imports a domain's CLI only when one of its commands runs.

A domain's `cli.py` imports its services, SQLAlchemy and sometimes numpy: importing
all of them made every call, `--help` included, cost seconds. The names and help texts
of the commands are read instead from the CLI modules' source with `ast` (no import,
a few milliseconds), so `popcorn --help` and `popcorn <group> --help` print at once and
`popcorn <group> <command>` imports that one module. The modules are the core's
`popcorn.commands` and `popcorn.<name>.cli` for every name in `popcorn.domains.DOMAINS`
and `EXTRAS`; each exports `group` and the top-level commands listed in `extra_groups`
(`COMMANDS` in the core's module), as `popcorn.domains.cli_groups` describes.
When the source does not say plainly what the help would show (a group with options of
its own, commands added in a loop), the module is imported and click prints it as ever.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

EXPORT_LISTS = ("extra_groups", "COMMANDS")
_HARMLESS_DECORATORS = {"pass_context", "pass_obj"}
# Keywords of `@click.group(...)` that do not change what `--help` prints.
_HELP_NEUTRAL_KEYWORDS = {"name", "cls", "help", "short_help", "invoke_without_command"}


@dataclass
class Spec:
    """One command as its source declares it."""

    name: str
    module: str
    help: str | None = None
    short_help: str | None = None
    hidden: bool = False
    is_group: bool = False
    own_params: bool = False
    optional_command: bool = False  # `invoke_without_command=True`: usage says `[COMMAND]`
    children: dict[str, Spec] = field(default_factory=dict)
    exact: bool = True  # False when the source may hold commands the parser cannot see

    def short(self, limit: int = 45) -> str:
        return click.Command(
            self.name, help=self.help, short_help=self.short_help
        ).get_short_help_str(limit)

    def help_group(self) -> click.Group:
        """A stand-in group that prints the same `--help` as the real one."""
        group = click.Group(
            self.name,
            help=self.help,
            short_help=self.short_help,
            invoke_without_command=self.optional_command,
        )
        for child in self.children.values():
            group.add_command(
                click.Command(
                    child.name, help=child.help, short_help=child.short_help, hidden=child.hidden
                )
            )
        return group


def _const_str(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _default_name(function: str) -> str:
    name = function.lower().replace("_", "-")
    left, sep, suffix = name.rpartition("-")
    return left if sep and suffix in {"command", "cmd", "group", "grp"} else name


def _click_call(decorator: ast.expr) -> tuple[str, str] | None:
    """(`owner`, `group`|`command`) for `@owner.group(...)` / `@owner.command(...)`."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if (
        isinstance(target, ast.Attribute)
        and target.attr in ("group", "command")
        and isinstance(target.value, ast.Name)
    ):
        return target.value.id, target.attr
    return None


def _spec_of(function: ast.FunctionDef, decorator: ast.expr, kind: str, module: str) -> Spec:
    args: list[ast.expr] = decorator.args if isinstance(decorator, ast.Call) else []
    keywords = (
        {k.arg: k.value for k in decorator.keywords} if isinstance(decorator, ast.Call) else {}
    )
    name = _const_str(args[0]) if args else _const_str(keywords.get("name"))
    hidden = keywords.get("hidden")
    others = [d for d in function.decorator_list if d is not decorator]
    own_params = any(
        not (isinstance(d, ast.Attribute) and d.attr in _HARMLESS_DECORATORS) for d in others
    )
    return Spec(
        name=name or _default_name(function.name),
        module=module,
        help=_const_str(keywords.get("help")) or ast.get_docstring(function, clean=False),
        short_help=_const_str(keywords.get("short_help")),
        hidden=_is_true(hidden),
        is_group=kind == "group",
        own_params=own_params or bool(set(keywords) - _HELP_NEUTRAL_KEYWORDS),
        optional_command=_is_true(keywords.get("invoke_without_command")),
    )


def _imported_commands(module: str, names: set[str]) -> dict[str, Spec]:
    """Commands defined at the top of another popcorn module, by variable name (those a CLI
    module imports to `add_command` them); empty when that file cannot be read."""
    tree = _tree(module)
    if tree is None:
        return {}
    found: dict[str, Spec] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            for decorator in node.decorator_list:
                call = _click_call(decorator)
                if call is not None and call[0] == "click":
                    found[node.name] = _spec_of(node, decorator, call[1], module)
                    break
    return found


def parse_module(source: str, module: str) -> list[Spec]:
    """The top-level commands a CLI module exports, with their subcommands."""
    tree = ast.parse(source)
    specs: dict[str, Spec] = {}  # by Python variable name
    exports: list[str] = []
    imported: dict[str, str] = {}  # `from popcorn.x import name`: name -> popcorn.x
    loose_additions = False
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("popcorn."):
            imported.update({a.name: str(node.module) for a in node.names if a.asname is None})
            continue
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                found = _click_call(decorator)
                if found is None:
                    continue
                owner, kind = found
                spec = _spec_of(node, decorator, kind, module)
                if owner == "click":
                    specs[node.name] = spec
                elif owner in specs:
                    specs[owner].children[spec.name] = spec
                    specs[node.name] = spec
                else:
                    loose_additions = True
                break
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in EXPORT_LISTS for t in node.targets
        ):
            if isinstance(node.value, ast.List | ast.Tuple):
                exports.extend(e.id for e in node.value.elts if isinstance(e, ast.Name))
            else:
                loose_additions = True
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Attribute) and call.func.attr == "add_command":
                owner_node = call.func.value
                child = call.args[0] if call.args else None
                if isinstance(child, ast.Name) and child.id not in specs and child.id in imported:
                    specs.update(_imported_commands(imported[child.id], {child.id}))
                if (
                    isinstance(owner_node, ast.Name)
                    and owner_node.id in specs
                    and isinstance(child, ast.Name)
                    and child.id in specs
                ):
                    added = specs[child.id]
                    name = _const_str(call.args[1]) if len(call.args) > 1 else None
                    if name:
                        added = Spec(**{**added.__dict__, "name": name})
                    specs[owner_node.id].children[added.name] = added
                else:
                    loose_additions = True
            elif any(isinstance(a, ast.Name) and a.id in specs for a in call.args):
                loose_additions = True  # a helper given the group may add commands to it
        elif isinstance(node, ast.For | ast.While | ast.If | ast.With):
            loose_additions = loose_additions or "add_command" in ast.unparse(node)
    names = (["group"] if "group" in specs else []) + exports
    exported = [specs[n] for n in names if n in specs]
    if loose_additions or len(exported) != len(names):
        for spec in exported:
            spec.exact = False
    return exported


def cli_modules() -> list[str]:
    from popcorn.domains import DOMAINS, EXTRAS

    return ["popcorn.commands"] + [f"popcorn.{name}.cli" for name in DOMAINS + EXTRAS]


def _source(module: str) -> str | None:
    """The file's text, found without importing its package (`popcorn.web` imports Flask)."""
    path = Path(__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


@functools.cache
def _tree(module: str) -> ast.Module | None:
    """A module's syntax tree, parsed once however many of its commands a CLI module adds."""
    source = _source(module)
    return None if source is None else ast.parse(source)


def _may_define(source: str, name: str) -> bool:
    """Whether a module's text can declare the command `name`: as a quoted name, or as a
    function whose default name it is (`def certs_group(`). Most modules cannot, and so are
    not parsed when a command runs."""
    if f'"{name}"' in source or f"'{name}'" in source:
        return True
    function = re.escape(name.replace("-", "_"))
    return re.search(rf"def {function}(_command|_cmd|_group|_grp)?\(", source, re.I) is not None


def discover(modules: Sequence[str]) -> tuple[dict[str, Spec], list[str]]:
    """Specs by command name, and the modules that must be imported to be known."""
    specs: dict[str, Spec] = {}
    unreadable: list[str] = []
    for module in modules:
        source = _source(module)
        if source is None:
            continue  # a domain without a CLI, or not installed
        try:
            found = parse_module(source, module)
        except SyntaxError:
            unreadable.append(module)
            continue
        if not found:
            unreadable.append(module)
        for spec in found:
            specs.setdefault(spec.name, spec)
    return specs, unreadable


def exported_commands(module: Any) -> list[click.Command]:
    """What a CLI module adds to the root: `group` and `extra_groups` (or `COMMANDS`)."""
    commands: list[click.Command] = []
    if hasattr(module, "group"):
        commands.append(module.group)
    for attr in EXPORT_LISTS:
        commands.extend(getattr(module, attr, []))
    return commands


DEFAULT_SUBCOMMANDS = ("list", "status")


def list_by_default(group: click.Group) -> None:
    """A group named for a noun lists (or shows its status) when given no subcommand, like
    `kubectl get` or `gh pr list`, instead of exiting 2 with a usage message: `popcorn
    traffic regions` lists the regions. Applied to every group under the root, so a new
    domain gets it by having a `list` command."""
    for sub in list(group.commands.values()):
        if isinstance(sub, click.Group):
            list_by_default(sub)
    if group.invoke_without_command:
        return
    default = next(
        (
            group.commands[name]
            for name in DEFAULT_SUBCOMMANDS
            if name in group.commands and not any(p.required for p in group.commands[name].params)
        ),
        None,
    )
    if default is None:
        return
    callback = group.callback

    def run(*args: Any, **kwargs: Any) -> Any:
        result = callback(*args, **kwargs) if callback is not None else None
        ctx = click.get_current_context()
        if ctx.invoked_subcommand is None:
            return ctx.invoke(default)
        return result

    group.callback = functools.update_wrapper(run, callback) if callback else run
    group.invoke_without_command = True
    group.no_args_is_help = False


class LazyGroup(click.Group):
    """A group whose commands come from `cli_modules()`, each imported on first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._specs: dict[str, Spec] | None = None
        self._loaded: set[str] = set()

    def specs(self) -> dict[str, Spec]:
        if self._specs is None:
            self._specs, unreadable = discover(cli_modules())
            for module in unreadable:
                self._load(module)
        return self._specs

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if isinstance(cmd, click.Group):
            list_by_default(cmd)
        super().add_command(cmd, name)

    def _load(self, module: str) -> None:
        if module in self._loaded:
            return
        self._loaded.add(module)
        for command in exported_commands(importlib.import_module(module)):
            if command.name is not None and command.name not in self.commands:
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.specs()))

    def _spec(self, name: str) -> Spec | None:
        """The named command's spec, parsing only the modules whose text may declare it
        (in `cli_modules()` order, the first wins as in `specs()`); every module is read
        when none of those does, so an unknown name still gets click's suggestions."""
        if self._specs is None:
            for module in cli_modules():
                source = _source(module)
                if source is None or not _may_define(source, name):
                    continue
                try:
                    found = parse_module(source, module)
                except SyntaxError:
                    break
                if not found:  # known only once imported: `specs()` does that
                    break
                spec = next((spec for spec in found if spec.name == name), None)
                if spec is not None:
                    return spec
        return self.specs().get(name)

    def _declared_group(self, name: str) -> str | None:
        """The module to run `name` from without parsing any: the first CLI module whose
        text may declare it, when a line there starts `@click.group("name"`. Parsing the
        largest CLI modules costs a command several milliseconds of start-up."""
        if self._specs is not None:
            return None
        for module in cli_modules():
            source = _source(module)
            if source is None or not _may_define(source, name):
                continue
            declared = re.search(rf"^@click\.group\(\s*[\"']{re.escape(name)}[\"']", source, re.M)
            return module if declared else None
        return None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            module = self._declared_group(cmd_name)
            if module is not None:
                self._load(module)
        if cmd_name not in self.commands:  # not a plainly declared group: parse as help does
            spec = self._spec(cmd_name)
            if spec is not None:
                self._load(spec.module)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        asks_help = len(args) == 2 and args[1] in ctx.help_option_names
        spec = self._spec(name) if asks_help and name not in self.commands else None
        if spec is not None and spec.is_group and spec.exact and not spec.own_params:
            return name, spec.help_group(), args[1:]
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        shown: list[tuple[str, click.Command | Spec]] = []
        for name in self.list_commands(ctx):
            item: click.Command | Spec = self.commands.get(name) or self.specs()[name]
            if not item.hidden:
                shown.append((name, item))
        if shown:
            limit = formatter.width - 6 - max(len(name) for name, _ in shown)
            rows = [
                (
                    name,
                    item.short(limit) if isinstance(item, Spec) else item.get_short_help_str(limit),
                )
                for name, item in shown
            ]
            with formatter.section("Commands"):
                formatter.write_dl(rows)
