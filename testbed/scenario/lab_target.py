"""A lab as a scenario's target: its nodes' runtimes, captures in their namespaces, its mobile
nodes' moves and agents, faults and attacks by the lab's own hands."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.capture.tcpdump import Capture
from testbed.errors import TestbedError
from testbed.host import jsonlines
from testbed.lab import Lab
from testbed.lab.replay import TraceReplay
from testbed.model.topology import PolicySettings, Role
from testbed.runtimes import kernel_nodes
from testbed.scenario import trace_rules
from testbed.scenario.attacks import Attacks
from testbed.scenario.faults import Faults
from testbed.scenario.model import Scenario, Traffic
from testbed.scenario.quic_traffic import QuicTraffic
from testbed.scenario.stream_traffic import StreamTraffic
from testbed.scenario.target import EventSink
from testbed.scenario.traffic import SctpTraffic, TrafficRun


def sctp_peer(lab: Lab, traffic: Traffic | None) -> str | None:
    """The correspondent for SCTP traffic: the scenario's ``peer``, else the first host-role
    node with SCTP; None when the MN or no host has SCTP."""
    if not lab.wiring.sctp_mobile:
        return None
    return _peer(lab, traffic, lambda spec: kernel_nodes.stack_of(spec.sctp) != "none")


def traffic_peer(lab: Lab, traffic: Traffic) -> str | None:
    """The correspondent for the scenario's transport: its ``peer``, else the first host that
    speaks it (any host for plain TCP); None when the MN or no host does."""
    if traffic.transport == "sctp":
        return sctp_peer(lab, traffic)
    if traffic.transport == "mptcp":
        if not lab.topo.nodes[lab.topo.mobile.node].mptcp.enabled:
            return None
        return _peer(lab, traffic, lambda spec: spec.mptcp.enabled)
    if traffic.transport == "quic":
        if not lab.topo.nodes[lab.topo.mobile.node].quic.enabled:
            return None
        return _peer(lab, traffic, lambda spec: spec.quic.enabled)
    return _peer(lab, traffic, lambda spec: True)


def quic_host(topo, traffic: Traffic | None) -> str | None:
    """The correspondent a QUIC scenario would use on ``topo`` (no lab needed)."""
    if not topo.nodes[topo.mobile.node].quic.enabled:
        return None
    if traffic is not None and traffic.peer:
        return traffic.peer if traffic.peer in topo.nodes else None
    return next((n for n, spec in topo.nodes.items() if spec.role is Role.HOST and spec.quic.enabled), None)


def _peer(lab: Lab, traffic: Traffic | None, speaks: Callable[[Any], bool]) -> str | None:
    topo = lab.topo
    if traffic is not None and traffic.peer:
        if traffic.peer not in topo.nodes:
            raise TestbedError(f"traffic.peer {traffic.peer!r} is not a node of {topo.name}")
        return traffic.peer
    return next((n for n, spec in topo.nodes.items() if spec.role is Role.HOST and speaks(spec)), None)


class LabTarget:
    """``Target`` over a ``Lab`` (which stays up after the run)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.topo, self.plan = lab.topo, lab.plan
        self.tails: dict[str, list[jsonlines.Tail]] = {}
        self.replay: TraceReplay | None = None

    @property
    def name(self) -> str:
        return self.lab.state.lab

    def refuse(self, scenario: Scenario) -> None:
        """A lab plays every step kind (what a step needs of the topology fails that step); a
        bad trace, or one the lab's kernels cannot play, fails here."""
        self.replay = trace_rules.replay_of(self.lab, scenario)

    def prepare(self, out: Path, log: EventSink, progress: Callable[[str], None]) -> None:
        for mn in self.topo.mobiles:
            w = self.lab.wiring.for_mobile(mn)
            self.tails[mn] = [jsonlines.Tail(w.agent_dir / "events.jsonl"),
                              jsonlines.Tail(w.agent_dir / "location.jsonl"),
                              jsonlines.Tail(self.lab.node_dir(mn, "binding") / "actions.jsonl")]

    def capture(self, pcaps: Path) -> Capture:
        return Capture.for_lab(self.lab, pcaps)

    def traffic(self, scenario: Scenario, out: Path) -> TrafficRun | None:
        params = scenario.traffic or Traffic()
        peer = traffic_peer(self.lab, params)
        if peer is None:
            return None
        if params.transport == "quic":
            return QuicTraffic(self.lab, peer, params, out, scenario)
        kind = SctpTraffic if params.transport == "sctp" else StreamTraffic
        return kind(self.lab, peer, params, out)

    def attached(self, mn: str) -> list[str]:
        return list(self.lab.mobile_node(mn).attached)

    def move(self, mn: str, to: str, mode: str, overlap: float, gap: float,
             timeout: float) -> dict[str, float]:
        return self.lab.move(to, mode, overlap=overlap, gap=gap, mn=mn, timeout=timeout)  # type: ignore[arg-type]

    def join(self, mn: str, to: str, timeout: float) -> None:
        self.lab.mobile_node(mn).join(to, timeout)

    def set_policy(self, policy: PolicySettings) -> None:
        for m in self.lab.mobiles.values():
            m.set_policy(policy)

    def start_traces(self) -> float | None:
        return self.replay.start() if self.replay is not None else None

    def stop_traces(self) -> None:
        if self.replay is not None:
            self.replay.stop()

    def agent_dropped(self) -> int | None:
        return trace_rules.agent_dropped(self.lab)

    def settle(self, mn: str, ars: set[str]) -> tuple[bool, float]:
        mobile = self.lab.mobile_node(mn)
        bound = mobile.binding_bound(ars)
        return mobile.wait_settled(bound), bound

    def agent_request(self, mn: str, cmd: dict[str, Any]) -> dict[str, Any]:
        return self.lab.mobile_node(mn).agent_request(cmd)

    def depart(self, mn: str) -> list[dict[str, Any]]:
        return self.lab.mobile_node(mn).depart()

    def leave(self, mn: str, notice: bool) -> None:
        mobile = self.lab.mobile_node(mn)
        rec = mobile.agent_record()
        if not notice and rec is not None and self.lab.nodes.service_running(rec):
            rt = self.lab.runtime(rec.node)
            rt.signal(rec.pid, signal.SIGKILL)
            rt.wait(rec.pid, 2.0)
        for ar in mobile.attached:
            mobile.detach(ar)

    def pause(self) -> None:
        self.lab.close()  # a QEMU node's agent serves one process at a time: others may use it now

    def faults(self, log: EventSink, progress: Callable[[str], None]) -> Faults:
        return Faults(self.lab, log, progress)

    def attacks(self, out: Path, log: EventSink, progress: Callable[[str], None]) -> Attacks:
        return Attacks(self.lab, out, log, progress)

    def records(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for mn, (agent, *others) in self.tails.items():
            out[mn] = [{"event": e.pop("kind"), **e} for e in agent.read()]
            out[mn] += [r for t in others for r in t.read()]
        return out

    def lab_block(self, scenario: Scenario) -> dict[str, Any]:
        st = self.lab.state
        return {"name": st.lab, "topology": self.topo.name, "machine": st.machine,
                "backend": st.backend, "scenario": scenario.name, "seed": scenario.seed,
                "nodes": {n: self.lab.nodes.kernel_info(n).to_dict() for n in self.plan.nodes},
                "packages": self.lab.package_versions()}

    def close(self) -> None:
        self.lab.close()
