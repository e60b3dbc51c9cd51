"""Running a scenario: lab up if needed, capture every link, play the steps, judge, report.

Output directory: ``pcaps/`` (one pcap per link), ``events.jsonl`` (agent events, location
outcomes, binding actions, traffic records and scenario steps on one clock: wall time, plus
monotonic where known), ``traffic.json``, ``verdict.json`` and ``report.html``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.capture.tcpdump import Capture
from testbed.errors import TestbedError
from testbed.host import jsonlines
from testbed.lab import Lab
from testbed.model import loader
from testbed.model.topology import Role
from testbed.progress import Progress, quiet
from testbed.runtimes import kernel_nodes
from testbed.scenario.model import Depart, Metric, Move, PingPong, Scenario, Traffic, TrafficStep, Wait
from testbed.scenario.traffic import AssociationRefused, SctpTraffic
from testbed.state import LabState

MOVEMENT_EVENTS = ("link_up", "link_down", "detected", "configured", "lost")


class EventLog:
    """events.jsonl: every record carries ``event`` and ``wall`` (and ``mono`` when known)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> None:
        record.setdefault("wall", time.time())
        with self._lock:
            self.records.append(record)

    def step(self, step: str, /, **kw: Any) -> None:
        self.add({"event": "step", "step": step, "mono": time.monotonic(), **kw})

    def write(self) -> None:
        with self._lock:
            rows = sorted(self.records, key=lambda r: r.get("wall", 0))
        jsonlines.write(self.path, rows)


@dataclass
class RunResult:
    out: Path
    verdict: Any
    lab: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.verdict.passed)


def sctp_peer(lab: Lab, traffic: Traffic | None) -> str | None:
    """The correspondent for SCTP traffic: the scenario's ``peer``, else the first host-role
    node with SCTP; None when the MN or no host has SCTP."""
    topo = lab.topo
    if not lab.wiring.sctp_mobile:
        return None
    if traffic is not None and traffic.peer:
        if traffic.peer not in topo.nodes:
            raise TestbedError(f"traffic.peer {traffic.peer!r} is not a node of {topo.name}")
        return traffic.peer
    return next((n for n, spec in topo.nodes.items() if spec.role is Role.HOST
                 and kernel_nodes.stack_of(spec.sctp) != "none"), None)


