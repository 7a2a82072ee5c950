"""The `popcorn` command: core commands plus one group per domain.

Helpers here (`output`, `json_option`, `progress`) are the one way every
domain's CLI prints tables, JSON and progress, and turns errors into one line.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from popcorn.clispec import LazyGroup
from popcorn.errors import PopcornError
from popcorn.numbers import cell

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    console: Console
    err_console: Console

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def __getattr__(name: str) -> Any:
    """`console` and `err_console` are made on first use: rich costs a list printed as
    `--json`, or a command that prints nothing, tens of milliseconds for nothing."""
    if name in ("console", "err_console"):
        return _console(name == "err_console")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def output(
    data: Any,
    *,
    as_json: bool,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print rows as a table (people: numbers with units, data escaped) or JSON (raw values;
    a list as `{"items": [...]}`)."""
    data = _jsonable(data)
    if as_json:
        # one shape for every list: {"items": [...]} (a page's count and cursor kept beside)
        shown = {"items": data} if isinstance(data, list) else data
        click.echo(json.dumps(shown, indent=2, default=str))
        return
    from rich.table import Table
    from rich.text import Text

    # Data (and a title, which may name an object) goes in as `Text`, never read as markup
    # or emoji codes: a name holding `[bold]` or `:fire:` prints as stored, and no cell is
    # parsed.
    shown_title = None if title is None else Text(title, style="table.title")
    if isinstance(data, dict) and columns is None:
        table = Table(show_header=False, title=shown_title, box=None)
        table.add_column(style="bold cyan")
        table.add_column()
        for key, value in data.items():
            table.add_row(Text(str(key)), Text(cell(value, str(key))))
        _console(False).print(table)
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        _console(False).print("[dim]nothing found[/dim]")
        return
    columns = list(columns or rows[0].keys())
    table = Table(title=shown_title, header_style="bold")
    for column in columns:
        table.add_column(Text(column))
    for row in rows:
        table.add_row(*(Text(cell(row.get(column), column)) for column in columns))
    _console(False).print(table)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        func
    )


def progress(total: int | None, description: str) -> Progress:
    """A progress bar on stderr, hidden when stderr is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(True),
        disable=not _console(True).is_terminal,
        transient=True,
    )
    bar.add_task(description, total=total)
    return bar


def fail(message: str) -> None:
    raise click.ClickException(message)


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, PopcornError):
        extra = ""
        if exc.details:
            extra = " (" + ", ".join(f"{k}: {v}" for k, v in list(exc.details.items())[:4]) + ")"
        return f"{exc.message}{extra}"
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error["loc"]) or "input"
            parts.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
        return "invalid input: " + "; ".join(parts)
    return str(exc) or type(exc).__name__


class PopcornGroup(click.Group):
    """Turns known errors into `error: …` and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PopcornError, ValueError, OSError, TimeoutError) as exc:
            # pydantic's ValidationError is a ValueError
            raise click.ClickException(_one_line(exc)) from exc
        except Exception as exc:
            message = _database_error(exc)
            if message is None:
                raise
            raise click.ClickException(message) from exc


_OLD_SCHEMA = ("no such table", "no such column", "does not exist", "undefinedcolumn")


def _database_error(exc: BaseException) -> str | None:
    """One line for a database that is unreachable or older than this code (a new release
    run before `popcorn db upgrade`); None for anything else. SQLAlchemy is recognised by
    module so that commands which never touch the database do not import it."""
    kind = type(exc).__name__
    if not type(exc).__module__.startswith("sqlalchemy") or kind not in {
        "OperationalError",
        "ProgrammingError",
        "InterfaceError",
    }:
        return None
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
    if any(marker in detail.lower() for marker in _OLD_SCHEMA):
        return (
            f"the database schema is older than this Popcorn ({detail}): run `popcorn db upgrade`"
        )
    return f"database error: {detail}"


def parse_kv(pairs: Iterable[str]) -> dict[str, Any]:
    """`key=value` pairs; values are parsed as JSON when they can be."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def with_actor(func: F) -> F:
    """Commands act as `cli:<user>` with a fresh request id for their audit records."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from popcorn.context import acting_as, current_actor

        with acting_as(current_actor().name):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class RootGroup(LazyGroup, PopcornGroup):
    """The `popcorn` command: every domain's group, each imported when it is used."""


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="popcorn")
def cli() -> None:
    """Popcorn: an open operations platform for streaming infrastructure."""


def main() -> None:
    # Help and --version never open the database: they skip popcorn.db (SQLAlchemy and
    # the settings, about 0.25 s of imports) and so the first-use schema check.
    args = sys.argv[1:]
    if args and not {"-h", "--help", "--version"} & set(args):
        from popcorn.db import check_schema_on_first_use

        check_schema_on_first_use()
    cli(prog_name="popcorn")


if __name__ == "__main__":
    main()
    sys.exit(0)
