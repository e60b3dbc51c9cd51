"""The Appendix-A conformance rules. Each rule judges the extracted facts and returns a result.

==========================  =========================================================================
Rule id                     Passes when
==========================  =========================================================================
asconf.auth                 every ASCONF and ASCONF-ACK is preceded by an AUTH chunk in its packet
                            (RFC 5061 §4.2) whose HMAC verifies (RFC 4895 §6.3) under the key built
                            from the RANDOM, CHUNKS and HMAC-ALGO of INIT and INIT-ACK and the
                            endpoint-pair shared key (key id 0: empty unless given); an HMAC whose
                            handshake was not captured is counted as not verifiable
asconf.serial               per sender, ASCONF serials start at the sender's initial TSN (when its
                            INIT/INIT-ACK was captured) and grow by one; a repeat is a retransmission
asconf.ack                  every ASCONF serial is answered by an ASCONF-ACK with the same serial
                            that reaches its destination: a capture point where that address's own
                            control packets were first seen (an ACK lost on the way back, at a NAT
                            or a router without a route, answers nothing); never more ACKs than
                            transmissions, and no ACK answers an unsent serial
asconf.success              every acknowledged parameter succeeded (implicitly, as Linux answers, or
                            with SUCCESS_INDICATION); otherwise the error cause is reported
dns.signed                  every UPDATE for the MN's name carries SIG(0) or TSIG
dns.answered                every UPDATE for the MN's name is answered, with NOERROR
order.trash                 per handover: configured (agent event) before ADD_IP is sent, then
                            ADD_IP acked → SET_PRIMARY acked → DNS UPDATE answered → DELETE_IP acked;
                            a handover without SET_PRIMARY fails (ADD_IP and DELETE_IP alone, as
                            Linux's auto_asconf sends them, leave the peer on the old path); other
                            phases absent from the capture are noted, not failed (other rules cover
                            missing answers); with no DNS in the capture the DNS step is skipped
continuity.association      every INIT in the capture is answered by an INIT-ACK and no association is
                            aborted: an INIT refused with ABORT (a peer that will not run ASCONF without
                            AUTH), a lost INIT or a later ABORT (a peer that finds a packet from an
                            address the association lacks, e.g. one rewritten by a NAT) fails it,
                            with the ABORT's error causes
continuity.tsn              in each direction every DATA TSN gap is later filled; duplicates counted
continuity.new_path         after SET_PRIMARY X is acknowledged, the peer's first new DATA goes to X;
                            while X is unconfirmed (its HEARTBEAT-ACK not yet back) DATA may keep the
                            old path (RFC 9260 §5.4), and the first after the confirmation is judged;
                            a handover whose one probe of X went unanswered until the next move (a
                            lost HEARTBEAT; the next comes an RTO later) is not judged, and counted;
                            probes that keep going unanswered (X behind a NAT) are no excuse
source.left_network         the MN never sends from an address of a network it has left (after the
                            agent's ``lost`` event for it, until it holds it again): such packets
                            are what ingress filtering (BCP 38) drops; skipped without events
timeline.<phase>            the phase happened within its budget (seconds after the handover's t0, the
                            new link's link_up); skipped without agent events
==========================  =========================================================================

The TCP rules (``mptcp.*``, ``order.mptcp``, ``continuity.dss``, ``continuity.tcp``) are in
``mptcp_rules``, the QUIC ones (``quic.*``, ``continuity.quic``, ``order.quic``) in ``quic_rules``.
Groups (``--rules``): asconf, dns, order, continuity, source, timeline, mptcp (``mptcp.*`` with
``order.mptcp`` and ``continuity.dss``) and quic (``quic.*`` with ``continuity.quic`` and
``order.quic``); a full rule id also selects.
A rule whose input is absent from the capture is ``skip``: a capture with only SCTP is judged on
the SCTP rules, one without handovers skips the order and timeline rules.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.conformance.exchange import (
    AsconfExchange,
    DnsTransaction,
    norm_name,
    update_owners,
)
from testbed.conformance.facts import AckSeen, AsconfSeen, Facts
from testbed.conformance.mptcp_rules import MPTCP_GROUP, MPTCP_RULE_IDS
from testbed.conformance.mptcp_timeline import MPTCP_PHASES, MptcpHandover
from testbed.conformance.quic_rules import QUIC_GROUP, QUIC_RULE_IDS
from testbed.conformance.quic_timeline import QUIC_PHASES, QuicHandover
from testbed.conformance.timeline import PHASES, Handover
from testbed.conformance.verdict import Evidence, RuleResult
from testbed.conformance.verdict import evidence as _ev
from testbed.conformance.verdict import outcome as _result
from testbed.conformance.where import Where
from testbed.decode import sctp_auth
from testbed.decode.sctp import ADD_IP, PARAM_NAMES

GROUPS = ("asconf", "dns", "order", "continuity", "source", "timeline", "mptcp", "quic")
SCTP_RULE_IDS = (
    "asconf.auth",
    "asconf.serial",
    "asconf.ack",
    "asconf.success",
    "dns.signed",
    "dns.answered",
    "order.trash",
    "continuity.association",
    "continuity.tsn",
    "continuity.new_path",
    "source.left_network",
)
# the TCP ones live in ``mptcp_rules``, the QUIC ones in ``quic_rules``
RULE_IDS = (*SCTP_RULE_IDS, *MPTCP_RULE_IDS, *QUIC_RULE_IDS)
ALL_PHASES = tuple(dict.fromkeys((*PHASES, *MPTCP_PHASES, *QUIC_PHASES)))  # every transport's timeline
# the rules that can judge each transport's run: location updates are DNS, and the MN's
# source addresses are watched, whatever the transport
_ANY_TRANSPORT = ("dns.signed", "dns.answered", "source.left_network")
TRANSPORT_RULES = {
    "sctp": SCTP_RULE_IDS,
    "mptcp": (*_ANY_TRANSPORT, *MPTCP_GROUP),
    "tcp": (*_ANY_TRANSPORT, "continuity.tcp"),
    "quic": (*_ANY_TRANSPORT, *QUIC_GROUP),
}


@dataclass(slots=True)
class Context:
    facts: Facts
    exchanges: list[AsconfExchange]
    orphan_acks: list[AckSeen]
    updates: list[DnsTransaction]  # the MN's UPDATE transactions (all, without --mn-name)
    handovers: list[Handover]
    mn_name: str | None = None
    budgets: dict[str, float] = field(default_factory=dict)
    events_given: bool = False
    # endpoint-pair shared keys (RFC 4895 §6.1) by key id; id 0 is empty unless given here
    auth_keys: dict[int, bytes] = field(default_factory=dict)
    mptcp_handovers: list[MptcpHandover] = field(default_factory=list)
    left_addresses: int = 0  # addresses of networks the MN left, per the agent's events
    quic_handovers: list[QuicHandover] = field(default_factory=list)

    @property
    def all_handovers(self) -> list[Handover | MptcpHandover | QuicHandover]:
        return sorted([*self.handovers, *self.mptcp_handovers, *self.quic_handovers], key=lambda h: h.start)



def _skip(rid: str, why: str) -> RuleResult:
    return RuleResult(rid, "skip", why)



def _describe(a: AsconfSeen) -> str:
    params = ", ".join(f"{p.name} {p.address}" for p in a.chunk.params) or "no parameters"
    return f"ASCONF serial {a.chunk.serial} {a.src} → {a.dst} ({params})"


# -- asconf -----------------------------------------------------------------------------------
def _hmac_fault(c: Context, x: AsconfSeen | AckSeen) -> str | None:
    """Why the AUTH chunk in front of ``x`` does not authenticate it (RFC 4895 §6.3), "" when
    it cannot be judged (handshake not captured, key not given), None when it verifies."""
    auth = x.auth
    assert auth is not None
    vec = c.facts.auth_vectors.get(x.key)
    if vec is None or x.auth_covered is None:
        return ""
    if vec.init is None or vec.init_ack is None:
        side = "INIT" if vec.init is None else "INIT-ACK"
        return f"AUTH chunk on an association whose {side} offered no AUTH (RANDOM, HMAC-ALGO)"
    shared = c.auth_keys.get(auth.shared_key_id, b"" if auth.shared_key_id == 0 else None)
    if shared is None:
        return ""
    key = sctp_auth.association_key(vec.init, vec.init_ack, shared)
    mac = sctp_auth.compute(auth.hmac_id, key, x.auth_covered)
    if mac is None:
        return f"unknown HMAC id {auth.hmac_id}"
    if not hmac.compare_digest(mac, auth.hmac):
        given = "the configured" if auth.shared_key_id in c.auth_keys else "the empty"
        return (f"HMAC does not verify (key id {auth.shared_key_id}, {given} endpoint-pair key, "
                f"{auth.hmac_name})")
    return None


def asconf_auth(c: Context) -> RuleResult:
    rid = "asconf.auth"
    f = c.facts
    if not f.asconfs and not f.acks:
        return _skip(rid, "no ASCONF in the capture")
    bad: list[Evidence] = []
    verified = unjudged = 0
    for x in (*f.asconfs, *f.acks):
        what = (_describe(x) if isinstance(x, AsconfSeen)
                else f"ASCONF-ACK serial {x.chunk.serial} {x.src} → {x.dst}")
        if x.auth is None:
            bad.append(_ev(x.where, f"{what} without AUTH"))
            continue
        fault = _hmac_fault(c, x)
        if fault:
            bad.append(_ev(x.where, f"{what}: {fault}"))
        elif fault is None:
            verified += 1
        else:
            unjudged += 1
    bad.sort(key=lambda e: (e.time, e.frame))
    algs = Counter(
        f"{x.auth.hmac_name} key {x.auth.shared_key_id}" for x in (*f.asconfs, *f.acks) if x.auth is not None
    )
    seen = ", ".join(f"{k} ×{n}" for k, n in algs.items()) or "none"
    hmacs = f"; {verified} HMAC(s) verified"
    if unjudged:
        hmacs += f", {unjudged} not verifiable (INIT/INIT-ACK not captured or key id not given)"
    ok = f"{len(f.asconfs)} ASCONF and {len(f.acks)} ASCONF-ACK authenticated (HMAC: {seen}){hmacs}"
    return _result(rid, ok, bad, f"ASCONF chunks not authenticated; HMAC seen: {seen}{hmacs}")


def asconf_serial(c: Context) -> RuleResult:
    rid = "asconf.serial"
    if not c.facts.asconfs:
        return _skip(rid, "no ASCONF in the capture")
    bad: list[Evidence] = []
    last: dict[tuple[int, int, int], int] = {}
    retrans = 0
    checked_initial = 0
    for a in c.facts.asconfs:
        s = a.chunk.serial
        prev = last.get(a.key)
        if prev is None:
            itsn = c.facts.sender_itsn.get(a.key)
            if itsn is not None:
                checked_initial += 1
                if s != itsn:
                    bad.append(_ev(a.where, f"first serial {s} is not the sender's initial TSN {itsn}"))
        elif s == prev:
            retrans += 1
            continue
        elif s != (prev + 1) & 0xFFFFFFFF:
            bad.append(_ev(a.where, f"serial {s} follows {prev} (expected {(prev + 1) & 0xFFFFFFFF})"))
        last[a.key] = s
    ok = (
        f"{len(c.facts.asconfs)} ASCONF from {len(last)} sender(s) in sequence"
        f" ({checked_initial} start checked against the initial TSN, {retrans} retransmissions)"
    )
    return _result(rid, ok, bad, "ASCONF serial numbers out of sequence")


def asconf_ack(c: Context) -> RuleResult:
    rid = "asconf.ack"
    if not c.exchanges and not c.orphan_acks:
        return _skip(rid, "no ASCONF in the capture")
    bad: list[Evidence] = []
    for ex in c.exchanges:
        if not ex.acks:
            bad.append(_ev(ex.first.where, f"{_describe(ex.first)}: no ASCONF-ACK"))
        elif not any(_delivered(c.facts, k) for k in ex.acks):
            k = ex.acks[0]
            near = ", ".join(sorted(c.facts.origins.get(k.dst, ()))) or "?"
            bad.append(_ev(k.where, f"ASCONF-ACK serial {ex.serial} {k.src} → {k.dst} never reached "
                                    f"{near}, next to {k.dst}: lost on the way back"))
        elif len(ex.acks) > len(ex.sends):
            bad.append(
                _ev(
                    ex.acks[-1].where,
                    f"serial {ex.serial}: {len(ex.acks)} ASCONF-ACKs for {len(ex.sends)} ASCONF",
                )
            )
    for k in c.orphan_acks:
        bad.append(_ev(k.where, f"ASCONF-ACK serial {k.chunk.serial} answers no captured ASCONF"))
    ok = f"{len(c.exchanges)} ASCONF serial(s), each acknowledged"
    return _result(rid, ok, bad, "ASCONF without a matching ASCONF-ACK")


def _delivered(f: Facts, ack: AckSeen) -> bool:
    """Was the ACK captured next to its destination (where that address's packets start)?"""
    near = f.origins.get(ack.dst) or {ack.where.pcap}
    return any(f.seen_at(ack.where, pcap).pcap == pcap for pcap in near)


def asconf_success(c: Context) -> RuleResult:
    rid = "asconf.success"
    acked = [ex for ex in c.exchanges if ex.ack is not None]
    if not acked:
        return _skip(rid, "no acknowledged ASCONF in the capture")
    bad: list[Evidence] = []
    n = 0
    for ex in acked:
        ack = ex.ack
        assert ack is not None
        for _i, p, reason in ex.outcomes():
            n += 1
            if reason:
                what = f"serial {ex.serial} {p.name} {p.address} (correlation {p.correlation_id}): {reason}"
                bad.append(_ev(ack.where, what))
    return _result(rid, f"{n} parameter(s) acknowledged as success", bad, "ASCONF parameter refused")


# -- dns --------------------------------------------------------------------------------------
def _no_updates(rid: str, c: Context) -> RuleResult:
    who = f" for {c.mn_name}" if c.mn_name else ""
    return _skip(rid, f"no DNS UPDATE{who} in the capture")


def dns_signed(c: Context) -> RuleResult:
    rid = "dns.signed"
    if not c.updates:
        return _no_updates(rid, c)
    bad: list[Evidence] = []
    kinds: Counter[str] = Counter()
    for tx in c.updates:
        m = tx.msg
        if m.sig0 is not None:
            kinds[f"SIG(0) alg {m.sig0.algorithm} key tag {m.sig0.key_tag} by {m.sig0.signer}"] += 1
        elif m.tsig is not None:
            kinds[f"TSIG {m.tsig.algorithm}"] += 1
        else:
            owners = ", ".join(sorted(update_owners(m))) or "?"
            bad.append(_ev(tx.request.where, f"unsigned UPDATE id {m.id} for {owners}"))
    seen = "; ".join(f"{k} ×{n}" for k, n in kinds.items())
    return _result(rid, f"{len(c.updates)} UPDATE(s) signed: {seen}", bad, "unsigned DNS UPDATE")


def dns_answered(c: Context) -> RuleResult:
    rid = "dns.answered"
    if not c.updates:
        return _no_updates(rid, c)
    bad: list[Evidence] = []
    for tx in c.updates:
        if tx.response is None:
            what = f"UPDATE id {tx.msg.id} to {tx.request.server[0]} never answered"
            bad.append(_ev(tx.request.where, what))
        elif tx.response.msg.rcode != 0:
            r = tx.response.msg
            tsig_err = f", TSIG error {r.tsig.error}" if r.tsig and r.tsig.error else ""
            what = f"UPDATE id {tx.msg.id} answered {r.rcode_name}{tsig_err}"
            bad.append(_ev(tx.response.where, what))
    ok = f"{len(c.updates)} UPDATE(s) answered NOERROR"
    return _result(rid, ok, bad, "DNS UPDATE not answered with NOERROR")


# -- order ------------------------------------------------------------------------------------
def order_trash(c: Context) -> RuleResult:
    rid = "order.trash"
    if not c.handovers:
        return _skip(rid, "no handover (ADD_IP/SET_PRIMARY) in the capture")
    dns_present = bool(c.facts.dns)
    bad: list[Evidence] = []
    notes: list[str] = []
    for n, h in enumerate(c.handovers, 1):
        tag = f"handover {n} to {h.address}"
        conf = h.events.get("configured")
        if conf is not None and h.add is not None and conf.wall > h.add.sent:
            what = f"{tag}: ADD_IP sent {h.add.sent - conf.wall:+.3f}s before address configured"
            bad.append(_ev(h.add.where, what))
        # (name, key, where) of each acknowledged phase, in the required order
        seq: list[tuple[str, tuple[float, float, int], Where]] = []
        missing: list[str] = []
        if h.set_primary is None:  # Appendix A: the peer's primary path never moves
            first = h.add or h.delete
            w = first.where if first is not None else Where("?", 0, h.start)
            seen = " and ".join(n for n, s in (("ADD_IP", h.add), ("DELETE_IP", h.delete)) if s)
            bad.append(_ev(w, f"{tag}: {seen or 'handover'} without SET_PRIMARY: the peer keeps "
                              "sending to the old primary address"))
        for name, step in (("ADD_IP", h.add), ("SET_PRIMARY", h.set_primary)):
            if step is None or step.acked is None:
                if step is not None or name != "SET_PRIMARY":
                    missing.append(f"{name} {'unacknowledged' if step else 'absent'}")
            else:
                assert step.exchange.ack is not None
                seq.append((f"{name} acked", step.order_key, step.exchange.ack.where))
        if h.dns is not None and h.dns.response is not None:
            r = h.dns.response
            seq.append(("DNS UPDATE answered", (r.where.time, r.where.time, 0), r.where))
        elif dns_present:
            missing.append("DNS UPDATE " + ("unanswered" if h.dns else "absent"))
        deletes = h.deletes
        if not deletes:
            missing.append("DELETE_IP absent")
        for step in sorted(deletes, key=lambda d: d.order_key):  # one per family of the old network
            if step.acked is None:
                missing.append(f"DELETE_IP {step.param.address} unacknowledged")
            else:
                assert step.exchange.ack is not None
                seq.append((f"DELETE_IP {step.param.address} acked", step.order_key,
                            step.exchange.ack.where))
        missing += [f"ADD_IP {a.param.address} unacknowledged" for a in h.also
                    if a.param.type == ADD_IP and a.acked is None]
        for (a, ka, _wa), (b, kb, wb) in zip(seq, seq[1:], strict=False):
            if kb < ka:
                bad.append(_ev(wb, f"{tag}: {b} before {a}"))
        if missing:
            notes.append(f"{tag}: " + ", ".join(missing))
    note = ("; not judged: " + "; ".join(notes)) if notes else ""
    if not dns_present:
        note += "; no DNS in the capture: DNS step skipped"
    ok = f"{len(c.handovers)} handover(s) in TraSH order{note}"
    return _result(rid, ok, bad, f"handover steps out of TraSH order{note}")


# -- continuity -------------------------------------------------------------------------------
def continuity_association(c: Context) -> RuleResult:
    rid = "continuity.association"
    f = c.facts
    if not f.inits and not f.aborts:
        return _skip(rid, "no association set-up (INIT) or ABORT in the capture")
    bad: list[Evidence] = []
    refused: set[tuple[int, int, int]] = set()
    for a in f.aborts:
        causes = ", ".join(a.causes) or "no error cause"
        if a.refused is not None:
            refused.add(a.refused)
            init = f.inits[a.refused]
            what = f"INIT {init.src} → {init.dst} refused: ABORT from {a.src} ({causes})"
        else:
            # the T bit: the sender reflected the tag it got, knowing no such association
            tbit = ", T bit: tag reflected" if a.chunk.flags & 1 else ""
            what = (f"association aborted: ABORT {a.src} → {a.dst} port {a.key[0]} → {a.key[1]} "
                    f"({causes}{tbit})")
        bad.append(_ev(a.where, what))
    for key, init in f.inits.items():
        if key not in f.answered_inits and key not in refused:
            bad.append(_ev(init.where, f"INIT {init.src} → {init.dst} never answered by an INIT-ACK"))
    n = len(f.answered_inits & f.inits.keys())
    return _result(rid, f"{n} association(s) set up, none aborted", bad,
                   "association refused or aborted")


def continuity_tsn(c: Context) -> RuleResult:
    rid = "continuity.tsn"
    flows = c.facts.flows
    if not flows:
        return _skip(rid, "no SCTP DATA in the capture")
    bad: list[Evidence] = []
    parts = []
    for (sport, dport, vtag), fl in flows.items():
        name = f"{fl.src}:{sport} → {fl.dst}:{dport} (tag {vtag:#x})"
        parts.append(f"{name}: {fl.chunks} DATA, {fl.duplicates} dup, {fl.filled} gaps filled")
        if fl.missing:
            miss = sorted(fl.missing)
            runs: list[tuple[int, int]] = []
            for t in miss:
                if runs and runs[-1][1] == t - 1:
                    runs[-1] = (runs[-1][0], t)
                else:
                    runs.append((t, t))
            for lo, hi in runs:
                where = fl.gap_where.get(lo) or next(
                    (w for s, w in sorted(fl.gap_where.items()) if s <= lo), Where("?", 0, 0.0)
                )
                what = f"{name}: TSN {lo & 0xFFFFFFFF}" + (f"..{hi & 0xFFFFFFFF}" if hi > lo else "")
                bad.append(_ev(where, what + " never seen"))
        for lo, hi, where in fl.huge_gaps:
            bad.append(_ev(where, f"{name}: jump over {hi - lo + 1} TSNs"))
    summary = "; ".join(parts[:8]) + ("; ..." if len(parts) > 8 else "")
    return _result(rid, summary, bad, f"DATA TSN gaps never filled; {summary}")


def continuity_new_path(c: Context) -> RuleResult:
    rid = "continuity.new_path"
    judged = waited = unconfirmed = 0
    bad: list[Evidence] = []
    for n, h in enumerate(c.handovers, 1):
        waited += h.confirmed is not None
        unconfirmed += h.unconfirmed
        sp = h.set_primary
        if sp is None or sp.acked is None:
            continue
        if any(i == sp.index and r for i, _p, r in sp.exchange.outcomes()):
            continue  # refused: asconf.success reports it
        fd = h.first_data
        if fd is None:
            continue
        judged += 1
        if fd.dst != h.address:
            what = f"handover {n}: first new DATA (TSN {fd.tsn}) went to {fd.dst}, not {h.address}"
            bad.append(_ev(fd.where, what))
    unjudged = (f"{unconfirmed} handover(s) not judged: the peer's one HEARTBEAT to the new "
                "address went unanswered before the next move, so it stayed unconfirmed (RFC 9260 §5.4)")
    if not judged:
        none = "no DATA toward the MN after an acknowledged SET_PRIMARY"
        return _skip(rid, unjudged if unconfirmed else none)
    ok = f"{judged} handover(s): first new DATA after SET_PRIMARY used the new address"
    if waited:
        ok += f" ({waited} once its path was confirmed by HEARTBEAT-ACK)"
    if unconfirmed:
        ok += f"; {unjudged}"
    return _result(rid, ok, bad, "DATA kept using the old path after SET_PRIMARY")


# -- source -----------------------------------------------------------------------------------
def source_left_network(c: Context) -> RuleResult:
    rid = "source.left_network"
    if not c.events_given:
        return _skip(rid, "agent events not given: when the MN left a network is unknown")
    if not c.left_addresses:
        return _skip(rid, "the MN left no network (no 'lost' event with addresses)")
    bad = [_ev(x.where, f"sent from {x.address} {x.where.time - x.lost:.3f}s after the MN lost it "
                        "(its network was left)") for x in c.facts.left_sources]
    ok = f"{c.left_addresses} address(es) of networks left, none used as a source afterwards"
    return _result(rid, ok, bad, "the MN sent from an address of a network it had left")


# -- timeline ---------------------------------------------------------------------------------
def timeline_budgets(c: Context) -> list[RuleResult]:
    out = []
    hos = c.all_handovers
    for phase, budget in c.budgets.items():
        rid = f"timeline.{phase}"
        if phase not in ALL_PHASES:
            known = ", ".join(ALL_PHASES)
            out.append(RuleResult(rid, "fail", f"unknown phase {phase!r}; known: {known}"))
            continue
        if not hos:
            out.append(_skip(rid, "no handover in the capture"))
            continue
        if not c.events_given:
            out.append(_skip(rid, "agent events not given: t0 (the new link's link_up) unknown"))
            continue
        bad = []
        worst = 0.0
        for n, h in enumerate(hos, 1):
            offs = h.offsets()
            if h.t0 is None:
                bad.append(_ev(h.where, f"handover {n}: no link_up event for the new link, t0 unknown"))
            elif phase not in offs:
                bad.append(_ev(h.where, f"handover {n}: phase {phase} never reached"))
            else:
                worst = max(worst, offs[phase])
                if offs[phase] > budget:
                    what = f"handover {n}: {phase} at +{offs[phase]:.3f}s > budget {budget:.3f}s"
                    bad.append(_ev(h.where, what))
        ok = f"{len(hos)} handover(s), worst {phase} at +{worst:.3f}s ≤ {budget:.3f}s"
        out.append(_result(rid, ok, bad, f"{phase} over budget {budget:.3f}s"))
    return out


RULES: dict[str, Callable[[Context], RuleResult]] = {
    "asconf.auth": asconf_auth,
    "asconf.serial": asconf_serial,
    "asconf.ack": asconf_ack,
    "asconf.success": asconf_success,
    "dns.signed": dns_signed,
    "dns.answered": dns_answered,
    "order.trash": order_trash,
    "continuity.association": continuity_association,
    "continuity.tsn": continuity_tsn,
    "continuity.new_path": continuity_new_path,
    "source.left_network": source_left_network,
}


def mn_updates(txs: list[DnsTransaction], mn_name: str | None) -> list[DnsTransaction]:
    """UPDATEs touching the MN's name (all UPDATEs when no name is given)."""
    if not mn_name:
        return txs
    name = norm_name(mn_name)
    return [tx for tx in txs if name in update_owners(tx.msg)]


__all__ = ["ALL_PHASES", "GROUPS", "PARAM_NAMES", "RULES", "RULE_IDS", "Context", "mn_updates",
           "timeline_budgets"]
