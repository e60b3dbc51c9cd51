"""Judging a run, wherever it was played: the checker on its captures, the rules the run adds
beyond them (attacks, faults, a failed step), the scenario's expectations, ``verdict.json`` and
``report.html``. One function for a lab's runs and deployed hosts' alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from testbed.conformance.verdict import RuleResult
from testbed.model.topology import Topology
from testbed.scenario.model import Scenario

MOVEMENT_EVENTS = ("link_up", "link_down", "detected", "configured", "lost")


@dataclass(frozen=True)
class RunFacts:
    """What a run hands to its judge besides the captures."""

    scenario: Scenario
    topo: Topology
    records: list[dict[str, Any]]  # events.jsonl's
    lab: dict[str, Any]  # verdict.json's ``lab``
    roles: dict[str, list[str]]  # the report's ladder columns
    title: str
    capture_drops: dict[str, int] = field(default_factory=dict)
    budgets: dict[str, float] | None = None  # the scenario's, with what lossy links add


@dataclass(frozen=True)
class Observed:
    """What a run adds to its verdict beyond the captures: rules, and blocks (``policy``,
    ``traces``) set on the verdict."""

    rules: list[RuleResult] = field(default_factory=list)
    blocks: dict[str, Any] = field(default_factory=dict)


def transport_of(sc: Scenario) -> str | None:
    """The transport whose rules judge the run: its traffic's, none without traffic."""
    return sc.transport if sc.uses_traffic else None


def auth_keys(topo: Topology) -> dict[int, bytes]:
    """The endpoint-pair shared key the topology gives the MN, for the HMACs the checker
    verifies (key 0: the one the traffic apps set)."""
    key = topo.nodes[topo.mobile.node].sctp.auth_key
    return {0: bytes.fromhex(key)} if key else {}


def check(pcaps: Path, run: RunFacts) -> Any:
    """The verdict on the captures: of the one MN, or of each MN with their summary (the
    scenario's expectations are applied by ``judge``, to what the run adds too)."""
    from testbed.conformance.checker import check as check_one
    from testbed.conformance.mobiles import MobileScope, check_mobiles

    sc, topo = run.scenario, run.topo
    events = [r for r in run.records if r.get("event") in MOVEMENT_EVENTS]
    if len(topo.mobiles) == 1:
        return check_one(pcaps, rules=sc.rules, events=events, budgets=run.budgets,
                         mn_name=topo.dns_name(topo.mobile.node), lab=run.lab,
                         auth_keys=auth_keys(topo), transport=transport_of(sc))
    scopes = {mn: MobileScope.from_events(topo.dns_name(mn), [e for e in events if e.get("mn") == mn])
              for mn in topo.mobiles}
    return check_mobiles(pcaps, scopes, rules=sc.rules, budgets=run.budgets,
                         expectations=dict(sc.expect), lab=run.lab, source=f"scenario {sc.name}",
                         auth_keys=auth_keys(topo), transport=transport_of(sc))


def judge(out: Path, run: RunFacts, extra: Callable[[Any], Observed] = lambda v: Observed()) -> Any:
    """Check ``out/pcaps``, add what ``extra(verdict)`` observed beyond the captures (rules and
    blocks), apply the expectations, write ``verdict.json``, the signal plot where traces ran,
    and ``report.html``."""
    from testbed.report import signal_plot
    from testbed.report.html import render_report

    sc = run.scenario
    verdict = check(out / "pcaps", run)
    added = extra(verdict)
    verdict = replace(verdict, **added.blocks)
    if added.rules:
        verdict = replace(verdict, rules=(*verdict.rules, *added.rules))
    if sc.expect:
        verdict = verdict.expecting(dict(sc.expect), f"scenario {sc.name}")
    if run.capture_drops:  # the verdict says when the captures, not the network, may have lost packets
        verdict.stats["capture_drops"] = dict(run.capture_drops)
        verdict.stats.setdefault("capture_problems", []).append(
            "tcpdump dropped packets (" + ", ".join(f"{k} {v}" for k, v in run.capture_drops.items()) +
            "): a DATA gap never seen may be the capture's, not the network's")
    verdict.write(out / "verdict.json")
    plot = signal_plot.render(verdict.to_dict())
    if plot is not None:  # each network's signal and rate, the handover phases on them
        (out / signal_plot.FILE).write_text(plot)
    render_report(out, run.roles, run.title, budgets=run.budgets, verdict=verdict)
    return verdict
