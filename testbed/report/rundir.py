"""Reading a run directory for the report, tolerating every missing or broken part.

A run directory holds ``pcaps/*.pcap``, ``events.jsonl`` and ``verdict.json``; any of them may be
absent (capture disabled, the run aborted before the checker ran). Nothing here raises for a
missing or malformed file: the problem is recorded and the report shows "not captured".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.conformance.checker import CAPTURE_SUFFIXES
from testbed.mobility.events import KINDS as AGENT_KINDS

CAT_AGENT, CAT_LOCATION, CAT_STEP, CAT_OTHER = "agent", "location", "step", "other"


@dataclass(slots=True)
class RunData:
    run_dir: Path
    pcaps: list[Path] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable verdict/events, bad lines


def event_kind(e: dict[str, Any]) -> str:
    """Agent events carry ``kind`` (``Event.to_dict``) or ``event`` (checker input)."""
    return str(e.get("kind") or e.get("event") or e.get("type") or "?")


def event_category(e: dict[str, Any]) -> str:
    kind = event_kind(e)
    if kind in AGENT_KINDS:
        return CAT_AGENT
    if kind == "location":
        return CAT_LOCATION
    if kind == "step":
        return CAT_STEP
    return CAT_OTHER


def event_time(e: dict[str, Any]) -> float | None:
    v = e.get("wall", e.get("time"))
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def load_run(run_dir: Path, verdict: dict[str, Any] | None = None) -> RunData:
    """The run's parts; ``verdict`` (the checker's result as a dict) stands in for verdict.json."""
    run = RunData(Path(run_dir), verdict=verdict)
    pdir = run.run_dir / "pcaps"
    if pdir.is_dir():
        run.pcaps = sorted(p for p in pdir.iterdir() if p.suffix in CAPTURE_SUFFIXES and p.is_file())
    vpath = run.run_dir / "verdict.json"
    if verdict is None and vpath.is_file():
        try:
            v = json.loads(vpath.read_text())
            if isinstance(v, dict):
                run.verdict = v
            else:
                run.problems.append("verdict.json: not a JSON object")
        except (OSError, ValueError) as e:
            run.problems.append(f"verdict.json: unreadable ({e})")
    epath = run.run_dir / "events.jsonl"
    if epath.is_file():
        bad = 0
        try:
            lines = epath.read_text(errors="replace").splitlines()
        except OSError as e:
            run.problems.append(f"events.jsonl: unreadable ({e})")
            lines = []
        for line in lines:
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(d, dict):
                run.events.append(d)
            else:
                bad += 1
        if bad:
            run.problems.append(f"events.jsonl: {bad} line(s) not JSON objects, skipped")
    return run
