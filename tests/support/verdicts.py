"""Verdicts compared rule for rule, and a scenario played on a lab for the comparison."""

from __future__ import annotations

import json
import time
from pathlib import Path

from testbed.lab import Lab, teardown_leftover
from testbed.scenario import model
from testbed.scenario.runner import Runner


def rules(verdict: dict) -> dict[str, str]:
    """Rule id -> status, of the verdict and of each mobile node's (``mn/rule``)."""
    out = {r["id"]: r["status"] for r in verdict["rules"]}
    for mn, mv in (verdict.get("mobiles") or {}).items():
        out |= {f"{mn}/{r['id']}": r["status"] for r in mv["rules"]}
    return out


def differences(a: dict, b: dict) -> dict[str, tuple[str | None, str | None]]:
    """The rules whose status differs between two verdicts (absent: None)."""
    ra, rb = rules(a), rules(b)
    return {k: (ra.get(k), rb.get(k)) for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)}


def on_lab(topology: str, scenarios: list[str], d: Path, name: str) -> dict[str, dict]:
    """A lab of ``topology`` up, each scenario through the runner, the lab down: the verdicts."""
    teardown_leftover(name)
    lab = Lab.up(topology, name)
    try:
        out = {}
        for sc in scenarios:
            t0 = time.monotonic()
            Runner(model.load(sc), lab, d / sc).run()
            print(f"{sc} on the lab: {time.monotonic() - t0:.1f} s")
            out[sc] = json.loads((d / sc / "verdict.json").read_text())
        return out
    finally:
        lab.close()
        lab.down()
