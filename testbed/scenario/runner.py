"""Running a scenario: lab up if needed, capture every link, play the steps, judge, report.

Output directory: ``pcaps/`` (one pcap per link), ``events.jsonl`` (agent events, location
outcomes, traffic records and scenario steps, one clock: wall time, plus monotonic where
known), ``verdict.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.capture.tcpdump import Capture
from testbed.errors import TestbedError
from testbed.lab import Lab, Progress, _quiet
from testbed.model import loader
from testbed.runtimes import kernel_nodes as vmnodes
from testbed.scenario.model import Metric, Move, PingPong, Scenario, Traffic, parse_step
from testbed.scenario.traffic import SctpTraffic
from testbed.state import LabState


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

    def step(self, name: str, **kw: Any) -> None:
        self.add({"event": "step", "step": name, "mono": time.monotonic(), **kw})

    def write(self) -> None:
        with self._lock:
            rows = sorted(self.records, key=lambda r: r.get("wall", 0))
        self.path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))


class FileTail:
    """New JSON lines of a file since construction (the agent's event and location logs are
    files in its directory, readable from the host even when the agent runs in a VM)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path) as f:
            f.seek(self.offset)
            return [json.loads(x) for x in f.read().splitlines() if x.strip()]


@dataclass
class RunResult:
    out: Path
    verdict: Any
    lab: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.verdict.passed)


class Runner:
    def __init__(self, scenario: Scenario, lab: Lab, out: Path, progress: Progress = _quiet) -> None:
        self.sc, self.lab, self.out, self.progress = scenario, lab, out.resolve(), progress
        self.log = EventLog(self.out / "events.jsonl")
        self.traffic: SctpTraffic | None = None
        uses_traffic = any(parse_step(st, "")[0] == "traffic" for st in scenario.steps)
        if uses_traffic and lab.sctp_mobile and "cn" in lab.topo.nodes and \
                vmnodes.stack_of(lab.topo.nodes["cn"].sctp) != "none":
            self.traffic = SctpTraffic(lab, scenario.traffic or Traffic(), self.out)

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
            self._wait(p.dwell)

    def _metric(self, m: Metric) -> None:
        self.log.step("metric", ifname=m.ifname, name=m.name, value=m.value)
        self.lab.agent_command({"cmd": "set-metric", "ifname": m.ifname, "name": m.name,
                                "value": m.value})

    def _wait(self, seconds: float) -> None:
        self.log.step("wait", seconds=seconds)
        self.lab.close()  # free the VMs' agent ports for other commands meanwhile
        time.sleep(seconds)  # the scenario's own dwell time, not a wait for an event

    def _traffic(self, action: str) -> None:
        if self.traffic is None:
            raise TestbedError(
                "traffic steps need SCTP endpoints: give mn and cn `sctp: {stack: vm}` (or host) "
                "in the topology")
        self.progress(f"traffic {action}")
        self.log.step("traffic", action=action)
        getattr(self.traffic, action)()

    def _depart(self) -> None:
        self.progress("depart")
        self.log.step("depart")
        for r in self.lab.depart():
            self.log.add(r)

    def play(self) -> None:
        for rep in range(self.sc.repeat):
            self.log.step("repeat", index=rep)
            for i, raw in enumerate(self.sc.steps):
                kind, arg = parse_step(raw, f"steps.{i}")
                if kind == "move":
                    self._move(arg)
                elif kind == "ping_pong":
                    self._ping_pong(arg)
                elif kind == "metric":
                    self._metric(arg)
                elif kind == "wait":
                    self._wait(arg)
                elif kind == "traffic":
                    self._traffic(arg)
                elif kind == "depart":
                    self._depart()
                # a VM's agent serves one process at a time: let other commands (status, exec)
                # in between steps; the next step reconnects
                self.lab.close()

    def run(self) -> RunResult:
        from testbed.conformance.checker import check

        self.out.mkdir(parents=True, exist_ok=True)
        pcaps = self.out / "pcaps"
        capture = Capture.for_lab(self.lab, pcaps)
        agent_events = FileTail(self.lab.agent_dir / "events.jsonl")
        locations = FileTail(self.lab.agent_dir / "location.jsonl")
        bindings = FileTail(self.lab.node_dir(self.lab.topo.mobile.node, "binding") / "actions.jsonl")
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
            for e in agent_events.read():
                self.log.add({"event": e.pop("kind"), **e})
            for r in locations.read() + bindings.read():
                self.log.add(r)
            self.log.write()
        self.progress("checking the captures")
        events = [r for r in self.log.records if r.get("event") in (
            "link_up", "link_down", "detected", "configured", "lost")]
        z = self.lab.topo.dns
        verdict = check(pcaps, rules=self.sc.rules, events=events, budgets=self.sc.budgets or None,
                        mn_name=f"{z.mobile_name}.{z.zone}")
        verdict.write(self.out / "verdict.json")
        self._report(verdict)
        return RunResult(self.out, verdict, self.lab.state.lab)

    def _report(self, verdict: Any) -> None:
        from testbed.report.html import render_report

        render_report(self.out, self.roles(), f"{self.sc.name} on lab {self.lab.state.lab}",
                      budgets=self.sc.budgets or None, verdict=verdict)

    def roles(self) -> dict[str, list[str]]:
        """Appendix-A columns: the MN (its access prefixes), the AR it moves to (first move),
        the CN, that AR's DHCP server and the location manager."""
        p, topo = self.lab.plan, self.lab.topo
        moves = [arg.to for kind, arg in (parse_step(s, "") for s in self.sc.steps) if kind == "move"]
        away = [m for m in moves if m not in topo.mobile.attached]  # first move off the start AR
        new_ar = (away or moves or [topo.access_networks[-1].router])[0]
        _, ar_if = p.access_iface(new_ar)
        ar_addrs = [str(a.ip) for a in ar_if.addresses]
        cn = [str(a.ip) for a in p.nodes["cn"].addresses()] if "cn" in p.nodes else []
        return {
            "MN": [str(n) for a in topo.access_networks for n in (a.ipv4, a.ipv6)],
            "New AR": ar_addrs,
            "CN": cn,
            "DHCP": ar_addrs[:1],
            "Location manager": [str(a.ip) for a in p.nodes[topo.dns.server].addresses()],
        }


def run(scenario: Scenario, out: Path, lab_name: str, progress: Progress = _quiet) -> RunResult:
    """Bring the scenario's lab up if it is not, run, and leave the lab up."""
    if LabState.exists(lab_name):
        lab = Lab.open(lab_name)
        wanted = loader.load(scenario.topology).name
        if lab.topo.name != wanted:
            raise TestbedError(f"lab {lab_name!r} runs topology {lab.topo.name!r}, the scenario wants "
                               f"{wanted!r}: `testbed down` first, or pick another --lab")
    else:
        lab = Lab.up(scenario.topology, lab_name, progress)
    return Runner(scenario, lab, out, progress).run()
