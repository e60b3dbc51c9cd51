"""What a run with link traces or a metric policy adds to its verdict: the ``traces`` block
(what each replayer applied, how late), the ``policy`` block (decisions, ping-pongs), and the
rules ``trace.goodput``, ``policy.ping_pong``, ``policy.timely`` and ``agent.queue``.

``trace.goodput`` judges each step of a csv trace's rate while traffic ran, in the direction the
traffic's stream fills: the MN's messages go up (the correspondent's echoes are a few bytes
each), so the uplink's new TCP payload per second on the access router's port toward the MN is
held against the uplink rate, within ``GOODPUT_TOLERANCE``, for each step the stream offers
more than (``rate`` × ``size``). A step is judged from ``SETTLE_S`` after it begins (the queue of
the rate before drains, a transport's window adapts) to ``TAIL_S`` before it ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.conformance import goodput, policy
from testbed.conformance.verdict import Evidence, RuleResult
from testbed.errors import ConfigError, TestbedError
from testbed.lab import Lab
from testbed.lab.replay import TraceReplay, lateness, sources
from testbed.lab.replay import check as replay_check
from testbed.model.addressing import LabPlan, ifname
from testbed.model.topology import PolicySettings, Topology, TraceSource
from testbed.scenario.model import Scenario

GOODPUT_TOLERANCE = 0.15
SETTLE_S = 1.5
TAIL_S = 0.5
MIN_WINDOW_S = 2.0


@dataclass
class Judged:
    rules: list[RuleResult] = field(default_factory=list)
    policy: dict[str, Any] | None = None
    traces: dict[str, Any] | None = None


def specs_of(topo: Topology, sc: Scenario) -> dict[str, TraceSource]:
    """The run's trace per access network: the scenario's over the topology's."""
    return sources({a.router: a.replay for a in topo.access_networks}, sc.networks, f"scenario {sc.name}")


def check(topo: Topology, sc: Scenario, backend: str | None = None) -> None:
    """A bad trace, or one the lab's kernels cannot play, fails here, before any lab is built."""
    specs = specs_of(topo, sc)
    if specs:
        _backend_plays(backend or os.environ.get("TESTBED_BACKEND") or topo.backend or "mininet", sc)
        replay_check(topo, specs)


def _backend_plays(backend: str, sc: Scenario) -> None:
    if backend == "docker":  # the ar and router images hold no Python for a replayer
        raise ConfigError(f"scenario {sc.name}", "networks", "a trace replay needs a replayer on the "
                          "access router, and the docker backend's ar image has no Python",
                          "run it on the mininet backend (--backend mininet)")


def replay_of(lab: Lab, sc: Scenario) -> TraceReplay | None:
    """The run's traces, parsed and checked, or None."""
    specs = specs_of(lab.topo, sc)
    if not specs:
        return None
    _backend_plays(lab.state.backend, sc)
    return TraceReplay.of(lab.nodes, lab.wiring, specs, sc.seed)


def agent_dropped(lab: Lab) -> int | None:
    """Events the mobile nodes' agents dropped from full subscriber queues, in all."""
    total = 0
    for m in lab.mobiles.values():
        if not m.agent_running():
            return None
        try:
            r = m.agent_request({"cmd": "state"})
        except TestbedError:
            return None
        total += int(r.get("state", {}).get("dropped_total", 0))
    return total


def judge(topo: Topology, plan: LabPlan, sc: Scenario, pol: PolicySettings, replay: TraceReplay | None,
          records: list[dict[str, Any]], pcaps: Path, dropped: int | None) -> Judged:
    out = Judged()
    start = replay.start_wall if replay is not None else None
    traces = replay.traces if replay is not None else {}
    if replay is not None:
        end_t = None if replay.stop_wall is None or start is None else round(replay.stop_wall - start, 3)
        out.traces = {"start_wall": start, "end_t": end_t, "networks": sorted(traces),
                      "lateness": lateness(replay.records),
                      "applied": [r for r in replay.records if r.get("op") == "apply"],
                      "metrics": [r for r in replay.records if r.get("op") == "metric"]}
        gp = goodput_rule(topo, sc, replay, records, pcaps)
        if gp is not None:
            rule, windows = gp
            out.rules.append(rule)
            out.traces["goodput"] = windows
    if pol.switch == "metric" or replay is not None:
        mn = topo.mobile.node
        network_of = {plan.access_iface(a.router, mn)[0].ifname: a.router for a in topo.access_networks}
        binding = [r for r in records if r.get("event") == "binding" and r.get("mn", mn) == mn]
        decs = policy.decisions(binding, network_of, start, traces, pol)
        out.policy = policy.block(decs, pol, dropped)
        out.rules += policy.rules(decs, pol)
        out.rules.append(policy.agent_rule(dropped))
    return out


