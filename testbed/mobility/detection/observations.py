"""Observations the detector feeds its core: what netlink, an RA or a DHCP reply said.

The packets themselves are decoded by ``testbed.decode.nd`` and ``testbed.decode.dhcp``; this
module only turns a decoded reply into the observation the core reasons about.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from testbed.decode.dhcp import ACK, BOOTREPLY, CLIENT_PORT, decode_dhcp
from testbed.decode.dhcp6 import CLIENT_PORT as DHCP6_CLIENT_PORT
from testbed.decode.dhcp6 import decode_dhcp6
from testbed.decode.link import PROTO_UDP, NotIP, ntop, parse_ip
from testbed.decode.nd import PrefixInfo

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
class RAObs:
    """A Router Advertisement received on ``ifname`` from ``router`` (link-local)."""

    ifname: str
    router: str
    router_lifetime: int
    prefixes: tuple[PrefixInfo, ...]
    managed: bool = False  # M flag: addresses come from DHCPv6, not from these prefixes


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


@dataclass(frozen=True)
class Dhcp6Obs:
    """A DHCPv6 server message seen on the wire (before the client acts on it)."""

    ifname: str
    msg_type: int  # 7 REPLY, 2 ADVERTISE
    server: str  # its link-local source
    addresses: tuple[tuple[str, int], ...]  # IA_NA (address, valid lifetime)


@dataclass(frozen=True)
class RdiscObs:
    """An ICMP Router Advertisement (RFC 1256) received on ``ifname`` from ``router``."""

    ifname: str
    router: str
    lifetime: int
    routers: tuple[tuple[str, int], ...]  # (address, preference)


Observation = LinkObs | AddrObs | RAObs | DhcpObs | Dhcp6Obs | RdiscObs

DHCPACK = ACK



def parse_dhcp_reply(ip_packet: bytes, ifname: str) -> DhcpObs | None:
    """An IPv4 packet carrying a BOOTREPLY to the client port → ``DhcpObs``; None for anything
    else (the packet socket hands over whole IP packets)."""
    try:
        ver, proto, _src, _dst, l4, end, _ipid = parse_ip(ip_packet, 0)
    except (NotIP, ValueError, struct.error, IndexError):
        return None
    if ver != 4 or proto != PROTO_UDP or end - l4 < 8:
        return None
    if struct.unpack_from("!H", ip_packet, l4 + 2)[0] != CLIENT_PORT:
        return None
    m = decode_dhcp(ip_packet[l4 + 8 : end])
    if m is None or m.op != BOOTREPLY or m.msg_type == 0:
        return None
    return DhcpObs(ifname, m.msg_type, m.yiaddr, m.server_id, m.subnet, m.router, m.lease)


def parse_dhcp6_reply(ip_packet: bytes, ifname: str) -> Dhcp6Obs | None:
    """An IPv6 packet carrying a DHCPv6 server message to the client port → ``Dhcp6Obs``."""
    try:
        ver, proto, src, _dst, l4, end, _ipid = parse_ip(ip_packet, 0)
    except (NotIP, ValueError, struct.error, IndexError):
        return None
    if ver != 6 or proto != PROTO_UDP or end - l4 < 8:
        return None
    if struct.unpack_from("!H", ip_packet, l4 + 2)[0] != DHCP6_CLIENT_PORT:
        return None
    m = decode_dhcp6(ip_packet[l4 + 8 : end])
    if m is None or m.from_client:
        return None
    return Dhcp6Obs(ifname, m.msg_type, ntop(src), tuple((a.address, a.valid) for a in m.addresses))
