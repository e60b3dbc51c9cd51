"""The pass's part for the network services a mobile node uses, above IP but not a transport
the rules follow: DNS (over UDP, and over TCP reassembled), DHCP, DHCPv6 and Router
Solicitations/Advertisements are kept decoded; anything else is counted by its kind.
"""

from __future__ import annotations

import struct

from testbed.conformance.facts import Dhcp6Seen, DhcpSeen, DnsSeen, Facts, Link, NdSeen
from testbed.conformance.where import Where
from testbed.decode.dhcp import DhcpMessage
from testbed.decode.dhcp6 import Dhcp6Message
from testbed.decode.dns import HEADER_TRUNCATED, DNSMessage, decode_dns
from testbed.decode.link import PROTO_TCP, PROTO_UDP, ntop
from testbed.decode.nd import RouterAdvert, RouterSolicit
from testbed.decode.packet import DNS_PORT, decode_transport
from testbed.decode.reassembly import DnsOverTcp

_LABELS: dict[type, str] = {
    DNSMessage: "DNS", DhcpMessage: "DHCP", Dhcp6Message: "DHCPv6", RouterSolicit: "ICMPv6",
    RouterAdvert: "ICMPv6",
}  # fmt: skip


class ServiceTracker:
    """Feeds the DNS, DHCP, DHCPv6 and ND facts of ``f`` one packet at a time (capture order)."""

    __slots__ = ("f", "tcp_dns")

    def __init__(self, f: Facts) -> None:
        self.f = f
        self.tcp_dns = DnsOverTcp()

    def packet(
        self, proto: int, data: bytes, l4: int, end: int, src: bytes, dst: bytes, link: Link,
        where: Where,
    ) -> bool:  # fmt: skip
        """One packet of IP protocol ``proto`` at ``data[l4:end]``: DNS, DHCP and RS/RA are
        kept (True), the rest counted by kind."""
        if proto == PROTO_TCP and end - l4 >= 20:
            sport, dport, seq = struct.unpack_from("!HHI", data, l4)
            doff = (data[l4 + 12] >> 4) * 4
            if DNS_PORT in (sport, dport) and 20 <= doff <= end - l4:
                flow = (src, sport, dst, dport)
                payloads = self.tcp_dns.add(flow, seq, data[l4 + 13], data[l4 + doff:end], where.time)
                for payload in payloads:
                    self.dns(decode_dns(payload), src, sport, dst, dport, "tcp", where)
                return bool(payloads)
        pk = decode_transport(proto, data, l4, end)
        f = self.f
        if pk.unknown is not None:
            # "UDP port 40000": one kind per transport, not per ephemeral port
            f.note_unknown(pk.unknown.partition(" port ")[0])
            return False
        msg = pk.dns or pk.dhcp or pk.dhcp6 or pk.nd
        if pk.malformed is not None:
            f.note_malformed(where, pk.malformed if msg is None else f"{_LABELS[type(msg)]}: {pk.malformed}")
        if pk.dns is not None:
            return self.dns(pk.dns, src, pk.sport, dst, pk.dport, "udp" if proto == PROTO_UDP else "tcp",
                            where, counted_bad=True)
        if pk.dhcp is not None:
            f.dhcp.append(DhcpSeen(where, ntop(src), ntop(dst), pk.sport, pk.dport, link, pk.dhcp))
        elif pk.dhcp6 is not None:
            f.dhcp6.append(Dhcp6Seen(where, ntop(src), ntop(dst), link, pk.dhcp6))
        elif pk.nd is not None:
            f.nd.append(NdSeen(where, ntop(src), ntop(dst), link, pk.nd))
        return msg is not None

    def dns(self, msg: DNSMessage, src: bytes, sport: int, dst: bytes, dport: int, transport: str,
            where: Where, counted_bad: bool = False) -> bool:
        """Keep one DNS message (True) unless it has no header to pair it by."""
        f = self.f
        f.dns_messages += 1
        if msg.malformed is not None and not counted_bad:
            f.note_malformed(where, f"DNS: {msg.malformed}")
        if msg.malformed == HEADER_TRUNCATED:
            return False  # nothing to pair
        a, b = (ntop(src), sport), (ntop(dst), dport)
        client, server = (b, a) if msg.qr else (a, b)
        f.dns.append(DnsSeen(where, client, server, transport, msg))
        return True
