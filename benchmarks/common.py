"""Helpers shared by the benchmarks: machine description, timing, result files."""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def write_result(name: str, markdown: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    return path


def git_revision(where: Path | None = None) -> str:
    """The checkout's short revision (this one's, or the one holding `where`)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=where,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> float:
    """The 1-minute load average: how busy the (shared) machine was."""
    return os.getloadavg()[0]


class LoadWatch:
    """The load average before and after a measurement, printed as an observation.

    The machine may be shared with other work while a benchmark runs; rather than a
    fixed label, each result says what the load was.
    """

    def __init__(self) -> None:
        self.before = load_average()
        self.after: float | None = None

    def stop(self) -> LoadWatch:
        self.after = load_average()
        return self

    def note(self) -> str:
        after = load_average() if self.after is None else self.after
        return (
            f"load average {self.before:.1f} before, {after:.1f} after "
            f"({os.cpu_count()} cores; above {os.cpu_count()} means other work was competing)"
        )


def best(runs: int, fn: Callable[[], Any], reset: Callable[[], None]) -> float:
    """The fastest of `runs` timings of `fn`, each after `reset` (the least disturbed one)."""
    times = []
    for _ in range(runs):
        reset()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def fresh_schema(url: str) -> str:
    """A new empty schema in `url`'s database; the returned URL works inside it."""
    from sqlalchemy import create_engine, text

    from popcorn.config import normalize_database_url

    name = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(normalize_database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    engine.dispose()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"


def drop_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    from popcorn.config import normalize_database_url

    name = url.rsplit("%3D", 1)[1]
    engine = create_engine(normalize_database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    engine.dispose()


def scratch_dir(prefix: str, given: Path | None = None) -> Path:
    """`given`, kept; else a new temporary directory, removed when the benchmark exits (a
    show at full size leaves a quarter of a gigabyte behind)."""
    if given is not None:
        return given
    made = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, made, True)
    return made
