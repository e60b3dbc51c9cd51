"""Whole-frame decoding: link layer → IP → what the lab signals with, one call, never raises.

Above IP: SCTP, DNS (UDP/TCP port 53), DHCPv4 (UDP 67/68), Router Solicitation/Advertisement
(ICMPv6) and any other TCP segment with its Multipath TCP options. ``decode_transport`` is the
part above IP on its own, for a caller (the checker) that has located the IP header already.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from testbed.decode.dhcp import CLIENT_PORT, SERVER_PORT, DhcpMessage, decode_dhcp
from testbed.decode.dns import DNSMessage, decode_dns
from testbed.decode.link import (
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    IPHeader,
    NotIP,
    ip_span,
    ntop,
)
from testbed.decode.nd import ICMPV6, RouterAdvert, RouterSolicit, decode_nd
from testbed.decode.sctp import SCTPPacket, decode_sctp
from testbed.decode.tcp import TcpSegment, decode_tcp

DNS_PORT = 53
_DHCP_PORTS = frozenset({SERVER_PORT, CLIENT_PORT})


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded frame. ``malformed`` is a reason when decoding failed somewhere (the layers
    decoded before the fault are kept); ``unknown`` says why a well-formed frame was not decoded
    further (ARP, other transport, fragment...)."""

    ip: IPHeader | None = None
    sport: int = 0
    dport: int = 0
    sctp: SCTPPacket | None = None
    dns: DNSMessage | None = None
    dhcp: DhcpMessage | None = None
    nd: RouterSolicit | RouterAdvert | None = None
    tcp: TcpSegment | None = None  # a TCP segment that is not DNS
    malformed: str | None = None
    unknown: str | None = None


def _payload(
    proto: int, buf: bytes, l4: int, end: int
) -> tuple[int, int, bytes | None, str | None, str | None]:
    """Return ``(sport, dport, payload or None, malformed reason, unknown reason)`` of UDP/TCP.

    TCP: only a segment holding one whole length-prefixed DNS message is decoded here (one
    frame, no state); the checker reassembles streams (``testbed.decode.reassembly``).
    """
    if proto == PROTO_UDP:
        if end - l4 < 8:
            return 0, 0, None, "truncated UDP header", None
        sport, dport = struct.unpack_from("!HH", buf, l4)
        return sport, dport, buf[l4 + 8 : end], None, None
    if end - l4 < 20:
        return 0, 0, None, "truncated TCP header", None
    sport, dport = struct.unpack_from("!HH", buf, l4)
    doff = (buf[l4 + 12] >> 4) * 4
    if doff < 20 or l4 + doff > end:
        return sport, dport, None, "bad TCP data offset", None
    data = buf[l4 + doff : end]
    if not data:
        return sport, dport, None, None, "TCP segment without payload"
    if len(data) < 2 or struct.unpack_from("!H", data)[0] != len(data) - 2:
        return sport, dport, None, None, "DNS over TCP split across segments (not reassembled)"
    return sport, dport, data[2:], None, None


def decode_transport(proto: int, buf: bytes, l4: int, end: int, ip: IPHeader | None = None) -> Packet:
    """Decode ``buf[l4:end]``, the payload of an IP packet carrying ``proto``."""
    if proto == PROTO_SCTP:
        sc = decode_sctp(buf, l4, end)
        return Packet(ip, sc.sport, sc.dport, sctp=sc, malformed=sc.malformed)
    if proto == ICMPV6:
        nd = decode_nd(buf[l4:end])
        if nd is None:
            return Packet(ip, unknown=f"ICMPv6 type {buf[l4]}" if end > l4 else "empty ICMPv6")
        return Packet(ip, nd=nd, malformed=nd.malformed)
    if proto not in (PROTO_UDP, PROTO_TCP):
        return Packet(ip, unknown=f"IP protocol {proto}")
    name = "UDP" if proto == PROTO_UDP else "TCP"
    sport, dport, payload, bad, unknown = _payload(proto, buf, l4, end)
    if bad is not None:
        return Packet(ip, sport, dport, malformed=bad)
    if proto == PROTO_UDP and sport in _DHCP_PORTS and dport in _DHCP_PORTS:
        dhcp = decode_dhcp(payload or b"")
        if dhcp is None:
            return Packet(ip, sport, dport, unknown="UDP port 67/68 without DHCP")
        return Packet(ip, sport, dport, dhcp=dhcp, malformed=dhcp.malformed)
    if DNS_PORT not in (sport, dport):
        if proto == PROTO_TCP:
            seg = decode_tcp(buf, l4, end)
            return Packet(ip, sport, dport, tcp=seg, malformed=seg.malformed)
        return Packet(ip, sport, dport, unknown=f"{name} port {dport}")
    if payload is None:
        return Packet(ip, sport, dport, unknown=unknown)
    msg = decode_dns(payload)
    return Packet(ip, sport, dport, dns=msg, malformed=msg.malformed)


def decode_frame(linktype: int, frame: bytes) -> Packet:
    """Decode a captured frame as far as the lab cares."""
    try:
        ver, proto, src, dst, l4, end, ipid, _cp = ip_span(linktype, frame)
    except NotIP as e:
        return Packet(unknown=str(e))
    except (ValueError, struct.error, IndexError) as e:
        return Packet(malformed=str(e) if isinstance(e, ValueError) else f"truncated frame ({e})")
    return decode_transport(proto, frame, l4, end, IPHeader(ver, ntop(src), ntop(dst), proto, ipid, l4, end))
