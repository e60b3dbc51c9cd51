"""Protocol floors of a handover: how long each exchange itself took on the wire.

Next to a phase's duration, its floor says how much of it the protocol needed — a Router
Solicitation answered by an Advertisement, a DHCP exchange up to the ACK, an ASCONF answered by
its ASCONF-ACK, a DNS UPDATE answered — so that the rest is seen to be the hosts' stacks, the
mobility agent and the binding daemon. Each floor starts at the transmission that was answered:
waiting out a lost request is not the protocol's time; and it ends at the answer's copy on the
link where the request was captured first (the sender's link), so that an exchange crossing
several links is a round trip seen from one point. Floors come from the captures alone; they
need no agent events.

The access link of a handover is found from the capture too: the DHCP ACK that assigned the
new IPv4 address, or the RA that advertised the new IPv6 address's prefix. Where DHCPv6 gave
the IPv6 address (a stateful network), its exchange is the floor under ``detected``. Router Solicitations,
Advertisements and DHCP stay on their link, so the capture point that saw that message names
the link, and both exchanges are read there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from testbed.conformance.exchange import AsconfExchange, DnsTransaction
from testbed.conformance.facts import Dhcp6Seen, DhcpSeen, Facts, Link, NdSeen
from testbed.conformance.where import Where
from testbed.decode.dhcp import ACK, BOOTREQUEST, OFFER
from testbed.decode.dhcp6 import ADVERTISE, SOLICIT
from testbed.decode.dhcp6 import REPLY as DHCP6_REPLY
from testbed.decode.nd import RouterAdvert, RouterSolicit

FLOORS = ("rs_ra", "dhcp", "dhcpv6", "add_ip", "set_primary", "dns")  # in the order a handover meets them
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Seen = TypeVar("_Seen", NdSeen, DhcpSeen, Dhcp6Seen)


@dataclass(frozen=True, slots=True)
class Floor:
    """One request → answer exchange as captured (first copies)."""

    what: str  # "RS → RA", "DHCP DISCOVER → ACK", ...
    start: Where
    end: Where

    @property
    def seconds(self) -> float:
        return self.end.time - self.start.time

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "seconds": round(self.seconds, 6),
            "from": {"pcap": self.start.pcap, "frame": self.start.frame, "time": self.start.time},
            "to": {"pcap": self.end.pcap, "frame": self.end.frame, "time": self.end.time},
        }


def _answered(facts: Facts | None, request: Where, answer: Where) -> Where:
    """The answer where the request was captured, when a copy was seen there: an exchange that
    crosses several links is timed at one point, as a round trip."""
    return facts.seen_at(answer, request.pcap) if facts is not None else answer


def asconf_floor(exchange: AsconfExchange | None, param: str, facts: Facts | None = None) -> Floor | None:
    """ASCONF → ASCONF-ACK, from the transmission the ACK answers."""
    if exchange is None or exchange.ack is None:
        return None
    sent = exchange.answered_send.where
    return Floor(f"ASCONF {param} → ASCONF-ACK", sent, _answered(facts, sent, exchange.ack.where))


def dns_floor(tx: DnsTransaction | None, facts: Facts | None = None) -> Floor | None:
    """DNS UPDATE → response, from the transmission the response answers."""
    if tx is None or tx.response is None:
        return None
    sent = tx.answered_send.where
    return Floor("DNS UPDATE → response", sent, _answered(facts, sent, tx.response.where))


def _nearest(items: Sequence[_Seen], start: float) -> _Seen | None:
    """The latest item at or before ``start``, else the first after it."""
    before = [s for s in items if s.where.time <= start]
    return before[-1] if before else (items[0] if items else None)


def _advertises(s: NdSeen, ip: IPAddress) -> bool:
    return isinstance(s.msg, RouterAdvert) and any(
        ip in ipaddress.ip_network(p.prefix) for p in s.msg.prefixes
    )


def _rs_ra(nd: Sequence[NdSeen], ip: IPAddress, start: float) -> Floor | None:
    """RS → the first RA after it (for a new IPv6 address, an RA advertising its prefix), from
    the latest RS before that RA: the exchange nearest before ``start``, else the first after."""
    pairs: list[Floor] = []
    rs: NdSeen | None = None
    for s in nd:
        if isinstance(s.msg, RouterSolicit):
            rs = s
        elif rs is not None and (ip.version == 4 or _advertises(s, ip)):
            pairs.append(Floor("RS → RA", rs.where, s.where))
            rs = None
    before = [f for f in pairs if f.end.time <= start]
    return before[-1] if before else (pairs[0] if pairs else None)


def _dhcp(dhcp: Sequence[DhcpSeen], address: str, start: float) -> Floor | None:
    """The exchange that assigned ``address`` (any for an IPv6 handover), from the client's
    message that got through — the DISCOVER answered by the OFFER, or the REQUEST of a lease
    renewed without one — to the ACK."""
    acks = [s for s in dhcp if s.msg.op != BOOTREQUEST and s.msg.msg_type == ACK]
    if ":" not in address:
        acks = [s for s in acks if s.msg.yiaddr == address]
    ack = _nearest(acks, start)
    if ack is None:
        return None
    same = [s for s in dhcp if s.msg.xid == ack.msg.xid and s.where.time <= ack.where.time]
    offer = next((s for s in same if s.msg.msg_type == OFFER), ack)
    sent = [s for s in same if s.msg.op == BOOTREQUEST and s.where.time <= offer.where.time]
    if not sent:
        return None
    return Floor(f"DHCP {sent[-1].msg.type_name} → ACK", sent[-1].where, ack.where)


def _gives(s: Dhcp6Seen, address: str, msg_type: int) -> bool:
    return s.msg.msg_type == msg_type and any(a.address == address for a in s.msg.addresses)


def _dhcp6(items: Sequence[Dhcp6Seen], address: str, start: float) -> Floor | None:
    """The stateful exchange that assigned ``address``: from the SOLICIT its ADVERTISE answered
    (or the client message the REPLY answers, after a rapid commit or a renewal) to the REPLY."""
    reply = _nearest([s for s in items if _gives(s, address, DHCP6_REPLY)], start)
    if reply is None:
        return None
    before = [s for s in items if s.where.time <= reply.where.time]
    adv = [s for s in before if _gives(s, address, ADVERTISE)]
    if adv:
        sol = [s for s in before if s.msg.xid == adv[-1].msg.xid and s.msg.msg_type == SOLICIT
               and s.where.time <= adv[-1].where.time]
        if sol:
            return Floor("DHCPv6 SOLICIT → REPLY", sol[-1].where, reply.where)
    asked = [s for s in before if s.msg.xid == reply.msg.xid and s.msg.from_client]
    return Floor(f"DHCPv6 {asked[-1].msg.type_name} → REPLY", asked[-1].where, reply.where) if asked else None


def new_link(facts: Facts, address: str, lo: float, start: float, hi: float) -> Link | None:
    """The capture point of the access link that gave ``address`` (see the module docstring)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 4:
        acks = [
            s for s in facts.dhcp
            if s.msg.msg_type == ACK and s.msg.yiaddr == address and lo < s.where.time < hi
        ]  # fmt: skip
        ack = _nearest(acks, start)
        return ack.link if ack else None
    ra = _nearest([s for s in facts.nd if _advertises(s, ip) and lo < s.where.time < hi], start)
    return ra.link if ra else None


def link_floors(facts: Facts, address: str, lo: float, start: float, hi: float) -> dict[str, Floor]:
    """RS → RA and the DHCP exchange on the new access link of the handover to ``address``,
    which started (first ASCONF) at ``start``; ``lo``/``hi`` are its neighbours' starts."""
    link = new_link(facts, address, lo, start, hi)
    if link is None:
        return {}
    ip = ipaddress.ip_address(address)
    out: dict[str, Floor] = {}
    rs_ra = _rs_ra([s for s in facts.nd if s.link == link and lo < s.where.time < hi], ip, start)
    if rs_ra is not None:
        out["rs_ra"] = rs_ra
    dhcp = _dhcp([s for s in facts.dhcp if s.link == link and lo < s.where.time < hi], address, start)
    if dhcp is not None:
        out["dhcp"] = dhcp
    if ip.version == 6:
        dhcp6 = _dhcp6([s for s in facts.dhcp6 if s.link == link and lo < s.where.time < hi], address,
                       start)
        if dhcp6 is not None:
            out["dhcpv6"] = dhcp6
    return out
