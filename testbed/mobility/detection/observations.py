"""Observations the detector feeds its core (what netlink, an RA or a DHCP reply said), and the
wire codecs that make them from bytes (RA, RS, DHCPv4 reply).

Hand-rolled rather than scapy: the formats are small and fixed (RFC 4861 §4.1/4.2/4.6.2,
RFC 2131 §2), and the agent should not pay scapy's import time; tests check them against scapy.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from dataclasses import dataclass

IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
INFINITE = 0xFFFFFFFF


@dataclass(frozen=True)
class Stamp:
    """When an observation was made: monotonic for ordering/latency, wall for reports."""

    mono: float
    wall: float

    @classmethod
    def now(cls) -> Stamp:
        return cls(time.monotonic(), time.time())


@dataclass(frozen=True)
class LinkObs:
    """RTM_NEWLINK/RTM_DELLINK: admin state and carrier of one interface."""

    ifname: str
    ifindex: int
    up: bool
    carrier: bool
    mac: str | None = None
    gone: bool = False


@dataclass(frozen=True)
class AddrObs:
    """RTM_NEWADDR/RTM_DELADDR for one address."""

    ifname: str
    address: str
    prefixlen: int
    flags: int = 0
    scope: int = 0  # 0 universe, 253 link, 254 host
    removed: bool = False

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


@dataclass(frozen=True)
class PrefixInfo:
    prefix: str  # "2001:db8:a1::/64"
    valid: int
    preferred: int
    onlink: bool
    autonomous: bool


@dataclass(frozen=True)
class RAObs:
    """A Router Advertisement received on ``ifname`` from ``router`` (link-local)."""

    ifname: str
    router: str
    router_lifetime: int
    prefixes: tuple[PrefixInfo, ...]


@dataclass(frozen=True)
class DhcpObs:
    """A DHCPv4 reply seen on the wire (before the client acts on it)."""

    ifname: str
    msg_type: int  # 2 OFFER, 5 ACK, 6 NAK
    yiaddr: str
    server: str | None
    subnet: str | None  # "192.0.2.0/24" from yiaddr + option 1
    router: str | None
    lease_time: int | None


Observation = LinkObs | AddrObs | RAObs | DhcpObs

DHCPACK = 5


# --- wire codecs ----------------------------------------------------------------------------


class WireError(ValueError):
    """A packet too short or malformed to use; the caller drops it."""


def parse_ra(icmp: bytes) -> tuple[int, tuple[PrefixInfo, ...]]:
    """ICMPv6 RA message (from the type byte on) → (router lifetime, prefix options)."""
    if len(icmp) < 16 or icmp[0] != 134 or icmp[1] != 0:
        raise WireError("not a router advertisement")
    router_lifetime = struct.unpack_from("!H", icmp, 6)[0]
    prefixes: list[PrefixInfo] = []
    off = 16
    while off + 2 <= len(icmp):
        otype, olen = icmp[off], icmp[off + 1] * 8
        if olen == 0 or off + olen > len(icmp):
            raise WireError("bad option length")  # RFC 4861 §4.6: length 0 → discard packet
        if otype == 3 and olen == 32:  # Prefix Information
            plen, flags = icmp[off + 2], icmp[off + 3]
            valid, preferred = struct.unpack_from("!II", icmp, off + 4)
            raw = icmp[off + 16 : off + 32]
            net = ipaddress.IPv6Network((raw, plen), strict=False)
            prefixes.append(PrefixInfo(str(net), valid, preferred, bool(flags & 0x80), bool(flags & 0x40)))
        off += olen
    return router_lifetime, tuple(prefixes)


def internet_checksum(data: bytes) -> int:
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
    dst = ipaddress.IPv6Address("ff02::2").packed
    s = ipaddress.IPv6Address(src).packed
    body = b"\x85\x00\x00\x00" + b"\0" * 4
    if mac and src != "::":
        body += b"\x01\x01" + mac  # Source Link-Layer Address option, 8 bytes
    pseudo = s + dst + struct.pack("!I3xB", len(body), 58)
    csum = internet_checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    hdr = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + s + dst
    return hdr + body


def parse_dhcp_reply(ip_packet: bytes, ifname: str) -> DhcpObs | None:
    """IPv4 packet carrying a BOOTREPLY → DhcpObs; None for anything else."""
    if len(ip_packet) < 20 or ip_packet[0] >> 4 != 4 or ip_packet[9] != 17:
        return None
    ihl = (ip_packet[0] & 0x0F) * 4
    udp = ip_packet[ihl:]
    if len(udp) < 8 or struct.unpack_from("!H", udp, 2)[0] != 68:
        return None
    b = udp[8:]
    if len(b) < 240 or b[0] != 2 or b[236:240] != b"\x63\x82\x53\x63":
        return None
    yiaddr = socket.inet_ntoa(b[16:20])
    opts: dict[int, bytes] = {}
    off = 240
    while off < len(b):
        code = b[off]
        if code == 255:
            break
        if code == 0:
            off += 1
            continue
        if off + 2 > len(b):
            break
        ln = b[off + 1]
        opts.setdefault(code, b[off + 2 : off + 2 + ln])
        off += 2 + ln
    if 53 not in opts or len(opts[53]) != 1:
        return None
    mask = opts.get(1)
    subnet = None
    if mask and len(mask) == 4 and yiaddr != "0.0.0.0":
        subnet = str(ipaddress.IPv4Interface(f"{yiaddr}/{socket.inet_ntoa(mask)}").network)
    router = socket.inet_ntoa(opts[3][:4]) if len(opts.get(3, b"")) >= 4 else None
    server = socket.inet_ntoa(opts[54][:4]) if len(opts.get(54, b"")) == 4 else None
    lease = struct.unpack("!I", opts[51])[0] if len(opts.get(51, b"")) == 4 else None
    return DhcpObs(ifname, opts[53][0], yiaddr, server, subnet, router, lease)
