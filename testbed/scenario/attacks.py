"""Attacker steps of a scenario (§4, §5, §8): an attacker node listens on its access network,
sends forged location updates and injects forged binding updates; each attack becomes a rule.

``attack.update.<form>[.<label>]`` passes when the lab refused the forgery: the server did not
answer NOERROR and the target's records, queried before and after, did not change. A forgery
that BIND accepts therefore fails its rule whatever the rcode said. ``attack.asconf.<label>``
passes when the correspondent neither acknowledged the forged ASCONF (without an error cause)
nor sent DATA to the attacker's address. Evidence cites the forged messages and their answers
in the lab's own captures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.capture.tcpdump import Capture, LinkCapture
from testbed.conformance.facts import Facts
from testbed.conformance.verdict import Evidence, RuleResult
from testbed.conformance.where import Where
from testbed.errors import TestbedError
from testbed.progress import Progress
from testbed.scenario.model import ForgeAsconf, ForgeUpdate, Impostor, Listen, Probe, RogueRouter

FORM_TEXT = {
    "unsigned": "unsigned UPDATE",
    "own-key": "UPDATE signed with the attacker's own key in the MN's name",
    "other-name": "UPDATE signed with the MN's key for another name",
    "replay": "replay of the MN's captured signed UPDATE",
}


@dataclass
class Outcome:
    """One attack as carried out: the step and what the attack program reported."""

    step: ForgeUpdate | ForgeAsconf | Probe | RogueRouter
    attacker: str  # its address
    report: dict[str, Any]


Located = tuple[Where | None, Where | None]  # a request and its answer, where captured


def _fmt(recs: dict[str, list[str]] | None) -> str:
    if not recs:
        return "?"
    return " ".join(recs.get("a", []) + recs.get("aaaa", [])) or "no records"


def judge_update(o: Outcome, where: Located = (None, None)) -> RuleResult:
    """The rule for one forged UPDATE (pure: the report and where the capture shows it)."""
    r, step = o.report, o.step
    assert isinstance(step, ForgeUpdate)
    rid = step.rule_id
    if "rcode" not in r:
        return RuleResult(rid, "skip", f"attack not carried out: {r.get('error', 'no report')}")
    desc = FORM_TEXT[step.form]
    if step.form == "replay":
        rp = r["replayed"]
        span = rp["expiration"] - r["sent"]
        desc += (f" (captured {r['age']:.1f} s earlier, signature "
                 + (f"valid {span:.0f} s more)" if span >= 0 else f"expired {-span:.0f} s before)"))
    before, after = r.get("before"), r.get("after")
    changed = before != after
    answer = r["rcode"] or f"no answer ({r.get('error', 'timeout')})"
    zone = (f"{r['target']} changed {_fmt(before)} → {_fmt(after)}" if changed
            else f"{r['target']} unchanged ({_fmt(after)})")
    accepted = r["rcode"] == "NOERROR" or changed
    msg = f"{desc} from {o.attacker}: answered {answer}; {zone}"
    evidence = []
    req, resp = where
    if req is not None:
        evidence.append(Evidence(req.pcap, req.frame, req.time, f"{desc} id {r['id']}"))
    if resp is not None:
        evidence.append(Evidence(resp.pcap, resp.frame, resp.time, f"answer {answer}"))
    if not evidence:
        evidence.append(Evidence("events.jsonl", 0, r["sent"], f"{desc} id {r['id']} (not in the captures)"))
    if accepted:
        return RuleResult(rid, "fail", "accepted: " + msg, tuple(evidence))
    return RuleResult(rid, "pass", "refused: " + msg, tuple(evidence))


ASCONF_TEXT = {
    "none": "ASCONF without AUTH",
    "wrong": "ASCONF with a made-up HMAC",
    "computed": "ASCONF with the HMAC computed from the captured INIT and INIT-ACK (empty key 0)",
}


def judge_asconf(o: Outcome, where: Located = (None, None)) -> RuleResult:
    """The rule for one injected ASCONF (pure): refused unless acknowledged without an error
    cause or followed by DATA from the correspondent to the attacker."""
    r, step = o.report, o.step
    rid = step.rule_id
    if "sent" not in r:
        return RuleResult(rid, "skip", f"attack not carried out: {r.get('error', 'no report')}")
    desc = ASCONF_TEXT[r["auth"]] + ("" if r.get("negotiated_auth") else " (the ends negotiated no AUTH)")
    ack = ("no ASCONF-ACK" if not r["acked"] else
           f"ASCONF-ACK with {', '.join(r['ack_errors'])}" if r["ack_errors"] else "ASCONF-ACK, success")
    data = int(r["data_received"])
    msg = (f"{desc}: ADD_IP + SET_PRIMARY {o.attacker} (lookup {r['lookup']}, serial {r['serial']}) "
           f"sent to {r['cn']}: {ack}; {r['heartbeats_answered']} HEARTBEAT(s) answered; {data} DATA "
           f"chunk(s) from the correspondent to the attacker")
    evidence = []
    req, resp = where
    if req is not None:
        evidence.append(Evidence(req.pcap, req.frame, req.time, f"{desc} serial {r['serial']}"))
    if resp is not None:
        evidence.append(Evidence(resp.pcap, resp.frame, resp.time, ack))
    if not evidence:
        evidence.append(Evidence("events.jsonl", 0, r["sent"], f"{desc} (not in the captures)"))
    accepted = (r["acked"] and not r["ack_errors"]) or data > 0
    if accepted:
        return RuleResult(rid, "fail", "accepted: " + msg, tuple(evidence))
    return RuleResult(rid, "pass", "refused: " + msg, tuple(evidence))


def judge_probe(o: Outcome, claims: dict[str, dict[str, Any]]) -> RuleResult:
    """The stale-DNS rule (pure): fails when an address the MN's name resolves to is answered by
    an impostor (``claims``: impostor node → what it claimed)."""
    r, rid = o.report, o.step.rule_id
    if "resolved" not in r:
        return RuleResult(rid, "skip", f"probe not carried out: {r.get('error', 'no report')}")
    who = f"{o.step.node} resolved {r['name']}: {r['rcode']}, A {' '.join(r['resolved']) or 'none'}"
    taken = {a: n for a, n in r["answered_by"].items() if n in claims}
    answers = "; ".join(f"{a} answered by {n or 'nobody'}" for a, n in r["answered_by"].items())
    ev = (Evidence("events.jsonl", 0, r["sent"], who),)
    if taken:
        how = "; ".join(f"{n} took {a} by DHCP presenting the MN's {claims[n].get('presented', '?')}"
                        for a, n in taken.items())
        return RuleResult(rid, "fail", f"reached the impostor: {who}; {answers} ({how})", ev)
    return RuleResult(rid, "pass", f"no impostor reached: {who}" + (f"; {answers}" if answers else ""), ev)


def judge_rogue_ra(o: Outcome, events: list[dict[str, Any]]) -> RuleResult:
    """The rogue-RA rule (pure): the MN bound to the rogue network if its agent reported it
    configured or an address in it was published; ``events``: the run's agent events."""
    r, step = o.report, o.step
    assert isinstance(step, RogueRouter)
    rid = step.rule_id
    if "sent" not in r:
        return RuleResult(rid, "skip", f"attack not carried out: {r.get('error', 'no report')}")
    mine = [e for e in events if e.get("event") in ("detected", "untrusted", "configured", "lost")
            and e.get("prefix") == r["prefix"] and e.get("wall", 0) >= r["sent"] - 1]
    kinds = sorted({str(e.get("event")) for e in mine})
    what = (f"{r['count']} RA(s) for {r['prefix']} from {r['router']}: the agent reported "
            f"{', '.join(kinds) or 'nothing'}; AAAA published after: {' '.join(r['aaaa_after']) or 'none'}")
    ev = tuple(Evidence("events.jsonl", 0, float(e["wall"]), f"{e['event']} {e.get('prefix')} "
                        f"{' '.join(e.get('addresses') or [])}") for e in mine[:5]) \
        or (Evidence("events.jsonl", 0, r["sent"], what),)
    if r["published"] or "configured" in kinds:
        return RuleResult(rid, "fail", "bound to the rogue network: " + what, ev)
    return RuleResult(rid, "pass", "refused the rogue network: " + what, ev)


