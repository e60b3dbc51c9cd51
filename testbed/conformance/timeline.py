"""Handovers reconstructed from the capture (and the agent's events), with phase timestamps.

A handover is keyed by the new address X: it starts with ADD_IP X (or SET_PRIMARY X if that
came first), gathers SET_PRIMARY X, the DNS UPDATE adding X (else the next UPDATE for the MN),
the DELETE_IP of the previous address, and the first new DATA the peer sends after
acknowledging SET_PRIMARY. Agent events (``link_up``, ``detected``, ``configured``, ``lost``)
are matched by address (``configured``) and time (the others).

Phases, in TraSH order (Appendix A of the draft)::

    lost, link_up, detected, configured, add_ip_sent, add_ip_acked, set_primary_acked,
    dns_sent, dns_acked, delete_ip_acked, first_data_new_path

``t0`` is the first of link_up, detected, configured, add_ip_sent present; each phase's
offset is measured from it. Budgets (``timeline.<phase>``) bound those offsets.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from testbed.conformance.exchange import (
    AsconfExchange,
    DnsTransaction,
    added_addresses,
)
from testbed.conformance.facts import DataSeen, Where
from testbed.decode.sctp import ADD_IP, DELETE_IP, SET_PRIMARY, AsconfParam

PHASES = (
    "lost",
    "link_up",
    "detected",
    "configured",
    "add_ip_sent",
    "add_ip_acked",
    "set_primary_acked",
    "dns_sent",
    "dns_acked",
    "delete_ip_acked",
    "first_data_new_path",
)
EVENT_KINDS = ("link_up", "detected", "configured", "lost")
_T0_ORDER = ("link_up", "detected", "configured", "add_ip_sent", "set_primary_acked")


@dataclass(slots=True)
class Step:
    """One ASCONF request parameter within its exchange."""

    exchange: AsconfExchange
    index: int
    param: AsconfParam

    @property
    def sent(self) -> float:
        return self.exchange.first.where.time

    @property
    def acked(self) -> float | None:
        ack = self.exchange.ack
        return ack.where.time if ack else None

    @property
    def where(self) -> Where:
        return self.exchange.first.where

    @property
    def order_key(self) -> tuple[float, float, int]:
        """Sort key for "acknowledged before": ACK time, then position within one ASCONF."""
        return (self.acked or math.inf, self.sent, self.index)


@dataclass(frozen=True, slots=True)
class AgentEvent:
    kind: str
    wall: float
    ifname: str | None
    addresses: frozenset[str]


@dataclass(slots=True)
class Handover:
    address: str
    ports: tuple[int, int]  # (sport, dport) of the ASCONF sender (the MN)
    start: float
    add: Step | None = None
    set_primary: Step | None = None
    delete: Step | None = None
    dns: DnsTransaction | None = None
    events: dict[str, AgentEvent] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def old_address(self) -> str | None:
        return self.delete.param.address if self.delete else None

    @property
    def first_data(self) -> DataSeen | None:
        if self.set_primary is None or self.set_primary.exchange.ack is None:
            return None
        return self.set_primary.exchange.ack.first_data_back

    def phases(self) -> dict[str, float]:
        p: dict[str, float] = {k: e.wall for k, e in self.events.items()}
        if self.add:
            p["add_ip_sent"] = self.add.sent
            if self.add.acked is not None:
                p["add_ip_acked"] = self.add.acked
        if self.set_primary and self.set_primary.acked is not None:
            p["set_primary_acked"] = self.set_primary.acked
        if self.dns:
            p["dns_sent"] = self.dns.request.where.time
            if self.dns.response is not None:
                p["dns_acked"] = self.dns.response.where.time
        if self.delete and self.delete.acked is not None:
            p["delete_ip_acked"] = self.delete.acked
        fd = self.first_data
        if fd is not None:
            p["first_data_new_path"] = fd.where.time
        return {k: p[k] for k in PHASES if k in p}

    @property
    def t0(self) -> float:
        p = self.phases()
        for k in _T0_ORDER:
            if k in p:
                return p[k]
        return self.start

    def offsets(self) -> dict[str, float]:
        t0 = self.t0
        return {k: v - t0 for k, v in self.phases().items()}

    def to_dict(self, index: int) -> dict[str, Any]:
        phases = self.phases()
        names = sorted(phases, key=lambda k: phases[k])  # deltas in time order
        deltas = {
            f"{a}->{b}": round(phases[b] - phases[a], 6) for a, b in zip(names, names[1:], strict=False)
        }
        return {
            "index": index,
            "address": self.address,
            "old_address": self.old_address,
            "ports": list(self.ports),
            "t0": self.t0,
            "phases": phases,
            "offsets": {k: round(v, 6) for k, v in self.offsets().items()},
            "deltas": deltas,
            "notes": list(self.notes),
        }


def _steps(exchanges: Iterable[AsconfExchange]) -> list[Step]:
    steps = [
        Step(ex, i, p)
        for ex in exchanges
        for i, p in enumerate(ex.first.chunk.params)
        if p.type in (ADD_IP, SET_PRIMARY, DELETE_IP)
    ]
    steps.sort(key=lambda s: (s.sent, s.index))
    return steps


def build_handovers(
    exchanges: list[AsconfExchange],
    updates: list[DnsTransaction],
    events: list[Mapping[str, Any]] | None = None,
) -> list[Handover]:
    """Assemble handovers; ``updates`` are the MN's UPDATE transactions in time order."""
    hos: list[Handover] = []
    for s in _steps(exchanges):
        addr = s.param.address or "?"
        ports = (s.exchange.sender[0], s.exchange.sender[1])
        same = [h for h in hos if h.ports == ports]
        if s.param.type == ADD_IP:
            h = next((h for h in reversed(same) if h.address == addr and h.add is None), None)
            if h is None:
                h = Handover(addr, ports, s.sent)
                hos.append(h)
            h.add = s
        elif s.param.type == SET_PRIMARY:
            h = next((h for h in reversed(same) if h.address == addr), None)
            if h is None or h.set_primary is not None:
                h = Handover(addr, ports, s.sent)
                hos.append(h)
            h.set_primary = s
        else:
            h = next(
                (h for h in reversed(same) if h.address != addr and h.delete is None),
                None,
            )
            if h is not None:
                h.delete = s
    hos.sort(key=lambda h: h.start)
    for tx in updates:
        t = tx.request.where.time
        adds = added_addresses(tx.msg)
        free = [h for h in hos if h.dns is None]
        by_addr = [h for h in free if h.address in adds]
        before = [h for h in (by_addr or free) if h.start <= t]
        pick = before[-1] if before else (by_addr[0] if by_addr else None)
        if pick is not None:
            pick.dns = tx
    if events:
        _attach_events(hos, [_event(e) for e in events])
    return hos


