"""JUnit XML in (results from any runner) and out (a run's report for any CI).

Input is parsed with defusedxml when it is importable; otherwise with the standard
library after refusing any DTD or entity declaration, under a size and case limit, so
a report cannot expand entities or exhaust memory. The output follows the Ant/Surefire
shape Jenkins, GitLab and Spinnaker read, with `flakyFailure` for a test that passed
on retry.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from popcorn.errors import InvalidInput

MAX_BYTES = 20 * 1024 * 1024
MAX_CASES = 200_000
MAX_TEXT = 4000


@dataclass
class Case:
    name: str
    classname: str
    time_s: float
    status: str  # passed, failed, error, skipped
    message: str = ""
    kind: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    flaky: bool = False  # passed after failing (Surefire's flakyFailure / flakyError)


def _fromstring(data: bytes) -> ET.Element:
    try:
        from defusedxml import ElementTree as SafeET  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - defusedxml is a dependency here
        head = data[:4096].lower()
        if b"<!doctype" in head or b"<!entity" in data.lower():
            raise InvalidInput("junit: DTDs and entities are not accepted") from None
        return ET.fromstring(data)
    try:
        return SafeET.fromstring(data, forbid_dtd=True)
    except Exception as exc:  # defusedxml raises its own DTDForbidden etc.
        if isinstance(exc, ET.ParseError):
            raise
        raise InvalidInput(f"junit: refused ({type(exc).__name__})") from None


def parse(data: bytes | str) -> list[Case]:
    """Every test case of a JUnit report (a `testsuites` or a single `testsuite` root)."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        raise InvalidInput(f"junit: larger than {MAX_BYTES // (1024 * 1024)} MB")
    if not raw.strip():
        raise InvalidInput("junit: the report is empty")
    try:
        root = _fromstring(raw)
    except ET.ParseError as exc:
        line, column = exc.position
        raise InvalidInput(
            f"junit: not well-formed XML at line {line}, column {column}",
            details={"line": line, "column": column},
        ) from None
    if root.tag not in ("testsuites", "testsuite"):
        raise InvalidInput(
            f"junit: the root element is <{root.tag[:50]}>, not <testsuites> or <testsuite>"
        )
    cases: list[Case] = []
    for case in root.iter("testcase"):
        if len(cases) >= MAX_CASES:
            raise InvalidInput(f"junit: more than {MAX_CASES} test cases")
        name = (case.get("name") or "").strip()
        if not name:
            raise InvalidInput("junit: a <testcase> has no name", details={"index": len(cases)})
        try:
            time_s = float(case.get("time") or 0.0)
        except ValueError:
            raise InvalidInput(
                f"junit: test case {name[:100]!r} has a time that is not a number"
            ) from None
        status, message, kind = "passed", "", ""
        for child, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            found = case.find(child)
            if found is not None:
                status = label
                message = (found.get("message") or found.text or "").strip()[:MAX_TEXT]
                kind = (found.get("type") or "")[:40]
                break
        flaky = status == "passed" and any(
            case.find(tag) is not None for tag in ("flakyFailure", "flakyError")
        )
        properties = {
            (p.get("name") or "")[:100]: (p.get("value") or "")[:500]
            for p in case.iter("property")
            if p.get("name")
        }
        cases.append(
            Case(
                name=name[:300],
                classname=(case.get("classname") or "")[:300],
                time_s=max(0.0, time_s),
                status=status,
                message=message,
                kind=kind,
                properties=properties,
                flaky=flaky,
            )
        )
    return cases


def render(suite_name: str, cases: list[dict[str, Any]], *, properties: dict[str, str]) -> str:
    """A JUnit report: one testsuite, a testcase per (test, device) with its final outcome.

    Each case dict has name, classname, time_s, status (passed, failed, error, timeout,
    lost, cancelled, skipped), message, flaky, attempts and an optional link.
    """
    counts = {"tests": len(cases), "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    root = ET.Element("testsuites", name=suite_name)
    suite = ET.SubElement(root, "testsuite", name=suite_name)
    props = ET.SubElement(suite, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", name=key, value=str(value))
    for case in cases:
        total += float(case.get("time_s") or 0.0)
        element = ET.SubElement(
            suite,
            "testcase",
            name=str(case["name"]),
            classname=str(case.get("classname") or ""),
            time=f"{float(case.get('time_s') or 0.0):.3f}",
        )
        status = case["status"]
        message = str(case.get("message") or "")
        if status == "failed":
            counts["failures"] += 1
            ET.SubElement(element, "failure", message=message, type="failure").text = message
        elif status in ("error", "timeout", "lost"):
            counts["errors"] += 1
            ET.SubElement(element, "error", message=message, type=status).text = message
        elif status in ("skipped", "cancelled"):
            counts["skipped"] += 1
            ET.SubElement(element, "skipped", message=message or status)
        elif case.get("flaky"):
            ET.SubElement(element, "flakyFailure", message=message or "failed, then passed")
    for key, count in counts.items():
        suite.set(key, str(count))
        root.set(key, str(count))
    suite.set("time", f"{total:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
