"""The checker's result: rule outcomes with evidence, capture statistics and handover timelines.

Serialised as ``verdict.json`` (schema 2; README.md, "Checker contract", has every field)::

    {"schema": 2, "passed": bool,
     "rules": [{"id", "status": "pass|fail|skip", "message",
                "evidence": [{"pcap", "frame", "time", "what"}]}],
     "stats": {...}, "budgets": {phase: seconds},
     "handovers": [{..., "t0", "phases", "offsets", "durations", "floors", "missing", "notes"}],
     "lab": {...}}                                   # only when the caller described the lab
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testbed.conformance.facts import Facts

SCHEMA = 2  # verdict.json format; 1 is the unversioned format before "schema" existed
Status = Literal["pass", "fail", "skip"]
MAX_EVIDENCE = 50  # per rule; the message gives the full count


@dataclass(frozen=True, slots=True)
class Evidence:
    pcap: str
    frame: int
    time: float
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"pcap": self.pcap, "frame": self.frame, "time": self.time, "what": self.what}


@dataclass(frozen=True, slots=True)
class RuleResult:
    id: str
    status: Status
    message: str
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "message": self.message,
            "evidence": [e.to_dict() for e in self.evidence[:MAX_EVIDENCE]],
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    rules: tuple[RuleResult, ...]
    stats: dict[str, Any] = field(default_factory=dict)
    handovers: tuple[dict[str, Any], ...] = ()
    budgets: dict[str, float] = field(default_factory=dict)
    lab: dict[str, Any] | None = None  # machine, backend, per-node stacks...: as the caller gave it
    # what the captures held, as the checker extracted it (not serialised): the report draws
    # from it instead of reading the captures again
    facts: Facts | None = field(default=None, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        """True when no selected rule failed (skipped rules do not fail a run)."""
        return all(r.status != "fail" for r in self.rules)

    def rule(self, rule_id: str) -> RuleResult:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def statuses(self) -> dict[str, Status]:
        return {r.id: r.status for r in self.rules}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "passed": self.passed,
            "rules": [r.to_dict() for r in self.rules],
            "stats": self.stats,
            "budgets": dict(self.budgets),
            "handovers": list(self.handovers),
        }
        if self.lab is not None:
            out["lab"] = self.lab
        return out

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