def _traffic_span(records: list[dict[str, Any]]) -> tuple[float, float] | None:
    steps = [r for r in records if r.get("event") == "step" and r.get("step") == "traffic"]
    on = next((r["wall"] for r in steps if r.get("action") == "start"), None)
    off = next((r["wall"] for r in steps if r.get("action") == "stop"), None)
    return (on, off) if on is not None and off is not None else None


def goodput_rule(topo: Topology, sc: Scenario, replay: TraceReplay, records: list[dict[str, Any]],
                 pcaps: Path) -> tuple[RuleResult, list[dict[str, Any]]] | None:
    """``trace.goodput`` for each csv rate step under traffic; None when there is none to judge."""
    span = _traffic_span(records)
    start = replay.start_wall
    if span is None or start is None or sc.traffic is None:
        return None
    offered_kbit = sc.traffic.rate * sc.traffic.size * 8 / 1000
    mn = topo.mobile.node
    results: list[dict[str, Any]] = []
    bad: list[str] = []
    for node_plan in replay.plans().values():
        for f in node_plan.ifaces:
            if f.loop_s is not None or f.direction != "up":
                continue
            acc = next(a for a in topo.access_networks if a.router == f.network)
            windows = []
            for i, c in enumerate(f.changes):
                if not c.quality.rate_kbit or c.quality.rate_kbit >= offered_kbit:
                    continue  # nothing passes, or the stream does not fill the link
                end = f.changes[i + 1].t if i + 1 < len(f.changes) else None
                lo = max(start + c.t + SETTLE_S, span[0] + SETTLE_S)
                hi = min(start + end - TAIL_S if end is not None else span[1], span[1] - TAIL_S)
                if hi - lo >= MIN_WINDOW_S:
                    windows.append(goodput.Window(lo, hi, f.direction, c.quality.rate_kbit, f"t={c.t:g}"))
            if not windows:
                continue
            pcap = pcaps / f"{ifname(f.network, mn)}.pcap"
            prefixes = [n for n in (acc.ipv4, acc.ipv6) if n is not None]
            got = goodput.measure(goodput.new_bytes(pcap, prefixes), windows)
            for w, kbit in zip(windows, got, strict=True):
                ratio = kbit / w.expected_kbit
                results.append({"network": f.network, "direction": w.direction, "step": w.label,
                                "from": round(w.start, 3), "to": round(w.end, 3),
                                "expected_kbit": w.expected_kbit, "goodput_kbit": round(kbit, 1),
                                "ratio": round(ratio, 3)})
                if abs(ratio - 1) > GOODPUT_TOLERANCE:
                    bad.append(f"{f.network} {w.direction} {w.label}: {kbit:.0f} of "
                               f"{w.expected_kbit:.0f} kbit/s")
    if not results:
        return None
    summary = ", ".join(f"{r['network']} {r['direction']} {r['step']} {r['ratio']:.2f}" for r in results)
    if bad:
        ev = tuple(Evidence(f"pcaps/{ifname(r['network'], mn)}.pcap", 0, r["from"],
                            f"{r['direction']} {r['step']}: {r['goodput_kbit']} of "
                            f"{r['expected_kbit']} kbit/s")
                   for r in results if abs(r["ratio"] - 1) > GOODPUT_TOLERANCE)
        rule = RuleResult("trace.goodput", "fail", f"{len(bad)} of {len(results)} steps off the trace's "
                          f"rate by more than {GOODPUT_TOLERANCE:.0%}: " + "; ".join(bad), ev)
    else:
        rule = RuleResult("trace.goodput", "pass", f"every step within {GOODPUT_TOLERANCE:.0%} of the "
                          f"trace's rate (goodput / rate: {summary})")
    return rule, results
