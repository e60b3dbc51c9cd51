"""The TCP binding-update rules: Multipath TCP signals, their order, and data continuity.

=====================  ==========================================================================
Rule id                Passes when
=====================  ==========================================================================
mptcp.join             every MP_JOIN handshake completes (SYN, SYN/ACK, third ACK) and both HMACs
                       verify from the keys MP_CAPABLE carried; a join whose connection's keys
                       were not captured is counted as unverified, not failed
mptcp.add_addr         every ADD_ADDR carries the HMAC its sender's keys give and is echoed by the
                       other side; an echo of nothing announced fails
mptcp.prio             per MPTCP handover: the old subflow was made a backup (MP_PRIO B=1; or,
                       when the agent saw the old link lost before the switch, its address was
                       removed), the new one is active (joined without B, or MP_PRIO B=0), and
                       the other side's first new data after that (and after two round trips,
                       at least 1 ms: what it scheduled before the MP_PRIO reached it may still
                       leave on the old subflow) went over the new subflow
mptcp.remove           every REMOVE_ADDR names an address id its sender used, and each subflow on
                       that address then ends (FIN or RST)
order.mptcp            per MPTCP handover: configured (agent event) before the MP_JOIN, then join
                       established → MP_PRIO → DNS UPDATE answered → REMOVE_ADDR, and ADD_ADDR
                       before MP_PRIO (whether before or after the join is the path manager's
                       choice); absent phases are noted, not failed (the rules above judge them)
continuity.dss         per connection and side: the data-level sequence space has no hole (every
                       byte mapped on some subflow, reinjections counted) and was acknowledged to
                       its end (DATA_ACK); a hole below the receiver's DATA_ACK was delivered,
                       only not captured (a loaded tcpdump drops packets), and is counted apart
continuity.tcp         every plain TCP connection (not MPTCP, not DNS) had all its data
                       acknowledged; one that stopped with data outstanding broke, and the rule
                       says where: the last acknowledged data and the unanswered retransmissions
=====================  ==========================================================================

All are ``skip`` when the capture holds nothing they judge, so captures of SCTP (or of a real
host's TCP) are judged on what they show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from testbed.conformance.mptcp_timeline import MptcpHandover
from testbed.conformance.tcp_facts import MptcpConn, MptcpSignal, Subflow, TcpConn, TcpFacts
from testbed.conformance.verdict import Evidence, RuleResult
from testbed.conformance.verdict import evidence as _ev
from testbed.conformance.verdict import outcome as _result
from testbed.decode.mptcp import AddAddr, RemoveAddr, add_addr_hmac, join_ack_hmac, join_synack_hmac

MPTCP_RULE_IDS = ("mptcp.join", "mptcp.add_addr", "mptcp.prio", "mptcp.remove", "order.mptcp",
                  "continuity.dss", "continuity.tcp")
MPTCP_GROUP = ("mptcp.join", "mptcp.add_addr", "mptcp.prio", "mptcp.remove", "order.mptcp",
               "continuity.dss")  # what ``--rules mptcp`` selects




def _other(side: str) -> str:
    return "b" if side == "a" else "a"


# -- mptcp.join -------------------------------------------------------------------------------
def join_faults(sf: Subflow) -> list[str]:
    """What is wrong with one join's handshake (nothing: an empty list)."""
    if sf.synack is None:
        return ["refused (RST)" if sf.reset else "SYN never answered"]
    if sf.ack is None:
        return ["no third ACK" + (" (reset)" if sf.reset else "")]
    conn, side = sf.conn, sf.client_side
    if conn is None or side is None or None in (sf.nonce_client, sf.nonce_server):
        return []
    joiner, receiver = conn.key(side), conn.key(_other(side))
    out = []
    if sf.thmac_server != join_synack_hmac(receiver, joiner, sf.nonce_server or 0, sf.nonce_client or 0):
        out.append(f"SYN/ACK HMAC {sf.thmac_server.hex()} does not verify")
    if sf.hmac_client != join_ack_hmac(joiner, receiver, sf.nonce_client or 0, sf.nonce_server or 0):
        out.append(f"third ACK HMAC {sf.hmac_client.hex()} does not verify")
    return out


