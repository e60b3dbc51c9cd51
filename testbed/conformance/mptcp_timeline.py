"""MPTCP handovers reconstructed from the capture and the agent's events: the TCP binding update
of the draft's §5, as Multipath TCP carries it.

A handover is a subflow that one side of a connection joins (MP_JOIN) from an address X that
none of its open subflows uses (a first visit to a network, or a return after the subflows of
that address ended). It gathers, from that side: the ADD_ADDR announcing X and
the other side's echo; the MP_PRIO making the new subflow active (B=0) and the one making an
older subflow a backup (B=1); the DNS UPDATE adding X (else the next one for the MN); the
REMOVE_ADDR of an older address; and the other side's first new data after the later MP_PRIO.
The agent's events are matched by X as for SCTP (``agent_events``).

Phases, in the order the binding process drives them (TraSH's ladder in MPTCP's terms)::

    lost, link_up, detected, configured, join_sent, join_acked, add_addr_sent,
    add_addr_echoed, prio_new, prio_old, dns_sent, dns_acked, remove_sent, first_data_new_path

``join_acked`` is the other side's first ACK after the joiner's third ACK (the subflow is then
established at both ends). Each phase of the chain link_up → detected → configured →
join_acked → prio_new → dns_acked has its duration beside its protocol floor: the access link's
exchange, MP_JOIN's SYN → SYN/ACK, the DNS UPDATE; ADD_ADDR → echo is a floor shown too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.conformance.agent_events import AgentEvent, match_events, parse_events, window
from testbed.conformance.exchange import DnsTransaction
from testbed.conformance.facts import Facts
from testbed.conformance.floors import Floor, dns_floor, link_floors
from testbed.conformance.tcp_facts import MptcpConn, MptcpSignal, Subflow
from testbed.conformance.timeline import (
    FromLinkUp,
    assign_updates,
    chain_durations,
    handover_dict,
    mark_missing,
)
from testbed.conformance.where import Where
from testbed.decode.mptcp import AddAddr, MpPrio, RemoveAddr

MPTCP_PHASES = (
    "lost", "link_up", "detected", "configured", "join_sent", "join_acked", "add_addr_sent",
    "add_addr_echoed", "prio_new", "prio_old", "dns_sent", "dns_acked", "remove_sent",
    "first_data_new_path",
)  # fmt: skip
MPTCP_FLOORS = ("rs_ra", "dhcp", "join", "add_addr", "dns")
CHAIN = (
    ("detected", "link_up", "link"),
    ("configured", "detected", None),
    ("join_acked", "configured", "join"),
    ("prio_new", "join_acked", None),
    ("dns_acked", "prio_new", "dns"),
)


@dataclass(slots=True)
class MptcpHandover(FromLinkUp):
    conn: MptcpConn
    subflow: Subflow  # the joined one
    side: str  # the joiner's side of the connection ("a" or "b")
    address: str
    start: float  # the MP_JOIN SYN
    add_addr: MptcpSignal | None = None
    echo: MptcpSignal | None = None
    prio_new: MptcpSignal | None = None
    prio_old: MptcpSignal | None = None
    remove: MptcpSignal | None = None
    dns: DnsTransaction | None = None
    events: dict[str, AgentEvent] = field(default_factory=dict)
    floors: dict[str, Floor] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> Where:
        return self.subflow.syn or self.subflow.first

    @property
    def ports(self) -> tuple[int, int]:
        return self.subflow.client[1], self.subflow.server[1]

    @property
    def old_address(self) -> str | None:
        if self.prio_old is not None and self.prio_old.subflow is not None:
            return self.prio_old.subflow.address_of(self.side)
        old = self.removed_subflows()
        return old[0].address_of(self.side) if old else None

    def removed_subflows(self) -> list[Subflow]:
        """The joiner's older subflows whose address id the REMOVE_ADDR names."""
        if self.remove is None or not isinstance(self.remove.option, RemoveAddr):
            return []
        ids = set(self.remove.option.addr_ids)
        return [s for s in self.conn.subflows if s is not self.subflow and _local_id(s, self.side) in ids]

    @property
    def first_data(self) -> tuple[Where, Subflow] | None:
        last = max((p for p in (self.prio_new, self.prio_old) if p is not None),
                   key=lambda p: p.where.time, default=None)
        return last.first_data_after if last is not None else None

    def phases(self) -> dict[str, float]:
        p: dict[str, float] = {k: e.wall for k, e in self.events.items()}
        sf = self.subflow
        if sf.syn is not None:
            p["join_sent"] = sf.syn.time
        if sf.established is not None:
            p["join_acked"] = sf.established.time
        for name, sig in (("add_addr_sent", self.add_addr), ("add_addr_echoed", self.echo),
                          ("prio_new", self.prio_new), ("prio_old", self.prio_old),
                          ("remove_sent", self.remove)):
            if sig is not None:
                p[name] = sig.where.time
        if self.dns is not None:
            p["dns_sent"] = self.dns.request.where.time
            if self.dns.response is not None:
                p["dns_acked"] = self.dns.response.where.time
        fd = self.first_data
        if fd is not None:
            p["first_data_new_path"] = fd[0].time
        return {k: p[k] for k in MPTCP_PHASES if k in p}

    def durations(self) -> dict[str, dict[str, Any]]:
        return chain_durations(self.phases(), CHAIN, self.floors, self.address)

    def to_dict(self, index: int) -> dict[str, Any]:
        return handover_dict(self, index, MPTCP_FLOORS, transport="mptcp")


