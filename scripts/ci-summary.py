#!/usr/bin/env python3
"""The end of a CI log a person reads: the slowest tests and pytest's summary line.

    scripts/ci-summary.py JUNIT_XML PYTEST_LOG [N]

Standard library only: it runs whether or not set-up got as far as the venv.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SUMMARY = re.compile(r"\b\d+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b.* in [0-9.]+s")


def slowest(junit: Path, n: int) -> list[tuple[float, str, str]]:
    cases = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        outcome = next((c.tag for c in tc if c.tag in ("failure", "error", "skipped")), "passed")
        cases.append((float(tc.get("time") or 0), f"{tc.get('classname')}::{tc.get('name')}", outcome))
    return sorted(cases, reverse=True)[:n]


def summary_line(log: Path) -> str | None:
    lines = [ln.strip(" =") for ln in log.read_text(errors="replace").splitlines() if SUMMARY.search(ln)]
    return lines[-1] if lines else None


def main(argv: list[str]) -> int:
    junit, log = Path(argv[1]), Path(argv[2])
    n = int(argv[3]) if len(argv) > 3 else 20
    print(f"\n==== the {n} slowest tests ====")
    try:
        for seconds, name, outcome in slowest(junit, n):
            print(f"{seconds:8.1f} s  {name}" + ("" if outcome == "passed" else f"  [{outcome}]"))
    except (OSError, ET.ParseError) as e:
        print(f"(no test report: {e})")
    line = summary_line(log) if log.exists() else None
    print(f"==== pytest: {line or 'no summary line (set-up or lint failed before the tests?)'} ====")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
