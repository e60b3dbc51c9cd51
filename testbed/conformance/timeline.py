"""Handovers reconstructed from the capture and the agent's events, with phase timestamps,
durations and the protocol floors under them.

A handover is keyed by the new address X: it starts with ADD_IP X (or SET_PRIMARY X if that
came first), gathers SET_PRIMARY X, the DNS UPDATE adding X (else the next UPDATE for the MN),
the DELETE_IP of the previous address, and the first new DATA the peer sends after
acknowledging SET_PRIMARY. In a dual-stack association one move adds an address of each
family but makes only one primary: an ADD_IP of the other family with no SET_PRIMARY of its
own, sent before the handover deleted anything, belongs to that handover (``also``), as do
the DELETE_IPs of the old addresses of both families. Agent events (``link_up``,
``detected``, ``configured``, ``lost``) are those of the interface that came up with X
(``testbed.conformance.agent_events``).

Phases, in TraSH order (Appendix A of the draft)::

    lost, link_up, detected, configured, add_ip_sent, add_ip_acked, set_primary_acked,
    dns_sent, dns_acked, delete_ip_acked, first_data_new_path

``t0`` is the new link's ``link_up``; each phase's offset is measured from it and budgets
(``timeline.<phase>``) bound those offsets. Without that event t0 is unknown (``None``), the
missing phases are listed and a note says why; no later phase stands in for it. Each phase of
the chain link_up → detected → configured → add_ip_acked → set_primary_acked → dns_acked also
gets its duration from the previous one, beside the protocol floor measured for it
(``testbed.conformance.floors``).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.conformance.agent_events import (
    EVENT_KINDS,
    AgentEvent,
    match_events,
    parse_events,
    window,
)
from testbed.conformance.exchange import (
    AsconfExchange,
    DnsTransaction,
    added_addresses,
)
from testbed.conformance.facts import DataSeen, Facts, PathConfirmed
from testbed.conformance.floors import FLOORS, Floor, asconf_floor, dns_floor, link_floors
from testbed.conformance.where import Where
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
# (phase, the phase its duration runs from, the floor bounding it); "link" is the new link's
# own exchange: DHCP for an IPv4 address, RS → RA (or DHCPv6, where it gave it) for an IPv6 one
CHAIN = (
    ("detected", "link_up", "link"),
    ("configured", "detected", None),
    ("add_ip_acked", "configured", "add_ip"),
    ("set_primary_acked", "add_ip_acked", "set_primary"),
    ("dns_acked", "set_primary_acked", "dns"),
)


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


class FromLinkUp:
    """A handover's phases as seconds after its t0, the new link's ``link_up`` (any transport:
    the subclass gives ``events`` and ``phases()``)."""

    __slots__ = ()
    events: dict[str, AgentEvent]

    def phases(self) -> dict[str, float]:
        raise NotImplementedError

    @property
    def t0(self) -> float | None:
        """The new link's ``link_up``; None when the agent's events do not show it."""
        up = self.events.get("link_up")
        return up.wall if up is not None else None

    def offsets(self) -> dict[str, float]:
        t0 = self.t0
        if t0 is None:
            return {}
        return {k: v - t0 for k, v in self.phases().items()}


@dataclass(slots=True)
class Handover(FromLinkUp):
    address: str
    ports: tuple[int, int]  # (sport, dport) of the ASCONF sender (the MN)
    start: float
    add: Step | None = None
    set_primary: Step | None = None
    delete: Step | None = None
    # the same move's ADD_IP/DELETE_IP of the other family (a dual-stack association)
    also: list[Step] = field(default_factory=list)
    dns: DnsTransaction | None = None
    events: dict[str, AgentEvent] = field(default_factory=dict)
    floors: dict[str, Floor] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # agent-event phases not found
    notes: list[str] = field(default_factory=list)

    @property
    def old_address(self) -> str | None:
        return self.delete.param.address if self.delete else None

    # the new address's path confirmation, when the peer's first DATA after SET_PRIMARY was
    # acknowledged left before it (to a confirmed address, as RFC 9260 §5.4 requires)
    confirmed: PathConfirmed | None = None
    # the peer's one probe of the new address went unanswered before the next move (a lost
    # HEARTBEAT on a lossy link): it never became a path the peer may send DATA on
    unconfirmed: bool = False

    @property
    def adds(self) -> list[Step]:
        return [s for s in (self.add, *self.also) if s is not None and s.param.type == ADD_IP]

    @property
    def deletes(self) -> list[Step]:
        return [s for s in (self.delete, *self.also) if s is not None and s.param.type == DELETE_IP]

    @property
    def families(self) -> set[int]:
        return {_version(s.param.address) for s in (self.add, self.set_primary, *self.also) if s}

    @property
    def where(self) -> Where:
        """Where the handover shows first in the capture (its ADD_IP), for evidence."""
        return self.add.where if self.add else Where("?", 0, self.start)

    @property
    def first_data(self) -> DataSeen | None:
        """The peer's first new DATA once it may use the new address: after SET_PRIMARY is
        acknowledged, or after the address's HEARTBEAT-ACK if it was unconfirmed until then."""
        if self.set_primary is None or self.set_primary.exchange.ack is None or self.unconfirmed:
            return None
        if self.confirmed is not None:
            return self.confirmed.first_data_back
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
        deleted = [d.acked for d in self.deletes if d.acked is not None]
        if deleted:  # the old network is gone from the association once every delete is acked
            p["delete_ip_acked"] = max(deleted)
        fd = self.first_data
        if fd is not None:
            p["first_data_new_path"] = fd.where.time
        return {k: p[k] for k in PHASES if k in p}

    def durations(self) -> dict[str, dict[str, Any]]:
        """Per phase of ``CHAIN``: seconds from the previous phase, its floor and the rest."""
        return chain_durations(self.phases(), CHAIN, self.floors, self.address)

    def to_dict(self, index: int) -> dict[str, Any]:
        return handover_dict(self, index, FLOORS, addresses=[s.param.address for s in self.adds],
                             old_addresses=[s.param.address for s in self.deletes])