def _local_id(sf: Subflow, side: str) -> int | None:
    """The address id ``side`` uses on ``sf``: 0 on the MP_CAPABLE subflow, the joiner's id
    on a subflow it joined, the SYN/ACK's on one the other side joined."""
    if not sf.join:
        return 0
    return sf.addr_id if sf.client_side == side else sf.server_addr_id


def _from(sig: MptcpSignal, conn: MptcpConn, side: str, after: float) -> bool:
    return sig.conn is conn and sig.side == side and sig.where.time >= after


def _handover(conn: MptcpConn, sf: Subflow, signals: list[MptcpSignal], lo: float,
              hi: float) -> MptcpHandover:
    side = sf.client_side or "a"
    addr = sf.client[0]
    h = MptcpHandover(conn, sf, side, addr, (sf.syn or sf.first).time)
    other = "b" if side == "a" else "a"
    near = [s for s in signals if s.conn is conn and lo < s.where.time < hi]
    for s in near:
        o = s.option
        if isinstance(o, AddAddr) and o.address == addr:
            if not o.echo and s.side == side and h.add_addr is None:
                h.add_addr = s
            elif o.echo and s.side == other and h.echo is None and h.add_addr is not None:
                h.echo = s
        elif isinstance(o, MpPrio) and _from(s, conn, side, h.start):
            if s.subflow is sf and not o.backup and h.prio_new is None:
                h.prio_new = s
            elif s.subflow is not sf and o.backup and h.prio_old is None:
                h.prio_old = s
        elif isinstance(o, RemoveAddr) and _from(s, conn, side, h.start) and h.remove is None \
                and _local_id(sf, side) not in o.addr_ids:
            h.remove = s
    return h


def _ended(sf: Subflow) -> float | None:
    ends = [w.time for w in (sf.fin, sf.reset) if w is not None]
    return min(ends) if ends else None


def build_mptcp_handovers(facts: Facts, updates: list[DnsTransaction],
                          events: Iterable[Mapping[str, Any]] | None = None) -> list[MptcpHandover]:
    """Every join from an address its side was not using at that moment (no open subflow from
    it: a first visit, or a return after that address's subflows ended), as a handover."""
    hos: list[MptcpHandover] = []
    for conn in facts.tcp.mptcp:
        subflows = sorted(conn.subflows, key=lambda s: s.first.time)
        joins = [s for s in subflows if s.join and s.client_side is not None]
        for i, sf in enumerate(joins):
            side, addr, at = sf.client_side or "a", sf.client[0], sf.first.time
            in_use = [s for s in subflows if s is not sf and s.first.time < at and s.address_of(side) == addr
                      and ((end := _ended(s)) is None or end > at)]
            if in_use:
                continue
            lo = joins[i - 1].first.time if i else float("-inf")
            hi = joins[i + 1].first.time if i + 1 < len(joins) else float("inf")
            hos.append(_handover(conn, sf, facts.tcp.signals, lo, hi))
    hos.sort(key=lambda h: h.start)
    assign_updates(hos, updates)
    evs = parse_events(events) if events is not None else None
    starts = [h.start for h in hos]
    for i, h in enumerate(hos):
        lo, hi = window(starts, i)
        h.floors = {**link_floors(facts, h.address, lo, h.start, hi), **_floors(h, facts)}
        if evs is not None:
            h.events = match_events(evs, h.address, h.old_address, h.start, lo, hi)
        mark_missing(h, given=evs is not None)
    return hos


def _floors(h: MptcpHandover, facts: Facts) -> dict[str, Floor]:
    out: dict[str, Floor] = {}
    sf = h.subflow
    if sf.syn is not None and sf.synack is not None:
        out["join"] = Floor("MP_JOIN SYN → SYN/ACK", sf.syn, facts.seen_at(sf.synack, sf.syn.pcap))
    if h.add_addr is not None and h.echo is not None:
        sent = h.add_addr.where
        out["add_addr"] = Floor("ADD_ADDR → echo", sent, facts.seen_at(h.echo.where, sent.pcap))
    dns = dns_floor(h.dns, facts)
    if dns is not None:
        out["dns"] = dns
    return out
