"""Faults injected mid-scenario: a daemon or a kernel node killed, a link flapping, an access
router vanishing. Each becomes a rule ``fault.<what>`` that names the fault, when it came, and
what the lab showed after it: steps that failed, capture rules that failed, whether the killed
process still runs. The rule fails when the fault left a mark, and passes when the lab came
through it untouched (a flap the MN recovered from).

A step that fails after a fault (a move that never gets configured because dhcpd is dead)
does not end the run without a verdict: the runner records it as ``scenario.steps`` and judges
what was captured.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.conformance.verdict import Evidence, RuleResult
from testbed.errors import TestbedError
from testbed.host import netns
from testbed.host.procs import signal_pid
from testbed.progress import Progress
from testbed.scenario.model import Fault


@dataclass
class Injected:
    """One fault as injected: when, what exactly, and how to tell whether it still holds."""

    step: Fault
    wall: float
    what: str
    still: Callable[[], bool] | None = None  # True while the fault's effect stands
    after: list[str] = field(default_factory=list)  # what the run showed after it


def service_node(topo, f: Fault) -> str:
    """The node whose daemon ``f`` kills: its ``node``, else the DNS server for named, else
    the mobile node."""
    return f.node or {"named": topo.dns.server}.get(str(f.kill), topo.mobile.node)


class FaultSteps:
    """The ``fault`` steps of one run and the rules they give, wherever they are injected: a
    target's part implements the four faults."""

    def __init__(self, log, progress: Progress) -> None:
        self.log, self.progress = log, progress
        self.injected: list[Injected] = []

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {Fault: self.inject}

    def inject(self, f: Fault) -> None:
        self.progress(f"fault: {f.rule_id.removeprefix('fault.')}")
        if f.kill == "node":
            inj = self._kill_node(f)
        elif f.kill is not None:
            inj = self._kill_service(f)
        elif f.flap is not None:
            inj = self._flap(f)
        else:
            inj = self._vanish(f)
        self.injected.append(inj)
        self.log.add({"event": "fault", "rule": f.rule_id, "what": inj.what, "wall": inj.wall})

    def _kill_service(self, f: Fault) -> Injected:
        raise NotImplementedError

    def _kill_node(self, f: Fault) -> Injected:
        raise NotImplementedError

    def _flap(self, f: Fault) -> Injected:
        raise NotImplementedError

    def _vanish(self, f: Fault) -> Injected:
        raise NotImplementedError

    # -- the verdict ------------------------------------------------------------------------
    def rules(self, step_error: RuleResult | None, failed: list[RuleResult]) -> list[RuleResult]:
        out = []
        for inj in self.injected:
            marks = list(inj.after)
            if step_error is not None:
                marks.append(f"a later step failed: {step_error.message}")
            marks += [f"{r.id} failed: {r.message}" for r in failed]
            if inj.still is not None and inj.still():
                marks.append("still in effect at the end of the run")
            ev = [Evidence("events.jsonl", 0, inj.wall, inj.what)]
            ev += [e for r in failed for e in r.evidence[:2]]
            if marks:
                out.append(RuleResult(inj.step.rule_id, "fail", f"{inj.what}; after it: " + "; ".join(marks),
                                      tuple(ev)))
            else:
                out.append(RuleResult(inj.step.rule_id, "pass", f"{inj.what}; the lab came through it "
                                      "(no step or capture rule failed)", tuple(ev)))
        return out


class Faults(FaultSteps):
    """The faults by a lab's hands: signals to its processes, its nodes' links and namespaces."""

    def __init__(self, lab, log, progress: Progress) -> None:
        super().__init__(log, progress)
        self.lab = lab

    def _service(self, f: Fault):
        lab = self.lab
        node = service_node(lab.topo, f)
        rec = next((r for r in lab.state.service_records() if r.service == f.kill and r.node == node), None)
        if rec is None:
            raise TestbedError(f"fault: no {f.kill} runs on {node} in lab {lab.state.lab!r}")
        return rec

    def _kill_service(self, f: Fault) -> Injected:
        rec = self._service(f)
        rt = self.lab.runtime(rec.node)
        wall = time.time()
        rt.signal(rec.pid, signal.SIGKILL)
        rt.wait(rec.pid, 2.0)
        where = "in its kernel" if rec.guest else "on the host"
        return Injected(f, wall, f"{f.kill} on {rec.node} (pid {rec.pid} {where}) killed with SIGKILL",
                        lambda: not self.lab.nodes.service_running(rec))

    def _kill_node(self, f: Fault) -> Injected:
        rec = self.lab.nodes.kernel_record(str(f.node))
        if rec is None or "uml_pid" not in rec:
            raise TestbedError(f"fault: {f.node} is not a User-Mode-Linux kernel node of this lab")
        pid = int(rec["uml_pid"])
        wall = time.time()
        signal_pid(pid, signal.SIGKILL)
        from testbed.host.procs import alive

        return Injected(f, wall, f"kernel of {f.node} (linux.uml pid {pid}) killed with SIGKILL",
                        lambda: not alive(pid))

    def _flap(self, f: Fault) -> Injected:
        mn_if, _ = self.lab.plan.access_iface(str(f.flap))
        rt = self.lab.runtime(mn_if.node)
        wall = time.time()
        for _ in range(f.times):
            rt.set_link(mn_if.ifname, False)
            time.sleep(f.period / 2)  # the flap's own rhythm, not a wait for an event
            rt.set_link(mn_if.ifname, True)
            time.sleep(f.period / 2)
        return Injected(f, wall, f"{mn_if.ifname} (the MN's link to {f.flap}) down and up "
                                 f"{f.times}× every {f.period:g} s")

    def _vanish(self, f: Fault) -> Injected:
        ar = str(f.vanish)
        if ar not in [a.router for a in self.lab.topo.access_networks]:
            raise TestbedError(f"fault: {ar!r} is not an access router of this lab")
        ns = self.lab.state.ns(ar)
        wall = time.time()
        netns.kill_all(ns, grace=0.5)
        ifaces = [i.ifname for i in self.lab.plan.nodes[ar].ifaces]
        netns.run(None, ["ip", "-n", ns, "-batch", "-"],
                  input="".join(f"link set dev {i} down\n" for i in ifaces))
        return Injected(f, wall, f"{ar} vanished: its daemons killed, its links "
                                 f"({', '.join(ifaces)}) without carrier", lambda: True)