def chain_durations(p: Mapping[str, float], chain: Iterable[tuple[str, str, str | None]],
                    floors: Mapping[str, Floor], address: str) -> dict[str, dict[str, Any]]:
    """Each chain phase's duration from the one before it, beside the floor bounding it ("link":
    DHCP for an IPv4 address, RS → RA for an IPv6 one, or DHCPv6 where it gave the address) and
    what is left (stacks and daemons)."""
    out: dict[str, dict[str, Any]] = {}
    for phase, since, floor in chain:
        if phase not in p or since not in p:
            continue
        if floor == "link":
            floor = ("dhcpv6" if "dhcpv6" in floors else "rs_ra") if ":" in address else "dhcp"
        seconds = p[phase] - p[since]
        f = floors.get(floor) if floor else None
        out[phase] = {
            "from": since,
            "seconds": round(seconds, 6),
            "floor": floor,
            "floor_seconds": round(f.seconds, 6) if f else None,
            "overhead": round(seconds - f.seconds, 6) if f else None,
        }
    return out


def handover_dict(h: Any, index: int, floor_names: Iterable[str], **extra: Any) -> dict[str, Any]:
    """verdict.json's form of a handover of any transport (README, "verdict.json")."""
    phases = h.phases()
    names = sorted(phases, key=lambda k: phases[k])  # deltas in time order
    deltas = {
        f"{a}->{b}": round(phases[b] - phases[a], 6) for a, b in zip(names, names[1:], strict=False)
    }
    return {
        "index": index,
        **extra,
        "address": h.address,
        "old_address": h.old_address,
        "ports": list(h.ports),
        "t0": h.t0,
        "phases": phases,
        "offsets": {k: round(v, 6) for k, v in h.offsets().items()},
        "deltas": deltas,
        "durations": h.durations(),
        "floors": {k: h.floors[k].to_dict() for k in floor_names if k in h.floors},
        "missing": list(h.missing),
        "notes": list(h.notes),
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
    events: Iterable[Mapping[str, Any]] | None = None,
    facts: Facts | None = None,
) -> list[Handover]:
    """Assemble handovers; ``updates`` are the MN's UPDATE transactions in time order.

    ``events`` None means the agent's events were not given at all (every handover's event
    phases are then missing); ``facts`` gives the RS/RA and DHCP exchanges for the floors.
    """
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
    hos = _merge_families(hos)
    assign_updates(hos, updates)
    evs = parse_events(events) if events is not None else None
    starts = [h.start for h in hos]
    for i, h in enumerate(hos):
        lo, hi = window(starts, i)
        link = link_floors(facts, h.address, lo, h.start, hi) if facts else {}
        h.floors = {**link, **_sctp_floors(h, facts)}
        if facts is not None:
            h.confirmed, h.unconfirmed = _path_confirmation(h, facts, hi)
        if evs is not None:
            h.events = match_events(evs, h.address, h.old_address, h.start, lo, hi)
        mark_missing(h, given=evs is not None)
    return hos


def _version(address: str | None) -> int:
    try:
        return ipaddress.ip_address(address or "").version
    except ValueError:
        return 0


