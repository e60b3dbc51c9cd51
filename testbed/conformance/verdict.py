"""The checker's result: rule outcomes with evidence, capture statistics and handover timelines.

Serialised as ``verdict.json`` (schema 4; README.md, "Checker contract", has every field)::

    {"schema": 3, "passed": bool,
     "rules": [{"id", "status": "pass|fail|skip", "message",
                "evidence": [{"pcap", "frame", "time", "what"}],
                "expected": "pass|fail", "met": bool}],      # the last two with expectations
     "expectations": {rule id: "pass|fail"},                 # only when a scenario declared any
     "stats": {...}, "budgets": {phase: seconds},
     "handovers": [{..., "t0", "phases", "offsets", "durations", "floors", "missing", "notes"}],
     "lab": {...},                                   # only when the caller described the lab
     "mobiles": {mn: {"passed", "rules", "handovers", "dns_updates"}}}  # several MNs only
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testbed.conformance.facts import Facts
from testbed.conformance.where import Where

SCHEMA = 4  # verdict.json format; 1 is the unversioned format before "schema" existed
Expected = Literal["pass", "fail"]
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
    expected: Expected | None = None  # what the scenario says the lab should show

    @property
    def met(self) -> bool:
        """The expectation holds (a rule skipped for want of input meets none); without an
        expectation, a rule is met unless it failed."""
        if self.expected is None:
            return self.status != "fail"
        return self.status == self.expected

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "message": self.message,
            "evidence": [e.to_dict() for e in self.evidence[:MAX_EVIDENCE]],
        }
        if self.expected is not None:
            out.update(expected=self.expected, met=self.met)
        return out


def evidence(w: Where, what: str) -> Evidence:
    """Evidence at a kept packet's location."""
    return Evidence(w.pcap, w.frame, w.time, what)


def outcome(rid: str, ok: str, bad: list[Evidence], bad_msg: str) -> RuleResult:
    """A rule's result: ``fail`` with the evidence (counted in the message) when there is any,
    else ``pass`` with ``ok``."""
    if bad:
        return RuleResult(rid, "fail", f"{bad_msg} ({len(bad)} found)", tuple(bad))
    return RuleResult(rid, "pass", ok)


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

    expectations: dict[str, Expected] = field(default_factory=dict)
    # several mobile nodes: each one's own verdict (``rules`` is then their summary)
    mobiles: dict[str, Verdict] = field(default_factory=dict)
    # a run with a metric policy: its decisions and ping-pongs (conformance.policy.block)
    policy: dict[str, Any] | None = None
    # a run that replayed link traces: what was applied, and how late (lab.replay.lateness)
    traces: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """True when every rule is as expected: by default no selected rule failed (skipped rules
        do not fail a run); a rule with an expectation must show exactly that. With several
        mobile nodes, each one's verdict must pass too."""
        return all(r.met for r in self.rules) and all(v.passed for v in self.mobiles.values())

    def expecting(self, expectations: dict[str, Expected], source: str = "expect") -> Verdict:
        """This verdict judged against a scenario's expectations (rule id → pass or fail). A
        rule that was not judged at all (not selected) is added as a skip that fails its
        expectation, so a typo or a missing input cannot pass silently."""
        from dataclasses import replace

        known = {r.id: r for r in self.rules}
        rules = [replace(r, expected=expectations.get(r.id)) for r in self.rules]
        for rid, want in expectations.items():
            if rid not in known:
                rules.append(RuleResult(rid, "skip", f"not judged (no such rule selected in {source})",
                                        expected=want))
        return replace(self, rules=tuple(rules), expectations=dict(expectations))

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
        if self.expectations:
            out["expectations"] = dict(self.expectations)
        if self.policy is not None:
            out["policy"] = self.policy
        if self.traces is not None:
            out["traces"] = self.traces
        if self.mobiles:
            out["mobiles"] = {mn: {"passed": v.passed, "rules": [r.to_dict() for r in v.rules],
                                   "handovers": list(v.handovers), "dns_updates": v.stats.get("dns_updates")}
                              for mn, v in self.mobiles.items()}
        return out

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