def mptcp_join(t: TcpFacts) -> RuleResult:
    rid = "mptcp.join"
    joins = [s for s in t.subflows.values() if s.join and s.syn is not None]
    if not joins:
        return RuleResult(rid, "skip", "no MP_JOIN in the capture")
    bad = [_ev(sf.syn or sf.first, f"join {sf.name} (id {sf.addr_id}): {'; '.join(f)}")
           for sf in joins if (f := join_faults(sf))]
    unverified = sum(1 for s in joins if s.conn is None)
    note = f"; {unverified} unverified (their MP_CAPABLE keys not captured)" if unverified else ""
    return _result(rid, f"{len(joins)} MP_JOIN handshake(s) complete, HMACs verified{note}", bad,
                   f"MP_JOIN handshakes failed{note}")


# -- mptcp.add_addr ---------------------------------------------------------------------------
def mptcp_add_addr(t: TcpFacts) -> RuleResult:
    rid = "mptcp.add_addr"
    adds = [s for s in t.signals if isinstance(s.option, AddAddr)]
    if not adds:
        return RuleResult(rid, "skip", "no ADD_ADDR in the capture")
    bad: list[Evidence] = []
    announced, unverified = 0, 0
    for s in adds:
        o = s.option
        assert isinstance(o, AddAddr)
        what = f"ADD_ADDR id {o.addr_id} {o.address}{f' port {o.port}' if o.port else ''} from {s.src[0]}"
        if o.echo:
            if not any(_announces(a, s) for a in adds if a.where.time <= s.where.time):
                bad.append(_ev(s.where, f"echo of {what[9:]} that nobody announced"))
            continue
        announced += 1
        if s.conn is None or s.side is None:
            unverified += 1
        elif add_addr_forged(s):
            bad.append(_ev(s.where, f"{what}: HMAC {o.hmac.hex()} does not verify (forged?)"))
            continue
        if not any(_announces(s, e) for e in adds if e.where.time >= s.where.time):
            bad.append(_ev(s.where, f"{what}: never echoed"))
    note = f"; {unverified} unverified (keys not captured)" if unverified else ""
    return _result(rid, f"{announced} ADD_ADDR authenticated and echoed{note}", bad,
                   f"ADD_ADDR not authenticated or not echoed{note}")


def add_addr_forged(s: MptcpSignal) -> bool:
    """An ADD_ADDR whose HMAC is not what its sender's keys give (False when they are unknown)."""
    o, conn, side = s.option, s.conn, s.side
    if not isinstance(o, AddAddr) or o.echo or conn is None or side is None:
        return False
    return o.hmac != add_addr_hmac(conn.key(side), conn.key(_other(side)), o.addr_id, o.address, o.port)


def _announces(add: MptcpSignal, echo: MptcpSignal) -> bool:
    """``echo`` repeats ``add``'s announcement back to its sender."""
    a, e = add.option, echo.option
    assert isinstance(a, AddAddr) and isinstance(e, AddAddr)
    if a.echo or not e.echo or (a.addr_id, a.address, a.port) != (e.addr_id, e.address, e.port):
        return False
    if add.conn is not None and echo.conn is not None:
        return add.conn is echo.conn and add.side != echo.side
    return {add.src[0], add.dst[0]} == {echo.src[0], echo.dst[0]}


# -- mptcp.prio -------------------------------------------------------------------------------
def mptcp_prio(hos: list[MptcpHandover]) -> RuleResult:
    rid = "mptcp.prio"
    if not hos:
        return RuleResult(rid, "skip", "no MPTCP handover (a join from a new address) in the capture")
    bad: list[Evidence] = []
    removed = 0
    for n, h in enumerate(hos, 1):
        tag = f"handover {n} to {h.address}"
        if h.prio_old is None and _old_link_gone_first(h):
            removed += 1  # MP_PRIO travels on the subflow it changes: a dead one is removed instead
        elif h.prio_old is None:
            bad.append(_ev(h.where, f"{tag}: no MP_PRIO made the old subflow a backup"))
            continue
        if h.subflow.backup and h.prio_new is None:
            bad.append(_ev(h.where, f"{tag}: joined as a backup and never made active (MP_PRIO B=0)"))
            continue
        fd = h.first_data
        if fd is not None and fd[1] is not h.subflow:
            bad.append(_ev(fd[0], f"{tag}: the first new data after MP_PRIO went over {fd[1].name}"))
    note = f" ({removed} with the old link lost first: its address removed instead)" if removed else ""
    return _result(rid, f"{len(hos)} handover(s): old subflow made backup, new one active and used{note}",
                   bad, "MP_PRIO did not move the traffic")


