"""`popcorn demo`: how long the world, the platform, the story and the stop take; with `--before`,
beside another checkout's demo (the same demo before a change) in the same run.

Run: .venv/bin/python benchmarks/bench_demo.py [--fast] [--before /path/to/other/src]
(figures go to results/demo.md). Each run gets its own POPCORN_HOME and port; the runs are
one after the other, so they share the machine's load the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import git_revision, machine, write_result

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# Steps before "platform" build the world; those after it (up to the summary) are the story.
PLATFORM = "platform"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(src: Path, fast: bool) -> dict[str, Any]:
    """One demo run: its summary timings, the wall clock and the time it took to stop."""
    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPCORN_")}
    env.update(POPCORN_HOME=str(home / "home"), PYTHONPATH=str(src))
    argv = [PY, "-m", "popcorn", "demo", "--json", "--port", str(free_port())]
    if fast:
        argv.append("--fast")
    loads = [os.getloadavg()[0]]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=home, check=False)
    wall = time.perf_counter() - started
    loads.append(os.getloadavg()[0])
    shutil.rmtree(home, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"the demo from {src} failed: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    timings = summary["timings"]
    stop = next(
        (float(line.rsplit("(", 1)[1].split(" s)")[0]) for line in proc.stderr.splitlines()
         if "Stop everything the demo started" in line),
        float("nan"),
    )  # fmt: skip
    steps = [k for k in timings if k != "total"]
    split = steps.index(PLATFORM)
    return {
        "world": sum(timings[k] for k in steps[:split]),
        "platform": timings[PLATFORM],
        "story": sum(timings[k] for k in steps[split + 1 :]),
        "summary": timings.get("total", 0.0),
        "stop": stop,
        "wall": wall,
        "load": max(loads),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true", help="the small world (as the test runs)")
    parser.add_argument("--before", help="src directory of the checkout to compare with")
    args = parser.parse_args()
    runs = {"Popcorn": run(ROOT / "src", args.fast)}
    if args.before:
        runs["before"] = run(Path(args.before), args.fast)
    rows = [
        f"| {name} | {r['world']:.1f} s | {r['platform']:.1f} s | {r['story']:.1f} s | "
        f"{r['summary']:.1f} s | {r['stop']:.1f} s | {r['wall']:.1f} s | {r['load']:.1f} |"
        for name, r in runs.items()
    ]
    size = "`--fast` (4 sites, 60 devices)" if args.fast else "full (30 sites, 2,000 devices)"
    if args.before:
        compared = (
            'One run each, one after the other, in the same session; "before" is the checkout'
            f" given with `--before` ({args.before}, revision {git_revision(Path(args.before))}:"
            " the demo before the changes measured here)."
        )
    else:
        compared = (
            "No baseline: nothing else plays this walkthrough, and this run compared no other"
            " checkout (`--before /path/to/other/src` adds one, run in the same session)."
        )
    md = f"""## Demo

Machine: {machine()}; revision {git_revision()}. World: {size}, embedded defaults (SQLite,
embedded Redis). {compared} Load is the highest load average seen during the run (above the
core count, other work competed and slowed every figure).

| demo | world built | platform up | story | to the summary | stop | wall clock | load |
|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

"World built" is every step before the platform is up (the local AWS endpoint, a moto
server started in its own process while the world is built, with its Auto Scaling groups and
Route 53 records; the studio show; the security account; the triage hosts; and, in the demo
measured here, the notebook jobs' definitions and the device lab's catalog and history);
"platform up" is the API (Gunicorn), the rq workers and the scheduler: in the demo measured
here their processes start during the world's last steps and this is only what is left to
wait for them; the story is every step after it, to the summary: the incident, the drill's
two executions with their configured dwell, triage, the ML training run, the notebook jobs
and the device lab's two pipeline runs (in the demo measured here, the last three play beside
the incident and count only the time the narrative waits for them, so the steps still add up
to the wall clock; compare the runs on "to the summary", since steps moved between the
three). Stopping asks every process at once (agents, API, workers, scheduler,
moto) and waits for the slowest; a worker finishes its current job first.
"""
    print(md)
    write_result("demo", md)


if __name__ == "__main__":
    main()
