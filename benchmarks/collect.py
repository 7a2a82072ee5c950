"""Assemble benchmarks/README.md from the latest figures each benchmark wrote in results/."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = [
    "core",
    "cli",
    "demo",
    "inventory",
    "inventory-import",
    "ipam",
    "signals",
    "signals-ingest",
    "signals-smallobjects",
    "signals-objstore",
    "signals-sharded",
    "rules",
    "runbooks",
    "agent",
    "traffic",
    "certificates",
    "certificates-scan",
    "triage",
    "studio",
    "studio-postgresql",
    "ml",
    "security",
    "security-cloudtrail",
    "notebooks",
    "devicelab",
]

INTRO = """# Benchmarks

Each benchmark compares Popcorn against the baseline a user would pick instead, in the same run,
and prints the ratio. Run one with `.venv/bin/python benchmarks/bench_<name>.py` or all with
`make bench`; each writes its figures to `results/<name>.md`, and
`.venv/bin/python benchmarks/collect.py` assembles this page. The machine is a 2-core VM that
may be shared with other work; each section gives the load average it was measured at (above 2,
other work was competing and the figures are rougher). Where a baseline cannot
run here and a published figure is quoted instead, the section says so and gives the source,
apart from its measured rows; a weaker baseline, when one is shown, is named as such beside the
real one.
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
