"""Running a scenario: lab up if needed, capture every link, play the steps, judge, report.

Output directory: ``pcaps/`` (one pcap per link), ``events.jsonl`` (agent events, location
outcomes, binding actions, traffic records and scenario steps on one clock: wall time, plus
monotonic where known), ``traffic.json``, ``verdict.json`` and ``report.html``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.conformance.verdict import Evidence, RuleResult
from testbed.errors import TestbedError
from testbed.host import jsonlines
from testbed.host.signals import interrupts_deferred
from testbed.lab import Lab
from testbed.model import loader, retransmission
from testbed.progress import Progress, quiet
from testbed.scenario import trace_rules
from testbed.scenario.judge import MOVEMENT_EVENTS, Observed, RunFacts, judge, transport_of
from testbed.scenario.lab_target import LabTarget, quic_host, sctp_peer, traffic_peer
from testbed.scenario.model import Attach, Depart, Leave, Metric, Move, PingPong, Scenario, TrafficStep, Wait
from testbed.scenario.quic_traffic import preflight as quic_preflight
from testbed.scenario.target import Target, TrafficPart
from testbed.scenario.traffic import AssociationRefused
from testbed.state import LabState

FIRST_READINGS_S = 0.1  # after the traces' 0, for their first values to reach the nodes

__all__ = ["MOVEMENT_EVENTS", "EventLog", "RunResult", "Runner", "ladder_roles", "quic_host", "run",
           "sctp_peer", "traffic_peer"]


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


NEEDS = {"sctp": "give the mobile node and a host `sctp: {stack: auto}` in the topology",
         "mptcp": "give the mobile node and a host `mptcp: {enabled: true}` in the topology",
         "quic": "give the mobile node and a host `quic: {stack: aioquic}` in the topology",
         "tcp": "add a host node to the topology"}


class Runner:
    """Plays a scenario's steps on a ``Target`` (a ``Lab`` is wrapped in a ``LabTarget``) and
    judges what it captured."""

    def __init__(self, scenario: Scenario, target: Target | Lab, out: Path, progress: Progress = quiet,
                 dwell: Callable[[float], None] = time.sleep, *, title: str | None = None,
                 context: dict[str, Any] | None = None) -> None:
        self.target: Target = LabTarget(target) if isinstance(target, Lab) else target
        self.sc, self.out, self.progress = scenario, out.resolve(), progress
        self.topo, self.plan = self.target.topo, self.target.plan
        self.target.refuse(scenario)  # before anything runs
        self.title = title or f"{scenario.name} on lab {self.target.name}"  # the report's
        self.context = context or {}  # more for verdict.json's lab block (an interop cell's setting)
        self.dwell = dwell  # the scenario's own dwell times (``wait`` steps), not waits for events
        self.log = EventLog(self.out / "events.jsonl")
        self.many = len(self.topo.mobiles) > 1  # then records name their MN (``mn``)
        self.rng = random.Random(scenario.seed)  # ``spread`` moves: the same run for the same seed
        self.unsettled: dict[str, set[str]] = {}  # MN -> the ARs it moved to since the last settle
        self.visited: set[str] = set()  # every AR a move went to
        self.traffic: TrafficPart | None = None
        if scenario.uses_traffic:
            self.traffic = self.target.traffic(scenario, self.out)
        self.attacks = self.target.attacks(self.out, self.log, progress)
        self.faults = self.target.faults(self.log, progress)
        self.policy = scenario.policy or self.topo.mobile.policy  # the run's
        self.steps: dict[type, Callable[[Any], None]] = {
            Move: self._move, Attach: self._attach, PingPong: self._ping_pong, Metric: self._metric,
            Wait: self._wait, TrafficStep: self._traffic, Depart: self._depart, Leave: self._leave,
            **self.attacks.handlers(),
            **self.faults.handlers(),
        }
        self.step_error: RuleResult | None = None

    @property
    def lab(self) -> Lab:
        """The lab this runs on (a lab target's)."""
        if not isinstance(self.target, LabTarget):
            raise TestbedError(f"{self.target.name} is not a lab")
        return self.target.lab

    # -- steps
    def _mn(self, mn: str | None) -> str:
        if mn is None:
            return self.topo.mobile.node
        if mn not in self.topo.mobiles:
            raise TestbedError(f"{mn!r} is not a mobile node of {self.target.name} "
                               f"({', '.join(self.topo.mobiles)})")
        return mn

    def _who(self, mn: str | None) -> dict[str, Any]:
        return {"mn": mn or self.topo.mobile.node} if self.many else {}

    def _move(self, m: Move) -> None:
        names = self.topo.mobiles if m.mobiles == "all" else list(m.mobiles)
        for mn in names:
            self._mn(mn)  # an unknown name fails before anything moves
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
        times = self.target.move(mn, m.to, m.mode, m.overlap, m.gap, m.timeout)
        self.log.step("moved", to=m.to, **who, **{f"{k}_s": v for k, v in times.items()})
        self.unsettled.setdefault(mn, set()).add(m.to)
        self.visited.add(m.to)

    def budget_margins(self) -> dict[str, float]:
        """What the scenario's budgets (for exchanges that lose nothing) gain on lossy links:
        the retransmissions the worst loss among the networks moved to makes likely, for the
        address configuration (DHCP's two exchanges), then the transport's binding updates
        (two: ADD_IP and SET_PRIMARY, or their MPTCP and QUIC counterparts), then the DNS
        UPDATE, each phase the margins of what it waits for. {} on lossless links."""
        loss = max((a.shape.loss for a in self.topo.access_networks
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
            t0 = time.monotonic()
            done, bound = self.target.settle(mn, ars)
            self.log.step("settled", done=done, seconds=round(time.monotonic() - t0, 3),
                          bound_s=round(bound, 3), **self._who(mn))
        self.unsettled.clear()

    def _attach(self, a: Attach) -> None:
        who = self._who(a.mobile)
        self.progress(f"attach to {a.to} as well")
        self.log.step("attach", to=a.to, **who)
        self.target.join(self._mn(a.mobile), a.to, a.timeout)
        self.log.step("attached", to=a.to, **who)

    def _ping_pong(self, p: PingPong) -> None:
        mn = self._mn(p.mobile)
        for target in p.targets(self.target.attached(mn)):
            self._move(Move(to=target, mode=p.mode, overlap=p.overlap, gap=p.gap, mobiles=[mn]))
            self._wait(Wait(seconds=p.dwell))

    def _metric(self, m: Metric) -> None:
        self.log.step("metric", ifname=m.ifname, name=m.name, value=m.value, **self._who(m.mobile))
        r = self.target.agent_request(self._mn(m.mobile), {"cmd": "set-metric", "ifname": m.ifname,
                                                           "name": m.name, "value": m.value})
        if not r.get("ok"):
            raise TestbedError(f"metric step: the agent refused: {r.get('error')}")

    def _wait(self, w: Wait) -> None:
        self.log.step("wait", seconds=w.seconds)
        self.target.pause()
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
        for r in self.target.depart(self._mn(d.mobile)):
            self.log.add({**r, **self._who(d.mobile)})

    def _leave(self, step: Leave) -> None:
        """The MN drops off every network; without notice its agent dies first (no withdrawal)."""
        self.progress("the MN leaves" + ("" if step.notice else " without notice"))
        self.log.step("leave", notice=step.notice)
        self.target.leave(self.topo.mobile.node, step.notice)

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
        self.target.prepare(self.out, self.log, self.progress)
        capture = self.target.capture(pcaps)
        interrupted = False
        with interrupts_deferred():  # the run's policy, before anything is captured
            self.target.set_policy(self.policy)
        self.progress("capturing every link")
        agent_dropped: int | None = None
        try:
            capture.start()
            self.log.step("start", scenario=self.sc.name, seed=self.sc.seed, lab=self.target.name)
            start = self.target.start_traces()
            if start is not None:
                self.progress("replaying the link traces")
                self.log.step("replay", start_wall=start, networks=sorted(self.target.replay.traces))
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
                try:
                    if self.traffic is not None:
                        self.traffic.close(self.log, hurry=interrupted)
                    self.attacks.close()
                    self.target.stop_traces()  # the static shaping is back once each has stopped
                    if not interrupted:
                        agent_dropped = self.target.agent_dropped()
                finally:
                    capture.stop(timeout=1.0 if interrupted else 5.0)
                    self.target.set_policy(self.topo.mobile.policy)
                    for mn, records in self.target.records().items():
                        for r in records:
                            self.log.add({**r, **self._who(mn)})
                    self.log.write()
        self.progress("checking the captures")
        facts = RunFacts(self.sc, self.topo, self.log.records, self.lab_block(), self.roles(), self.title,
                         capture.drops(), self.budgets())
        verdict = judge(self.out, facts, lambda v: self._observed(v, pcaps, agent_dropped))
        return RunResult(self.out, verdict, self.target.name)

    def _observed(self, verdict: Any, pcaps: Path, agent_dropped: int | None) -> Observed:
        """What the run observed beyond the captures: attacks refused or taken, faults, steps,
        the traffic's own records, and the traces' and policy's blocks and rules."""
        failed = [r for r in verdict.rules if r.status == "fail"]
        extra = [*self.attacks.rules(verdict.facts), *self.faults.rules(self.step_error, failed),
                 *(self.traffic.rules() if self.traffic is not None else [])]
        if self.step_error is not None:
            extra.append(self.step_error)
        judged = trace_rules.judge(self.topo, self.plan, self.sc, self.policy, self.target.replay,
                                   self.log.records, pcaps, agent_dropped)
        return Observed([*extra, *judged.rules], {"policy": judged.policy, "traces": judged.traces})

    @property
    def transport(self) -> str | None:
        """The transport whose rules judge the run: its traffic's, none without traffic."""
        return transport_of(self.sc)

    def lab_block(self) -> dict[str, Any]:
        """verdict.json's ``lab``: what ran (machine, backend, each node's stack and kernel; a
        deployed target's hosts and clocks), and what served the traffic."""
        return {**self.target.lab_block(self.sc),
                **(self.traffic.lab_info() if self.traffic is not None else {}), **self.context}

    def roles(self) -> dict[str, list[str]]:
        return ladder_roles(self.topo, self.plan, self.sc,
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
