"""Whole-frame decoding: link layer → IP → SCTP or DNS (UDP/TCP port 53), one call, never raises."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from testbed.decode.dns import DNSMessage, decode_dns
from testbed.decode.link import (
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    IPHeader,
    NotIP,
    locate_ip,
    ntop,
    parse_ip,
)
from testbed.decode.sctp import SCTPPacket, decode_sctp

DNS_PORT = 53


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
    malformed: str | None = None
    unknown: str | None = None


def dns_payload(
    proto: int, buf: bytes, l4: int, end: int
) -> tuple[int, int, bytes | None, str | None, str | None]:
    """Return ``(sport, dport, DNS bytes or None, malformed reason, unknown reason)``.

    TCP: only a segment holding one whole length-prefixed message is decoded (the lab's UPDATEs
    fit in one segment; no stream reassembly). Segments without payload give ``None`` silently.
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


def decode_frame(linktype: int, frame: bytes) -> Packet:
    """Decode a captured frame as far as the lab cares."""
    try:
        off, _cp = locate_ip(linktype, frame)
        ver, proto, src, dst, l4, end, ipid = parse_ip(frame, off)
    except NotIP as e:
        return Packet(unknown=str(e))
    except (ValueError, struct.error, IndexError) as e:
        return Packet(malformed=str(e) if isinstance(e, ValueError) else f"truncated frame ({e})")
    ip = IPHeader(ver, ntop(src), ntop(dst), proto, ipid, l4, end)
    if proto == PROTO_SCTP:
        sc = decode_sctp(frame, l4, end)
        return Packet(ip, sc.sport, sc.dport, sctp=sc, malformed=sc.malformed)
    if proto in (PROTO_UDP, PROTO_TCP):
        sport, dport, payload, bad, unknown = dns_payload(proto, frame, l4, end)
        if bad is not None:
            return Packet(ip, sport, dport, malformed=bad)
        if DNS_PORT not in (sport, dport):
            name = "UDP" if proto == PROTO_UDP else "TCP"
            return Packet(ip, sport, dport, unknown=f"{name} port {dport}")
        if payload is None:
            return Packet(ip, sport, dport, unknown=unknown)
        msg = decode_dns(payload)
        return Packet(ip, sport, dport, dns=msg, malformed=msg.malformed)
    return Packet(ip, unknown=f"IP protocol {proto}")