def _wall(v: Any) -> float | None:
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v).timestamp()
        except ValueError:
            return None
    return None


def _event(e: Mapping[str, Any]) -> AgentEvent | None:
    kind = str(e.get("event", ""))
    wall = _wall(e.get("wall"))
    if kind not in EVENT_KINDS or wall is None:
        return None
    addrs = set()
    for a in e.get("addresses") or ():
        try:
            addrs.add(str(ipaddress.ip_interface(str(a)).ip))
        except ValueError:
            continue
    return AgentEvent(kind, wall, e.get("ifname"), frozenset(addrs))


def _attach_events(hos: list[Handover], evs: list[AgentEvent | None]) -> None:
    """Give each handover its configured event (by address) and the latest earlier others."""
    good = sorted((e for e in evs if e is not None), key=lambda e: e.wall)
    for i, h in enumerate(hos):
        lo = hos[i - 1].start if i else -math.inf
        hi = hos[i + 1].start if i + 1 < len(hos) else math.inf
        conf = [e for e in good if e.kind == "configured" and h.address in e.addresses]
        conf = [e for e in conf if lo < e.wall < hi] or conf
        if conf:
            before = [e for e in conf if e.wall <= h.start]
            h.events["configured"] = before[-1] if before else conf[0]
        anchor = h.events["configured"].wall if "configured" in h.events else h.start
        ifname = h.events["configured"].ifname if "configured" in h.events else None
        for kind in ("link_up", "detected", "lost"):
            cands = [e for e in good if e.kind == kind and lo < e.wall <= anchor]
            same_if = [e for e in cands if ifname is not None and e.ifname == ifname]
            if same_if or cands:
                h.events[kind] = (same_if or cands)[-1]
        if not conf:
            h.notes.append(f"no 'configured' event lists {h.address}")