def _merge_families(hos: list[Handover]) -> list[Handover]:
    """Fold an ADD_IP of the other family without a SET_PRIMARY of its own into the handover
    of the same move (the latest earlier one on the same ports that had deleted nothing when
    the ADD_IP was sent), with its DELETE_IP."""
    out: list[Handover] = []
    for g in hos:
        h = next((h for h in reversed(out) if h.ports == g.ports), None)
        lone_add = g.set_primary is None and g.add is not None
        if (h is not None and lone_add and _version(g.address) not in h.families
                and not any(d.sent <= g.start for d in h.deletes)):
            h.also.append(g.add)  # type: ignore[arg-type]
            deletes = [d for d in (h.delete, g.delete) if d is not None]
            # the handover's own delete is that of its primary's family
            deletes.sort(key=lambda d: _version(d.param.address) != _version(h.address))
            h.delete = deletes[0] if deletes else None
            h.also += deletes[1:]
            continue
        out.append(g)
    return out


def _path_confirmation(h: Handover, facts: Facts, until: float) -> tuple[PathConfirmed | None, bool]:
    """When the peer's first DATA after SET_PRIMARY went elsewhere: the new address's
    confirmation that came only after that DATA (times compared where the DATA was captured),
    or before it but with that DATA answering a packet the peer took in before it (the
    extractor then takes the DATA after it as the confirmation's first),
    or ``unconfirmed`` when the peer's one probe of the address went unanswered before the next
    handover began (``until``): a lost HEARTBEAT, and no time for another (the next comes an
    RTO later, RFC 9260 §8.3). A peer that never probed it, or whose probes kept going
    unanswered (a path that does not work, such as an address behind a NAT), has no excuse."""
    ack = h.set_primary.exchange.ack if h.set_primary else None
    fd = ack.first_data_back if ack else None
    if ack is None or fd is None or fd.dst == h.address:
        return None, False
    for c in facts.confirmations:
        if c.key != ack.key or c.address != h.address or not h.start <= c.where.time < until:
            continue
        later = c.first_data_back is not None and c.first_data_back.where.time > fd.where.time
        if facts.seen_at(c.where, fd.where.pcap).time < fd.where.time and not later:
            return None, False  # confirmed before that DATA left: the peer had no reason to wait
        return c, False  # confirmed after it, or that DATA answered a packet from before it
    probes = sum(b.key == ack.key and b.address == h.address and h.start <= b.where.time < until
                 for b in facts.heartbeats)
    return None, probes == 1


def assign_updates(hos: list[Any], updates: list[DnsTransaction]) -> None:
    """Each handover (``hos`` in start order, each with ``start``, ``address`` and ``dns``)
    takes one UPDATE sent between its neighbours' starts: the first at or after its own start
    that adds its new address (else the first at or after it), or else the last before it that
    adds the address (an UPDATE that raced the handover's first signal). A move back to an
    address used before is a handover of its own, so the same address may come again."""
    taken: set[int] = set()
    starts = [h.start for h in hos]
    for i, h in enumerate(hos):
        lo, hi = window(starts, i)
        cands = [tx for tx in updates if id(tx) not in taken and lo < tx.request.where.time < hi]
        adding = [tx for tx in cands if h.address in added_addresses(tx.msg)]
        after = [tx for tx in (adding or cands) if tx.request.where.time >= h.start]
        before = [tx for tx in adding if tx.request.where.time < h.start]
        pick = after[0] if after else (before[-1] if before else None)
        if pick is not None:
            h.dns = pick
            taken.add(id(pick))


def _sctp_floors(h: Handover, facts: Facts | None) -> dict[str, Floor]:
    found = {
        "add_ip": asconf_floor(h.add.exchange if h.add else None, "ADD_IP", facts),
        "set_primary": asconf_floor(h.set_primary.exchange if h.set_primary else None, "SET_PRIMARY", facts),
        "dns": dns_floor(h.dns, facts),
    }
    return {k: f for k, f in found.items() if f is not None}


def mark_missing(h: Any, *, given: bool) -> None:
    """List the agent-event phases not found and say what that costs."""
    h.missing = [k for k in EVENT_KINDS if k not in h.events]
    if not given:
        h.notes.append("agent events not given: t0 (the new link's link_up) unknown")
        return
    new = [k for k in h.missing if k != "lost"]
    if new:
        cost = "; t0 unknown" if "link_up" in new else ""
        h.notes.append(f"no agent event for the link that came up with {h.address}: {', '.join(new)}{cost}")
    if "lost" in h.missing:
        h.notes.append("no 'lost' event for the old link")