class Runner:
    def __init__(self, scenario: Scenario, lab: Lab, out: Path, progress: Progress = quiet,
                 dwell: Callable[[float], None] = time.sleep, *, title: str | None = None,
                 context: dict[str, Any] | None = None) -> None:
        self.sc, self.lab, self.out, self.progress = scenario, lab, out.resolve(), progress
        self.title = title or f"{scenario.name} on lab {lab.state.lab}"  # the report's
        self.context = context or {}  # more for verdict.json's lab block (an interop cell's setting)
        self.dwell = dwell  # the scenario's own dwell times (``wait`` steps), not waits for events
        self.log = EventLog(self.out / "events.jsonl")
        self.traffic: SctpTraffic | None = None
        peer = sctp_peer(lab, scenario.traffic) if scenario.uses_traffic else None
        if peer is not None:
            self.traffic = SctpTraffic(lab, peer, scenario.traffic or Traffic(), self.out)
        self.steps: dict[type, Callable[[Any], None]] = {
            Move: self._move, PingPong: self._ping_pong, Metric: self._metric, Wait: self._wait,
            TrafficStep: self._traffic, Depart: self._depart,
        }

    # -- steps
    def _move(self, m: Move) -> None:
        self.progress(f"move to {m.to} ({m.mode})")
        self.log.step("move", to=m.to, mode=m.mode, overlap=m.overlap, gap=m.gap)
        times = self.lab.move(m.to, m.mode, overlap=m.overlap, gap=m.gap)
        self.log.step("moved", to=m.to, **{f"{k}_s": v for k, v in times.items()})

    def _ping_pong(self, p: PingPong) -> None:
        for i in range(p.times):
            target = p.between[(i + 1) % 2] if self.lab.state.attached == [p.between[0]] \
                else p.between[i % 2]
            self._move(Move(to=target, mode=p.mode))
            self._wait(Wait(seconds=p.dwell))

    def _metric(self, m: Metric) -> None:
        self.log.step("metric", ifname=m.ifname, name=m.name, value=m.value)
        r = self.lab.mobile.agent_request({"cmd": "set-metric", "ifname": m.ifname, "name": m.name,
                                           "value": m.value})
        if not r.get("ok"):
            raise TestbedError(f"metric step: the agent refused: {r.get('error')}")

    def _wait(self, w: Wait) -> None:
        self.log.step("wait", seconds=w.seconds)
        self.lab.close()  # a QEMU node's agent serves one process at a time: others may use it now
        self.dwell(w.seconds)

    def _traffic(self, t: TrafficStep) -> None:
        if self.traffic is None:
            raise TestbedError("traffic steps need SCTP endpoints: give the mobile node and a host "
                               "`sctp: {stack: auto}` in the topology")
        self.progress(f"traffic {t.action}")
        self.log.step("traffic", action=t.action)
        try:
            (self.traffic.start if t.action == "start" else self.traffic.stop)()
        except AssociationRefused as e:  # judged from the capture: the steps go on without it
            self.progress("association refused")
            self.log.add({"event": "traffic", "op": "refused", "error": str(e)})

    def _depart(self, _: Depart) -> None:
        self.progress("depart")
        self.log.step("depart")
        for r in self.lab.mobile.depart():
            self.log.add(r)

    def play(self) -> None:
        for rep in range(self.sc.repeat):
            self.log.step("repeat", index=rep)
            for step in self.sc.steps:
                self.steps[type(step)](step)

    def run(self) -> RunResult:
        from testbed.conformance.checker import check

        self.out.mkdir(parents=True, exist_ok=True)
        pcaps = self.out / "pcaps"
        capture = Capture.for_lab(self.lab, pcaps)
        wiring = self.lab.wiring
        tails = [jsonlines.Tail(wiring.agent_dir / "events.jsonl"),
                 jsonlines.Tail(wiring.agent_dir / "location.jsonl"),
                 jsonlines.Tail(self.lab.node_dir(wiring.mn, "binding") / "actions.jsonl")]
        self.progress("capturing every link")
        capture.start()
        try:
            self.log.step("start", scenario=self.sc.name, seed=self.sc.seed, lab=self.lab.state.lab)
            self.play()
            self.log.step("end")
        finally:
            if self.traffic is not None:
                self.traffic.close(self.log)
            capture.stop()
            agent_events, *others = (t.read() for t in tails)
            for e in agent_events:
                self.log.add({"event": e.pop("kind"), **e})
            for r in (r for rows in others for r in rows):
                self.log.add(r)
            self.log.write()
        self.progress("checking the captures")
        events = [r for r in self.log.records if r.get("event") in MOVEMENT_EVENTS]
        z = self.lab.topo.dns
        verdict = check(pcaps, rules=self.sc.rules, events=events, budgets=self.sc.budgets or None,
                        mn_name=f"{z.mobile_name}.{z.zone}", lab=self.lab_block())
        if self.sc.expect:
            verdict = verdict.expecting(dict(self.sc.expect), f"scenario {self.sc.name}")
        drops = capture.drops()
        if drops:  # the verdict says when the captures, not the network, may have lost packets
            verdict.stats["capture_drops"] = drops
            verdict.stats.setdefault("capture_problems", []).append(
                "tcpdump dropped packets (" + ", ".join(f"{k} {v}" for k, v in drops.items()) +
                "): a DATA gap never seen may be the capture's, not the network's")
        verdict.write(self.out / "verdict.json")
        self._report(verdict)
        return RunResult(self.out, verdict, self.lab.state.lab)

    def lab_block(self) -> dict[str, Any]:
        """verdict.json's ``lab``: what ran (machine, backend, each node's stack and kernel)."""
        st = self.lab.state
        return {"name": st.lab, "topology": self.lab.topo.name, "machine": st.machine,
                "backend": st.backend, "scenario": self.sc.name, "seed": self.sc.seed,
                "nodes": {n: self.lab.nodes.kernel_info(n).to_dict() for n in self.lab.plan.nodes},
                **self.context}

    def _report(self, verdict: Any) -> None:
        from testbed.report.html import render_report

        render_report(self.out, self.roles(), self.title,
                      budgets=self.sc.budgets or None, verdict=verdict)

    def roles(self) -> dict[str, list[str]]:
        """Appendix-A columns: the MN (its access prefixes), the AR it moves to (first move),
        the CN, that AR's DHCP server and the location manager."""
        p, topo = self.lab.plan, self.lab.topo
        moves = [m.to for m in self.sc.moves()]
        away = [m for m in moves if m not in topo.mobile.attached]  # first move off the start AR
        new_ar = (away or moves or [topo.access_networks[-1].router])[0]
        _, ar_if = p.access_iface(new_ar)
        ar_addrs = [str(a.ip) for a in ar_if.addresses]
        cn = self.traffic.cn if self.traffic is not None else None
        return {
            "MN": [str(n) for a in topo.access_networks for n in (a.ipv4, a.ipv6)],
            "New AR": ar_addrs,
            "CN": [str(a.ip) for a in p.nodes[cn].addresses()] if cn else [],
            "DHCP": ar_addrs[:1],
            "Location manager": [str(a.ip) for a in p.nodes[topo.dns.server].addresses()],
        }


def run(scenario: Scenario, out: Path, lab_name: str, progress: Progress = quiet) -> RunResult:
    """Bring the scenario's lab up if it is not, run, and leave the lab up."""
    if LabState.exists(lab_name):
        lab = Lab.open(lab_name)
        wanted = loader.load(scenario.topology).name
        if lab.topo.name != wanted:
            raise TestbedError(f"lab {lab_name!r} runs topology {lab.topo.name!r}, the scenario wants "
                               f"{wanted!r}: `testbed down` first, or pick another --lab")
    else:
        lab = Lab.up(scenario.topology, lab_name, progress)
    try:
        return Runner(scenario, lab, out, progress).run()
    finally:
        lab.close()
