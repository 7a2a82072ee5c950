"""Assemble benchmarks/README.md from the latest figures each benchmark wrote in results/."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = [
    "core",
    "inventory",
    "signals",
    "signals-ingest",
    "rules",
    "runbooks",
    "agent",
    "traffic",
    "certificates",
    "certificates-scan",
    "triage",
    "studio",
    "studio-postgresql",
    "devicelab",
]

INTRO = """# Benchmarks

Each benchmark compares Popcorn against the baseline a user would pick instead, in the same run,
and prints the ratio. Run one with `.venv/bin/python benchmarks/bench_<name>.py` or all with
`make bench`; each writes its figures to `results/<name>.md`, and
`.venv/bin/python benchmarks/collect.py` assembles this page. The machine is a 2-core VM; figures
marked as measured while other work ran on it are rougher than the rest.
"""


def main() -> None:
    results = HERE / "results"
    names = [n for n in ORDER if (results / f"{n}.md").exists()]
    names += sorted(
        p.stem
        for p in results.glob("*.md")
        if p.stem not in ORDER and not p.stem.endswith("-readme")
    )
    parts = [INTRO] + [(results / f"{n}.md").read_text().strip() for n in names]
    (HERE / "README.md").write_text("\n\n".join(parts) + "\n")
    print(f"benchmarks/README.md: {len(names)} sections")


if __name__ == "__main__":
    main()
