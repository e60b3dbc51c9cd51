"""Running a scenario: lab up if needed, capture every link, play the steps, judge, report.

Output directory: ``pcaps/`` (one pcap per link), ``events.jsonl`` (agent events, location
outcomes, binding actions, traffic records and scenario steps on one clock: wall time, plus
monotonic where known), ``traffic.json``, ``verdict.json`` and ``report.html``.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from testbed.capture.tcpdump import Capture
from testbed.conformance.verdict import Evidence, RuleResult
from testbed.errors import TestbedError
from testbed.host import jsonlines
from testbed.host.signals import interrupts_deferred
from testbed.lab import Lab
from testbed.model import loader, retransmission
from testbed.model.topology import Role
from testbed.progress import Progress, quiet
from testbed.runtimes import kernel_nodes
from testbed.scenario import trace_rules
from testbed.scenario.attacks import Attacks
from testbed.scenario.faults import Faults
from testbed.scenario.model import (
    Attach,
    Depart,
    Leave,
    Metric,
    Move,
    PingPong,
    Scenario,
    Traffic,
    TrafficStep,
    Wait,
)
from testbed.scenario.quic_traffic import QuicTraffic
from testbed.scenario.quic_traffic import preflight as quic_preflight
from testbed.scenario.stream_traffic import StreamTraffic
from testbed.scenario.traffic import AssociationRefused, SctpTraffic, TrafficRun
from testbed.state import LabState

MOVEMENT_EVENTS = ("link_up", "link_down", "detected", "configured", "lost")
FIRST_READINGS_S = 0.1  # after the traces' 0, for their first values to reach the nodes


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


NEEDS = {"sctp": "give the mobile node and a host `sctp: {stack: auto}` in the topology",
         "mptcp": "give the mobile node and a host `mptcp: {enabled: true}` in the topology",
         "quic": "give the mobile node and a host `quic: {stack: aioquic}` in the topology",
         "tcp": "add a host node to the topology"}


class Runner:
    def __init__(self, scenario: Scenario, lab: Lab, out: Path, progress: Progress = quiet,
                 dwell: Callable[[float], None] = time.sleep, *, title: str | None = None,
                 context: dict[str, Any] | None = None) -> None:
        self.sc, self.lab, self.out, self.progress = scenario, lab, out.resolve(), progress
        self.title = title or f"{scenario.name} on lab {lab.state.lab}"  # the report's
        self.context = context or {}  # more for verdict.json's lab block (an interop cell's setting)
        self.dwell = dwell  # the scenario's own dwell times (``wait`` steps), not waits for events
        self.log = EventLog(self.out / "events.jsonl")
        self.many = len(lab.topo.mobiles) > 1  # then records name their MN (``mn``)
        self.rng = random.Random(scenario.seed)  # ``spread`` moves: the same run for the same seed
        self.unsettled: dict[str, set[str]] = {}  # MN -> the ARs it moved to since the last settle
        self.visited: set[str] = set()  # every AR a move went to
        self.traffic: TrafficRun | None = None
        params = scenario.traffic or Traffic()
        peer = traffic_peer(lab, params) if scenario.uses_traffic else None
        if peer is not None and params.transport == "quic":
            self.traffic = QuicTraffic(lab, peer, params, self.out, scenario)
        elif peer is not None:
            kind = SctpTraffic if params.transport == "sctp" else StreamTraffic
            self.traffic = kind(lab, peer, params, self.out)
        self.attacks = Attacks(lab, self.out, self.log, progress)
        self.faults = Faults(lab, self.log, progress)
        # the run's policy and link traces (a bad trace or one the kernels cannot play fails here)
        self.policy = scenario.policy or lab.topo.mobile.policy
        self.replay = trace_rules.replay_of(lab, scenario)
        self.steps: dict[type, Callable[[Any], None]] = {
            Move: self._move, Attach: self._attach, PingPong: self._ping_pong, Metric: self._metric,
            Wait: self._wait,
            TrafficStep: self._traffic, Depart: self._depart, Leave: self._leave,
            **self.attacks.handlers(),
            **self.faults.handlers(),
        }
        self.step_error: RuleResult | None = None

    # -- steps
    def _who(self, mn: str | None) -> dict[str, Any]:
        return {"mn": mn or self.lab.topo.mobile.node} if self.many else {}

    def _move(self, m: Move) -> None:
        names = self.lab.topo.mobiles if m.mobiles == "all" else list(m.mobiles)
        for mn in names:
            self.lab.mobile_node(mn)  # an unknown name fails before anything moves
        if len(names) == 1:
            self._move_one(names[0], m)
            return
        self.progress(f"move {len(names)} mobile nodes to {m.to} ({m.mode})")
        if m.spread:
            starts = [self.rng.uniform(0, m.spread) for _ in names]
        else:
            starts = [i * m.stagger for i in range(len(names))]
        errors: list[BaseException] = []
        t0 = time.monotonic()

        def one(mn: str, at: float) -> None:
            try:
                self._dwell_until(t0 + at)
                self._move_one(mn, m)
            except BaseException as e:  # noqa: BLE001 - re-raised below, once all have ended
                errors.append(e)

        threads = [threading.Thread(target=one, args=(mn, at), name=f"move-{mn}")
                   for mn, at in zip(names, starts, strict=True)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]

    def _dwell_until(self, t: float) -> None:
        left = t - time.monotonic()
        if left > 0:
            self.dwell(left)

    def _move_one(self, mn: str, m: Move) -> None:
        who = self._who(mn)
        if not self.many:
            self.progress(f"move to {m.to} ({m.mode})")
        self.log.step("move", to=m.to, mode=m.mode, overlap=m.overlap, gap=m.gap, **who)
        times = self.lab.move(m.to, m.mode, overlap=m.overlap, gap=m.gap, mn=mn, timeout=m.timeout)
        self.log.step("moved", to=m.to, **who, **{f"{k}_s": v for k, v in times.items()})
        self.unsettled.setdefault(mn, set()).add(m.to)
        self.visited.add(m.to)

    def budget_margins(self) -> dict[str, float]:
        """What the scenario's budgets (for exchanges that lose nothing) gain on lossy links:
        the retransmissions the worst loss among the networks moved to makes likely, for the
        address configuration (DHCP's two exchanges), then the transport's binding updates
        (two: ADD_IP and SET_PRIMARY, or their MPTCP and QUIC counterparts), then the DNS
        UPDATE, each phase the margins of what it waits for. {} on lossless links."""
        loss = max((a.shape.loss for a in self.lab.topo.access_networks
                    if a.router in self.visited and a.shape is not None), default=0.0)
        if loss <= 0:
            return {}
        configure = retransmission.margin(loss, retransmission.DHCP, exchanges=2)
        bind = configure + retransmission.margin(loss, retransmission.SCTP, exchanges=2)
        dns = bind + retransmission.margin(loss, retransmission.DNS)
        return {phase: configure if phase in ("detected", "configured") else dns if phase.startswith("dns")
                else bind for phase in self.sc.budgets}

    def budgets(self) -> dict[str, float] | None:
        """The budgets the run is judged by: the scenario's, with their lossy-link margins."""
        margins = self.budget_margins()
        return {p: s + margins.get(p, 0.0) for p, s in self.sc.budgets.items()} or None

    def _settle(self) -> None:
        """Before the traffic stops (and at the end): until each MN that moved has its binding
        updates answered, so the last move's exchanges are on the captures, not cut off."""
        for mn, ars in sorted(self.unsettled.items()):
            mobile = self.lab.mobile_node(mn)
            bound = mobile.binding_bound(ars)
            t0 = time.monotonic()
            done = mobile.wait_settled(bound)
            self.log.step("settled", done=done, seconds=round(time.monotonic() - t0, 3),
                          bound_s=round(bound, 3), **self._who(mn))
        self.unsettled.clear()

    def _attach(self, a: Attach) -> None:
        who = self._who(a.mobile)
        self.progress(f"attach to {a.to} as well")
        self.log.step("attach", to=a.to, **who)
        self.lab.mobile_node(a.mobile).join(a.to, a.timeout)
        self.log.step("attached", to=a.to, **who)

    def _ping_pong(self, p: PingPong) -> None:
        mobile = self.lab.mobile_node(p.mobile)
        for target in p.targets(list(mobile.attached)):
            self._move(Move(to=target, mode=p.mode, overlap=p.overlap, gap=p.gap, mobiles=[mobile.name]))
            self._wait(Wait(seconds=p.dwell))

    def _metric(self, m: Metric) -> None:
        self.log.step("metric", ifname=m.ifname, name=m.name, value=m.value, **self._who(m.mobile))
        r = self.lab.mobile_node(m.mobile).agent_request({"cmd": "set-metric", "ifname": m.ifname,
                                                          "name": m.name, "value": m.value})
        if not r.get("ok"):
            raise TestbedError(f"metric step: the agent refused: {r.get('error')}")

    def _wait(self, w: Wait) -> None:
        self.log.step("wait", seconds=w.seconds)
        self.lab.close()  # a QEMU node's agent serves one process at a time: others may use it now
        self.dwell(w.seconds)

    def _traffic(self, t: TrafficStep) -> None:
        if self.traffic is None:
            transport = self.sc.transport
            raise TestbedError(f"traffic steps need {transport.upper()} endpoints: {NEEDS[transport]}")
        if t.action == "stop":
            self._settle()
        self.progress(f"traffic {t.action}")
        self.log.step("traffic", action=t.action)
        try:
            (self.traffic.start if t.action == "start" else self.traffic.stop)()
        except AssociationRefused as e:  # judged from the capture: the steps go on without it
            self.progress("association refused")
            self.log.add({"event": "traffic", "op": "refused", "error": str(e)})

    def _depart(self, d: Depart) -> None:
        self.progress("depart")
        self.log.step("depart", **self._who(d.mobile))
        for r in self.lab.mobile_node(d.mobile).depart():
            self.log.add({**r, **self._who(d.mobile)})

    def _leave(self, step: Leave) -> None:
        """The MN drops off every network; without notice its agent dies first (no withdrawal)."""
        self.progress("the MN leaves" + ("" if step.notice else " without notice"))
        self.log.step("leave", notice=step.notice)
        mobile = self.lab.mobile
        rec = mobile.agent_record()
        if not step.notice and rec is not None and self.lab.nodes.service_running(rec):
            rt = self.lab.runtime(rec.node)
            rt.signal(rec.pid, signal.SIGKILL)
            rt.wait(rec.pid, 2.0)
        for ar in mobile.attached:
            mobile.detach(ar)

    def play(self) -> None:
        for rep in range(self.sc.repeat):
            self.log.step("repeat", index=rep)
            for n, step in enumerate(self.sc.steps):
                try:
                    self.steps[type(step)](step)
                except TestbedError as e:
                    if not self.faults.injected:
                        raise
                    # after a fault: what it broke, judged with what was captured up to here
                    what = f"steps.{n} ({step.kind}) failed: {e}"
                    self.log.step("failed", index=n, kind=step.kind, error=str(e))
                    self.step_error = RuleResult("scenario.steps", "fail", what,
                                                 (Evidence("events.jsonl", 0, time.time(), what),))
                    return
        self._settle()

    def run(self) -> RunResult:
        self.out.mkdir(parents=True, exist_ok=True)
        pcaps = self.out / "pcaps"
        capture = Capture.for_lab(self.lab, pcaps)
        tails = {}
        for mn in self.lab.topo.mobiles:
            w = self.lab.wiring.for_mobile(mn)
            tails[mn] = [jsonlines.Tail(w.agent_dir / "events.jsonl"),
                         jsonlines.Tail(w.agent_dir / "location.jsonl"),
                         jsonlines.Tail(self.lab.node_dir(mn, "binding") / "actions.jsonl")]
        interrupted = False
        with interrupts_deferred():
            for m in self.lab.mobiles.values():  # the run's policy, before anything is captured
                m.set_policy(self.policy)
        self.progress("capturing every link")
        agent_dropped: int | None = None
        try:
            capture.start()
            self.log.step("start", scenario=self.sc.name, seed=self.sc.seed, lab=self.lab.state.lab)
            if self.replay is not None:
                self.progress("replaying the link traces")
                start = self.replay.start()
                self.log.step("replay", start_wall=start, networks=sorted(self.replay.traces))
                # the steps follow the traces' clock: the first readings are in before the first step
                self._dwell_until(time.monotonic() + start + FIRST_READINGS_S - time.time())
            self.play()
            self.log.step("end")
        except KeyboardInterrupt:
            interrupted = True
            self.log.step("interrupted")
            raise
        finally:
            with interrupts_deferred():  # a second Ctrl-C must not leave tcpdump or traffic behind
                if self.traffic is not None:
                    self.traffic.close(self.log, hurry=interrupted)
                self.attacks.close()
                if self.replay is not None:  # the static shaping is back once each has stopped
                    self.replay.stop()
                if not interrupted:
                    agent_dropped = trace_rules.agent_dropped(self.lab)
                capture.stop(timeout=1.0 if interrupted else 5.0)
                for m in self.lab.mobiles.values():
                    m.set_policy(self.lab.topo.mobile.policy)
                for mn, (agent, *others) in tails.items():
                    who = self._who(mn)
                    for e in agent.read():
                        self.log.add({"event": e.pop("kind"), **e, **who})
                    for r in (r for t in others for r in t.read()):
                        self.log.add({**r, **who})
                self.log.write()
        self.progress("checking the captures")
        verdict = self.check(pcaps)
        # what the run observed beyond the captures: attacks refused or taken, faults, steps
        failed = [r for r in verdict.rules if r.status == "fail"]
        extra = [*self.attacks.rules(verdict.facts), *self.faults.rules(self.step_error, failed),
                 *(self.traffic.rules() if self.traffic is not None else [])]
        if self.step_error is not None:
            extra.append(self.step_error)
        judged = trace_rules.judge(self.lab, self.sc, self.policy, self.replay, self.log.records, pcaps,
                                   agent_dropped)
        extra += judged.rules
        verdict = replace(verdict, policy=judged.policy, traces=judged.traces)
        if extra:
            verdict = replace(verdict, rules=(*verdict.rules, *extra))
        if self.sc.expect:
            verdict = verdict.expecting(dict(self.sc.expect), f"scenario {self.sc.name}")
        drops = capture.drops()
        if drops:  # the verdict says when the captures, not the network, may have lost packets
            verdict.stats["capture_drops"] = drops
            verdict.stats.setdefault("capture_problems", []).append(
                "tcpdump dropped packets (" + ", ".join(f"{k} {v}" for k, v in drops.items()) +
                "): a DATA gap never seen may be the capture's, not the network's")
        verdict.write(self.out / "verdict.json")
        from testbed.report import signal_plot

        plot = signal_plot.render(verdict.to_dict())
        if plot is not None:  # each network's signal and rate, the handover phases on them
            (self.out / signal_plot.FILE).write_text(plot)
        self._report(verdict)
        return RunResult(self.out, verdict, self.lab.state.lab)

    def check(self, pcaps: Path) -> Any:
        """The verdict on the captures: of the one MN, or of each MN with their summary (the
        scenario's expectations are applied by the caller, to what the run adds too)."""
        from testbed.conformance.checker import check
        from testbed.conformance.mobiles import MobileScope, check_mobiles

        topo = self.lab.topo
        events = [r for r in self.log.records if r.get("event") in MOVEMENT_EVENTS]
        if not self.many:
            return check(pcaps, rules=self.sc.rules, events=events, budgets=self.budgets(),
                         mn_name=topo.dns_name(topo.mobile.node), lab=self.lab_block(),
                         auth_keys=self.auth_keys(), transport=self.transport)
        scopes = {mn: MobileScope.from_events(topo.dns_name(mn), [e for e in events if e.get("mn") == mn])
                  for mn in topo.mobiles}
        return check_mobiles(pcaps, scopes, rules=self.sc.rules, budgets=self.budgets(),
                             expectations=dict(self.sc.expect), lab=self.lab_block(),
                             source=f"scenario {self.sc.name}", auth_keys=self.auth_keys(),
                             transport=self.transport)

    @property
    def transport(self) -> str | None:
        """The transport whose rules judge the run: its traffic's, none without traffic."""
        return self.sc.transport if self.sc.uses_traffic else None

    def auth_keys(self) -> dict[int, bytes]:
        """The endpoint-pair shared key the topology gives the MN, for the HMACs the checker
        verifies (key 0: the one the traffic apps set)."""
        key = self.lab.topo.nodes[self.lab.topo.mobile.node].sctp.auth_key
        return {0: bytes.fromhex(key)} if key else {}

    def lab_block(self) -> dict[str, Any]:
        """verdict.json's ``lab``: what ran (machine, backend, each node's stack and kernel)."""
        st = self.lab.state
        return {"name": st.lab, "topology": self.lab.topo.name, "machine": st.machine,
                "backend": st.backend, "scenario": self.sc.name, "seed": self.sc.seed,
                "nodes": {n: self.lab.nodes.kernel_info(n).to_dict() for n in self.lab.plan.nodes},
                "packages": self.lab.package_versions(),
                **(self.traffic.lab_info() if self.traffic is not None else {}), **self.context}

    def _report(self, verdict: Any) -> None:
        from testbed.report.html import render_report

        render_report(self.out, self.roles(), self.title,
                      budgets=self.budgets(), verdict=verdict)

    def roles(self) -> dict[str, list[str]]:
        return ladder_roles(self.lab.topo, self.lab.plan, self.sc,
                            self.traffic.cn if self.traffic is not None else None)


def ladder_roles(topo, plan, sc: Scenario, cn: str | None) -> dict[str, list[str]]:
    """Appendix-A columns: the MN (its access prefixes), the AR it moves to (first move), the
    CN, that AR's DHCP server and the location manager."""
    moves = [m.to for m in sc.moves()]
    away = [m for m in moves if m not in topo.mobile.attached]  # first move off the start AR
    new_ar = (away or moves or [topo.access_networks[-1].router])[0]
    _, ar_if = plan.access_iface(new_ar)
    ar_addrs = [str(a.ip) for a in ar_if.addresses]
    return {
        "MN": [str(n) for a in topo.access_networks for n in (a.ipv4, a.ipv6) if n is not None],
        "New AR": ar_addrs,
        "CN": [str(a.ip) for a in plan.nodes[cn].addresses()] if cn else [],
        "DHCP": ar_addrs,  # DHCPv4 and DHCPv6
        "Location manager": [str(a.ip) for a in plan.nodes[topo.dns.server].addresses()],
    }


def run(scenario: Scenario, out: Path, lab_name: str, progress: Progress = quiet) -> RunResult:
    """Bring the scenario's lab up if it is not, run, and leave the lab up (on Ctrl-C: removed
    again if this run brought it up)."""
    topo = loader.load(scenario.topology)
    if scenario.uses_traffic and scenario.transport == "quic":  # stacks missing: before any lab is made
        quic_preflight(topo, scenario, quic_host(topo, scenario.traffic), f"scenario {scenario.name}")
    trace_rules.check(topo, scenario)  # a bad trace: nothing is built
    if LabState.exists(lab_name):
        lab = Lab.open(lab_name)
        wanted = topo.name
        if lab.topo.name != wanted:
            raise TestbedError(f"lab {lab_name!r} runs topology {lab.topo.name!r}, the scenario wants "
                               f"{wanted!r}: `testbed down` first, or pick another --lab")
        brought_up = False
    else:
        lab = Lab.up(scenario.topology, lab_name, progress)
        brought_up = True
    try:
        return Runner(scenario, lab, out, progress).run()
    except KeyboardInterrupt:
        if brought_up:  # Ctrl-C: a lab this run made goes with it; one it found stays as it was
            progress("interrupted: removing the lab this run brought up")
            with interrupts_deferred():
                lab.down(progress)
        raise
    finally:
        lab.close()
