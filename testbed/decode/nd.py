"""IPv6 Neighbor Discovery for routers (RFC 4861 §4.1, §4.2, §4.6): Router Solicitation and
Router Advertisement, decoded from the ICMPv6 message and, for the RS the mobile node sends at
link-up (DNA, RFC 4957), built.

Hand-rolled rather than scapy: the formats are small and fixed, and the mobility agent, which
decodes every RA it receives, should not pay scapy's import time. ``decode_nd`` never raises:
a message that is an RS or RA but breaks the format comes back with ``malformed`` set and what
was decoded before the fault; anything else is ``None``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

ICMPV6 = 58  # IP protocol number
ND_ROUTER_SOLICIT = 133
ND_ROUTER_ADVERT = 134
ALL_ROUTERS = "ff02::2"
_OPT_SOURCE_LLADDR, _OPT_PREFIX_INFO, _OPT_MTU = 1, 3, 5
_ALL_ROUTERS_PACKED = socket.inet_pton(socket.AF_INET6, ALL_ROUTERS)


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    """A Prefix Information option (RFC 4861 §4.6.2); ``prefix`` is the network, host bits
    cleared ("2001:db8:a1::/64")."""

    prefix: str
    valid: int
    preferred: int
    onlink: bool
    autonomous: bool


@dataclass(frozen=True, slots=True)
class RouterAdvert:
    """The parts of an RA that movement detection and the report use."""

    router_lifetime: int
    prefixes: tuple[PrefixInfo, ...]
    mtu: int | None = None
    malformed: str | None = None  # RFC 4861 §6.1.2: a receiver discards such an RA
    managed: bool = False  # M: addresses from DHCPv6
    other: bool = False  # O: other configuration from DHCPv6


@dataclass(frozen=True, slots=True)
class RouterSolicit:
    source_lladdr: str | None  # the Source Link-Layer Address option ("02:00:00:00:00:05")
    malformed: str | None = None


def _options(icmp: bytes, off: int) -> tuple[list[tuple[int, int, int]], str | None]:
    """``(type, value offset, option end)`` per option, and the fault that stopped the walk."""
    out: list[tuple[int, int, int]] = []
    while off + 2 <= len(icmp):
        otype, olen = icmp[off], icmp[off + 1] * 8
        if olen == 0:  # RFC 4861 §4.6: a zero length makes the whole packet invalid
            return out, f"option {otype} with length 0"
        if off + olen > len(icmp):
            return out, f"option {otype} overruns the message"
        out.append((otype, off + 2, off + olen))
        off += olen
    return out, None


def _prefix(icmp: bytes, v: int) -> PrefixInfo:
    plen, flags = icmp[v], icmp[v + 1]
    valid, preferred = struct.unpack_from("!II", icmp, v + 2)
    net = ipaddress.IPv6Network((icmp[v + 14 : v + 30], plen), strict=False)
    return PrefixInfo(str(net), valid, preferred, bool(flags & 0x80), bool(flags & 0x40))


def decode_ra(icmp: bytes) -> RouterAdvert | None:
    """An ICMPv6 message (from its type byte on) as an RA; ``None`` when it is no RA."""
    if not icmp or icmp[0] != ND_ROUTER_ADVERT:
        return None
    if len(icmp) < 16:
        return RouterAdvert(0, (), None, f"truncated router advertisement ({len(icmp)} bytes)")
    (lifetime,) = struct.unpack_from("!H", icmp, 6)
    opts, bad = _options(icmp, 16)
    if icmp[1] != 0:
        bad = f"ICMPv6 code {icmp[1]}"
    prefixes: list[PrefixInfo] = []
    mtu = None
    for otype, v, end in opts:
        if otype == _OPT_PREFIX_INFO and end - v == 30:
            if icmp[v] > 128:
                bad = bad or f"prefix length {icmp[v]}"
                continue
            prefixes.append(_prefix(icmp, v))
        elif otype == _OPT_MTU and end - v == 6:
            (mtu,) = struct.unpack_from("!I", icmp, v + 2)
    return RouterAdvert(lifetime, tuple(prefixes), mtu, bad, bool(icmp[5] & 0x80), bool(icmp[5] & 0x40))


def decode_rs(icmp: bytes) -> RouterSolicit | None:
    """An ICMPv6 message as an RS; ``None`` when it is no RS."""
    if not icmp or icmp[0] != ND_ROUTER_SOLICIT:
        return None
    if len(icmp) < 8:
        return RouterSolicit(None, f"truncated router solicitation ({len(icmp)} bytes)")
    opts, bad = _options(icmp, 8)
    if icmp[1] != 0:
        bad = f"ICMPv6 code {icmp[1]}"
    ll = next((icmp[v:end] for t, v, end in opts if t == _OPT_SOURCE_LLADDR), None)
    return RouterSolicit(":".join(f"{b:02x}" for b in ll[:6]) if ll else None, bad)


def decode_nd(icmp: bytes) -> RouterSolicit | RouterAdvert | None:
    """An RS or an RA; ``None`` for every other ICMPv6 message."""
    return decode_rs(icmp) or decode_ra(icmp)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum, as ICMP, ICMPv6 (over its pseudo-header) and UDP use."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_rs(src: str, mac: bytes | None) -> bytes:
    """IPv6 packet (header + ICMPv6 RS) to ff02::2, hop limit 255.

    Built whole because it goes out on a packet socket: at link-up the link-local address is
    often still tentative and the kernel refuses it as a source on a raw ICMPv6 socket, while
    RFC 4861 §6.3.7 allows an RS from ``::`` (then without a source link-layer option).
    """
    s = ipaddress.IPv6Address(src).packed
    body = bytes([ND_ROUTER_SOLICIT]) + bytes(7)
    if mac and src != "::":
        body += bytes([_OPT_SOURCE_LLADDR, 1]) + mac  # Source Link-Layer Address, 8 bytes
    pseudo = s + _ALL_ROUTERS_PACKED + struct.pack("!I3xB", len(body), ICMPV6)
    csum = internet_checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    hdr = struct.pack("!IHBB", 6 << 28, len(body), ICMPV6, 255) + s + _ALL_ROUTERS_PACKED
    return hdr + body
