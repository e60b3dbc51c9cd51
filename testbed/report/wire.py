"""Just enough ICMPv6 Router Advertisement and DHCPv4 decoding to label the ladder's first rows.

Kept here rather than in ``testbed.decode``: the checker judges SCTP and DNS only, and the report
needs three facts from these messages (RA prefixes, DHCP message type, server identifier). Hand
-rolled like the other decoders because scapy's per-packet dissection is slow on large captures
and a few ``struct`` reads suffice. Pure: bytes in, frozen dataclass (or ``None``) out.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ICMPV6 = 58
ND_ROUTER_ADVERT = 134
DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68
DHCP_MAGIC = b"\x63\x82\x53\x63"
DHCP_TYPES = {
    1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
    8: "INFORM",
}  # fmt: skip
_OPT_PREFIX_INFO, _OPT_MTU = 3, 5
_OPT_MSG_TYPE, _OPT_REQUESTED, _OPT_SERVER_ID, _OPT_LEASE, _OPT_ROUTER = 53, 50, 54, 51, 3


@dataclass(frozen=True, slots=True)
class RouterAdvert:
    """An RA's lifetime, advertised on-link prefixes ("2001:db8:a2::/64") and MTU."""

    router_lifetime: int
    prefixes: tuple[str, ...]
    mtu: int | None = None


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """The BOOTP/DHCP fields the ladder labels: type, transaction, addresses, server."""

    op: int  # 1 request (client → server), 2 reply
    xid: int
    msg_type: int  # option 53; 0 when absent (plain BOOTP)
    ciaddr: str
    yiaddr: str
    server_id: str | None  # option 54
    requested: str | None  # option 50
    lease: int | None  # option 51, seconds
    router: str | None  # first address of option 3

    @property
    def type_name(self) -> str:
        return DHCP_TYPES.get(self.msg_type, f"type {self.msg_type}" if self.msg_type else "BOOTP")


def decode_ra(icmp: bytes) -> RouterAdvert | None:
    """Decode an ICMPv6 message as a Router Advertisement; ``None`` if it is not a whole one."""
    if len(icmp) < 16 or icmp[0] != ND_ROUTER_ADVERT:
        return None
    (lifetime,) = struct.unpack_from("!H", icmp, 6)
    prefixes: list[str] = []
    mtu = None
    p = 16
    while p + 2 <= len(icmp):
        otype, olen = icmp[p], icmp[p + 1] * 8
        if olen == 0 or p + olen > len(icmp):
            break  # malformed option: keep what was decoded
        if otype == _OPT_PREFIX_INFO and olen >= 32:
            plen = icmp[p + 2]
            prefixes.append(f"{socket.inet_ntop(socket.AF_INET6, icmp[p + 16 : p + 32])}/{plen}")
        elif otype == _OPT_MTU and olen >= 8:
            (mtu,) = struct.unpack_from("!I", icmp, p + 4)
        p += olen
    return RouterAdvert(lifetime, tuple(prefixes), mtu)


def _ip4(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, b)


def decode_dhcp(udp_payload: bytes) -> DhcpMessage | None:
    """Decode a BOOTP/DHCPv4 message; ``None`` when too short or without the magic cookie."""
    if len(udp_payload) < 240 or udp_payload[236:240] != DHCP_MAGIC:
        return None
    op = udp_payload[0]
    (xid,) = struct.unpack_from("!I", udp_payload, 4)
    ciaddr, yiaddr = _ip4(udp_payload[12:16]), _ip4(udp_payload[16:20])
    opts: dict[int, bytes] = {}
    p = 240
    while p < len(udp_payload):
        code = udp_payload[p]
        if code == 0:
            p += 1
            continue
        if code == 255 or p + 1 >= len(udp_payload):
            break
        ln = udp_payload[p + 1]
        opts.setdefault(code, udp_payload[p + 2 : p + 2 + ln])
        p += 2 + ln
    mt = opts.get(_OPT_MSG_TYPE, b"")
    sid, req, lease, rtr = (opts.get(c) for c in (_OPT_SERVER_ID, _OPT_REQUESTED, _OPT_LEASE, _OPT_ROUTER))
    return DhcpMessage(
        op,
        xid,
        mt[0] if len(mt) == 1 else 0,
        ciaddr,
        yiaddr,
        _ip4(sid) if sid is not None and len(sid) == 4 else None,
        _ip4(req) if req is not None and len(req) == 4 else None,
        struct.unpack("!I", lease)[0] if lease is not None and len(lease) == 4 else None,
        _ip4(rtr[:4]) if rtr is not None and len(rtr) >= 4 else None,
    )