def find_asconf(facts: Facts | None, attacker: str, serial: int) -> Located:
    """The injected ASCONF and its ACK in the captures (first copies)."""
    if facts is None:
        return None, None
    req = next((a.where for a in facts.asconfs if a.src == attacker and a.chunk.serial == serial), None)
    resp = next((k.where for k in facts.acks if k.dst == attacker and k.chunk.serial == serial), None)
    return req, resp


def find_exchange(facts: Facts | None, attacker: str, msg_id: int, sent: float) -> Located:
    """The forged request and its answer in the lab's captures (first copies)."""
    if facts is None:
        return None, None
    req = resp = None
    for d in facts.dns:
        if d.msg.id != msg_id or d.client[0] != attacker or abs(d.where.time - sent) > 5:
            continue
        if not d.msg.qr and req is None:
            req = d.where
        elif d.msg.qr and resp is None:
            resp = d.where
    return req, resp


class AttackSteps:
    """The attacker steps of one run and the rules they give, wherever they are carried out: a
    target's part gives the primitives (run a program on a node, keep one running, listen on a
    node's access interfaces, the MN's key)."""

    python = sys.executable  # the attack programs' interpreter on the nodes

    def __init__(self, topo, plan, out: Path, log, progress: Progress) -> None:
        self.topo, self.plan, self.out, self.log, self.progress = topo, plan, out, log, progress
        self.listening: dict[str, Path] = {}  # node -> the pcap it captures (on that node)
        self.outcomes: list[Outcome] = []
        self.claims: dict[str, dict[str, Any]] = {}  # impostor node → what it took

    # -- what a target gives -----------------------------------------------------------------
    def run(self, node: str, argv: list[str], timeout: float) -> Any:
        """Run ``argv`` on ``node``; what it printed (``stdout``, ``stderr``, ``returncode``)."""
        raise NotImplementedError

    def keep(self, node: str, name: str, argv: list[str]) -> None:
        """Start ``argv`` on ``node`` and keep it running until ``close``."""
        raise NotImplementedError

    def start_listening(self, node: str, ifnames: list[str]) -> Path:
        """Capture ``node``'s ``ifnames`` until ``close``; the first one's pcap (on the node)."""
        raise NotImplementedError

    def key_file(self) -> Path:
        """The MN's SIG(0) private key, as the attacker is handed it (``other-name``)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- the steps ---------------------------------------------------------------------------
    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {Listen: self.listen, ForgeUpdate: self.forge_update, ForgeAsconf: self.forge_asconf,
                Impostor: self.impostor, Probe: self.probe, RogueRouter: self.rogue_ra}

    def _access_ifaces(self, node: str) -> list[str]:
        return [i.ifname for i in self.plan.nodes[node].ifaces if i.access_router]

    def rogue_ra(self, step: RogueRouter) -> None:
        attacker = self._attacker(step.node)
        z = self.topo.dns
        self.progress(f"{step.node}: rogue RAs for {step.prefix}")
        argv = [self.python, "-m", "testbed.attacks.rogue_router",
                "--iface", self._access_ifaces(step.node)[0],
                "--prefix", step.prefix, "--count", str(step.count),
                "--server", self.plan.address_of(z.server, 4), "--name", f"{z.mobile_name}.{z.zone}"]
        self._carry_out(step, attacker, argv)

    def impostor(self, step: Impostor) -> None:
        self._attacker(step.node)
        self.progress(f"{step.node} claims the MN's address")
        cp = self.run(step.node, [self.python, "-m", "testbed.attacks.impostor", "claim",
                                  "--iface", self._access_ifaces(step.node)[0],
                                  "--capture", str(self._capture(step.node, "impostor"))], timeout=30)
        report = _report(cp)
        self.log.add({"event": "attack", "op": "impostor", "node": step.node, **report})
        if "claimed" not in report:
            raise TestbedError(f"impostor {step.node} could not take the MN's address: "
                               f"{report.get('error') or report.get('answer')}")
        self.claims[step.node] = report
        self.keep(step.node, f"{step.node}-serve",
                  [self.python, "-m", "testbed.attacks.impostor", "serve", "--name", step.node])

    def probe(self, step: Probe) -> None:
        z = self.topo.dns
        self.progress(f"{step.node} looks the MN up")
        cp = self.run(step.node, [self.python, "-m", "testbed.attacks.impostor", "probe", "--server",
                                  self.plan.address_of(z.server, 4), "--name", f"{z.mobile_name}.{z.zone}"],
                      timeout=30)
        report = _report(cp)
        self.outcomes.append(Outcome(step, "", report))
        self.log.add({"event": "attack", "rule": step.rule_id, "node": step.node, **report})

    def _attacker(self, node: str) -> str:
        if node not in self.plan.nodes:
            raise TestbedError(f"attack step: no node {node!r} in topology {self.topo.name}")
        addr = self.plan.address_of(node, 4)
        if addr is None:
            raise TestbedError(f"attack step: {node} has no IPv4 address")
        return addr

    def listen(self, step: Listen) -> None:
        self._attacker(step.node)
        if step.node in self.listening:
            return
        self.progress(f"{step.node} listens")
        self.listening[step.node] = self.start_listening(step.node, self._access_ifaces(step.node))
        self.log.step("listen", node=step.node, pcap=str(self.listening[step.node]))

    def forge_update(self, step: ForgeUpdate) -> None:
        attacker = self._attacker(step.node)
        z = self.topo.dns
        self.progress(f"{step.node}: forged UPDATE ({step.form})")
        argv = [self.python, "-m", "testbed.attacks.update_forgery",
                "--server", self.plan.address_of(z.server, 4), "--zone", z.zone,
                "--name", f"{z.mobile_name}.{z.zone}", "--form", step.form, "--address", attacker,
                "--ttl", str(z.ttl)]
        if step.form == "other-name":
            argv += ["--key", str(self.key_file()), "--target", f"{step.target}.{z.zone}"]
        if step.form == "replay":
            argv += ["--capture", str(self._capture(step.node, "forge_update replay"))]
        self._carry_out(step, attacker, argv)

    def forge_asconf(self, step: ForgeAsconf) -> None:
        from testbed.scenario.traffic import PORT

        attacker = self._attacker(step.node)
        self.progress(f"{step.node}: forged ASCONF ({step.auth})")
        argv = [self.python, "-m", "testbed.attacks.asconf_injection", "--capture",
                str(self._capture(step.node, "forge_asconf")), "--address", attacker,
                "--port", str(PORT), "--auth", step.auth, "--listen", f"{step.listen:g}"]
        self._carry_out(step, attacker, argv, timeout=step.listen + 30)

    def _capture(self, node: str, kind: str) -> Path:
        pcap = self.listening.get(node)
        if pcap is None:
            raise TestbedError(f"{kind}: {node} captured nothing; put a `listen: {{node: {node}}}` "
                               "step before it")
        return pcap

    def _carry_out(self, step: ForgeUpdate | ForgeAsconf | RogueRouter, attacker: str, argv: list[str],
                   timeout: float = 30) -> None:
        report = _report(self.run(step.node, argv, timeout))
        self.outcomes.append(Outcome(step, attacker, report))
        self.log.add({"event": "attack", "rule": step.rule_id, "node": step.node, **report})

    def rules(self, facts: Facts | None) -> list[RuleResult]:
        out = []
        for o in self.outcomes:
            if isinstance(o.step, Probe):
                out.append(judge_probe(o, self.claims))
            elif isinstance(o.step, RogueRouter):
                out.append(judge_rogue_ra(o, self.log.records))
            elif isinstance(o.step, ForgeAsconf):
                out.append(judge_asconf(o, find_asconf(facts, o.attacker, o.report.get("serial", -1))))
            else:
                where = find_exchange(facts, o.attacker, o.report.get("id", -1), o.report.get("sent", 0.0))
                out.append(judge_update(o, where))
        return out


class Attacks(AttackSteps):
    """The attacker steps by a lab's hands: its nodes' runtimes and namespaces."""

    def __init__(self, lab, out: Path, log, progress: Progress) -> None:
        super().__init__(lab.topo, lab.plan, out, log, progress)
        self.lab = lab
        self.captures: dict[str, Capture] = {}
        self.servers: list[tuple[Any, int]] = []  # (runtime, pid) of impostors answering

    def run(self, node: str, argv: list[str], timeout: float) -> Any:
        return self.lab.runtime(node).run(argv, check=False, timeout=timeout)

    def keep(self, node: str, name: str, argv: list[str]) -> None:
        rt = self.lab.runtime(node)
        self.servers.append((rt, rt.spawn(argv, log=self.out / "attacker" / f"{name}.log")))

    def start_listening(self, node: str, ifnames: list[str]) -> Path:
        ns = self.lab.state.ns(node)
        d = self.out / "attacker"
        cap = Capture(d, [LinkCapture(i, ns, i, d / f"{i}.pcap", d / f"{i}.tcpdump.log") for i in ifnames])
        cap.start()
        self.captures[node] = cap
        return cap.links[0].pcap

    def key_file(self) -> Path:
        return self.lab.wiring.sig0_key_file(self.topo.mobile.sig0_algorithm)

    def close(self) -> None:
        for rt, pid in self.servers:
            rt.stop(pid, grace=0.5)
        for cap in self.captures.values():
            cap.stop(timeout=1.0)


def _report(cp: Any) -> dict[str, Any]:
    """An attack program's one JSON line, or what went wrong."""
    try:
        return dict(json.loads(cp.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {"error": f"exit {cp.returncode}: {(cp.stderr or cp.stdout).strip()[-300:]}"}