def _old_link_gone_first(h: MptcpHandover) -> bool:
    """The agent saw the old link lost before the new subflow was made active, and the old
    address was removed (REMOVE_ADDR): no MP_PRIO could reach the old subflow then."""
    lost, p = h.events.get("lost"), h.phases()
    active = p.get("prio_new", p.get("join_acked"))
    return lost is not None and active is not None and lost.wall <= active and h.remove is not None


# -- mptcp.remove -----------------------------------------------------------------------------
def _ids_of(conn: MptcpConn, side: str, signals: list[MptcpSignal]) -> dict[int, list[Subflow]]:
    out: dict[int, list[Subflow]] = {}
    for sf in conn.subflows:
        if not sf.join:
            out.setdefault(0, []).append(sf)
        elif sf.client_side == side and sf.addr_id is not None:
            out.setdefault(sf.addr_id, []).append(sf)
        elif sf.client_side == _other(side) and sf.server_addr_id is not None:
            out.setdefault(sf.server_addr_id, []).append(sf)
    for s in signals:
        if isinstance(s.option, AddAddr) and not s.option.echo and s.conn is conn and s.side == side:
            out.setdefault(s.option.addr_id, [])
    return out


def mptcp_remove(t: TcpFacts) -> RuleResult:
    rid = "mptcp.remove"
    removes = [s for s in t.signals if isinstance(s.option, RemoveAddr)]
    if not removes:
        return RuleResult(rid, "skip", "no REMOVE_ADDR in the capture")
    bad: list[Evidence] = []
    for s in removes:
        o = s.option
        assert isinstance(o, RemoveAddr)
        conn, side = s.conn, s.side
        if conn is None or side is None:
            continue
        ids = _ids_of(conn, side, t.signals)
        for i in o.addr_ids:
            if i not in ids:
                bad.append(_ev(s.where, f"REMOVE_ADDR id {i} from {s.src[0]}: no such address of its sender"))
                continue
            for sf in ids[i]:
                end = min((w for w in (sf.fin, sf.reset) if w is not None and w.time >= s.where.time),
                          key=lambda w: w.time, default=None)
                if end is None:
                    bad.append(_ev(s.where, f"REMOVE_ADDR id {i}: subflow {sf.name} never closed"))
    return _result(rid, f"{len(removes)} REMOVE_ADDR: each named address's subflows closed", bad,
                   "REMOVE_ADDR not followed through")


# -- order.mptcp ------------------------------------------------------------------------------
def order_mptcp(hos: list[MptcpHandover]) -> RuleResult:
    rid = "order.mptcp"
    if not hos:
        return RuleResult(rid, "skip", "no MPTCP handover in the capture")
    bad: list[Evidence] = []
    notes: list[str] = []
    for n, h in enumerate(hos, 1):
        tag = f"handover {n} to {h.address}"
        p = h.phases()
        conf = h.events.get("configured")
        if conf is not None and "join_sent" in p and conf.wall > p["join_sent"]:
            bad.append(_ev(h.where, f"{tag}: MP_JOIN sent {p['join_sent'] - conf.wall:+.3f}s before "
                                    "the address was configured"))
        prio = max((p[k] for k in ("prio_new", "prio_old") if k in p), default=None)
        steps: list[tuple[str, float | None]] = [
            ("join established", p.get("join_acked")), ("MP_PRIO", prio),
            ("DNS UPDATE answered", p.get("dns_acked")), ("REMOVE_ADDR", p.get("remove_sent")),
        ]
        seen = [(name, at) for name, at in steps if at is not None]
        missing = [name for name, at in [*steps, ("ADD_ADDR", p.get("add_addr_sent"))] if at is None]
        pairs = list(zip(seen, seen[1:], strict=False))
        if prio is not None and "add_addr_sent" in p:  # announced before it is made primary
            pairs.append((("ADD_ADDR", p["add_addr_sent"]), ("MP_PRIO", prio)))
        for (a, ta), (b, tb) in pairs:
            if tb < ta:
                bad.append(_ev(h.where, f"{tag}: {b} before {a} ({tb - ta:+.3f}s)"))
        if missing:
            notes.append(f"{tag}: no {', '.join(missing)}")
    note = ("; not judged: " + "; ".join(notes)) if notes else ""
    return _result(rid, f"{len(hos)} handover(s) in order{note}", bad, f"MPTCP handover out of order{note}")


# -- continuity -------------------------------------------------------------------------------
def continuity_dss(t: TcpFacts) -> RuleResult:
    rid = "continuity.dss"
    judged = [(c, side) for c in t.mptcp for side in ("a", "b") if c.flows[side].high is not None]
    if not judged:
        return RuleResult(rid, "skip", "no MPTCP data in the capture")
    bad: list[Evidence] = []
    parts = []
    uncaptured = 0
    for c, side in judged:
        fl, base = c.flows[side], c.idsn(side) + 1
        name = f"{c.name} side {side}"
        assert fl.high is not None
        parts.append(f"{name}: {fl.high - base} bytes, {fl.duplicate_bytes} sent again")
        acked = fl.data_ack if fl.data_ack is not None else base
        for lo, hi in sorted(fl.holes):
            if hi <= acked:  # its receiver acknowledged past it: sent, not captured (tcpdump drops)
                uncaptured += 1
                continue
            where = fl.hole_where.get(lo) or c.first
            bad.append(_ev(where, f"{name}: data bytes {lo - base}..{hi - base - 1} never mapped"))
        if fl.data_ack is None or fl.data_ack < fl.high:
            upto = "nothing" if fl.data_ack is None else f"up to byte {fl.data_ack - base}"
            where = fl.data_ack_where or c.first
            what = f"{name}: DATA_ACK {upto} of {fl.high - base}: the rest never acknowledged"
            bad.append(_ev(where, what))
    summary = "; ".join(parts[:6]) + ("; ..." if len(parts) > 6 else "")
    if uncaptured:
        summary += (f"; {uncaptured} mapping(s) missing from the capture but acknowledged by their "
                    "receiver (not captured)")
    return _result(rid, summary, bad, f"data-level stream broken; {summary}")


def tcp_break(c: TcpConn) -> list[str]:
    """How a plain TCP connection broke, per direction that left data unacknowledged."""
    out = []
    for sender, fl in c.flows.items():
        if fl.high <= fl.acked:
            continue
        who = f"{sender[0]}:{sender[1]}"
        last = fl.last_progress
        if last is None:
            out.append(f"{who}: nothing acknowledged")
            continue
        tried = fl.last_sent.time - last.time if fl.last_sent else 0.0
        how = "reset" if c.reset is not None else "no answer until the capture ended"
        out.append(f"{who} sent {fl.high} bytes, {fl.acked} acknowledged (the last ACK at "
                   f"{last.pcap}#{last.frame}); {fl.retransmissions} re-sends over {tried:.1f} s, then {how}")
    return out


def continuity_tcp(t: TcpFacts) -> RuleResult:
    rid = "continuity.tcp"
    conns = [c for c in t.plain.values() if any(fl.packets for fl in c.flows.values())]
    if not conns:
        return RuleResult(rid, "skip", "no plain TCP data in the capture")
    bad: list[Evidence] = []
    for c in conns:
        for what in tcp_break(c):
            fl = next(f for f in c.flows.values() if f.high > f.acked)
            where = fl.first_unanswered or fl.last_sent or c.first
            bad.append(_ev(where, f"{c.name} broke: {what}"))
    stalls = max((fl.longest_stall for c in conns for fl in c.flows.values()), default=0.0)
    return _result(rid, f"{len(conns)} TCP connection(s) delivered all their data (longest stall "
                        f"{stalls:.3f} s)", bad, "TCP connection broken")


def run_rules(selected: list[str], t: TcpFacts, hos: list[MptcpHandover]) -> list[RuleResult]:
    """The selected rules of this module, in ``MPTCP_RULE_IDS`` order."""
    table: dict[str, Callable[[], RuleResult]] = {
        "mptcp.join": lambda: mptcp_join(t), "mptcp.add_addr": lambda: mptcp_add_addr(t),
        "mptcp.prio": lambda: mptcp_prio(hos), "mptcp.remove": lambda: mptcp_remove(t),
        "order.mptcp": lambda: order_mptcp(hos), "continuity.dss": lambda: continuity_dss(t),
        "continuity.tcp": lambda: continuity_tcp(t),
    }
    return [table[r]() for r in selected if r in table]


__all__: list[Any] = ["MPTCP_GROUP", "MPTCP_RULE_IDS", "add_addr_forged", "join_faults", "run_rules",
                      "tcp_break"]
