"""DHCPv4 messages (RFC 2131 §2, options RFC 2132): the fields movement detection and the report
use — message type, transaction, assigned address, server, subnet, router, lease.

Hand-rolled like the other decoders (a few ``struct`` reads; scapy is slow per packet and heavy
to import on the mobile node). ``decode_dhcp`` never raises: a payload that is not BOOTP with the
DHCP magic cookie is ``None``; an option running past the end sets ``malformed`` and keeps what
it holds.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

SERVER_PORT, CLIENT_PORT = 67, 68
BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
TYPE_NAMES = {
    DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE", ACK: "ACK",
    NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM",
}  # fmt: skip
_OPT_MASK, _OPT_ROUTER, _OPT_REQUESTED, _OPT_LEASE, _OPT_TYPE, _OPT_SERVER_ID = 1, 3, 50, 51, 53, 54
_FIXED = 236  # BOOTP header up to the options' magic cookie


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    op: int  # BOOTREQUEST (client → server) or BOOTREPLY
    xid: int
    msg_type: int  # option 53; 0 when absent (plain BOOTP)
    ciaddr: str
    yiaddr: str
    server_id: str | None  # option 54
    requested: str | None  # option 50
    lease: int | None  # option 51, seconds
    router: str | None  # first address of option 3
    subnet: str | None  # network of yiaddr under option 1 ("192.0.2.0/24")
    malformed: str | None = None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.msg_type, f"type {self.msg_type}" if self.msg_type else "BOOTP")


def _ip4(b: bytes | None) -> str | None:
    return socket.inet_ntop(socket.AF_INET, b) if b is not None and len(b) == 4 else None


def _subnet(yiaddr: str, mask: bytes | None) -> str | None:
    if mask is None or len(mask) != 4 or yiaddr == "0.0.0.0":
        return None
    try:  # a non-contiguous mask is refused by ipaddress: no subnet then
        return str(ipaddress.IPv4Interface(f"{yiaddr}/{_ip4(mask)}").network)
    except ValueError:
        return None


def decode_dhcp(payload: bytes) -> DhcpMessage | None:
    """Decode a UDP payload as BOOTP/DHCPv4; ``None`` when too short or without the cookie."""
    if len(payload) < _FIXED + 4 or payload[_FIXED : _FIXED + 4] != MAGIC:
        return None
    opts: dict[int, bytes] = {}
    bad = None
    p = _FIXED + 4
    while p < len(payload):
        code = payload[p]
        if code == 0:  # pad
            p += 1
            continue
        if code == 255:  # end
            break
        if p + 2 > len(payload):
            bad = f"option {code} without its length"
            break
        ln = payload[p + 1]
        if p + 2 + ln > len(payload):
            bad = f"option {code} overruns the message"
        opts.setdefault(code, payload[p + 2 : p + 2 + ln])  # the first instance counts
        p += 2 + ln
    mt = opts.get(_OPT_TYPE, b"")
    lease = opts.get(_OPT_LEASE)
    router = opts.get(_OPT_ROUTER)
    yiaddr = socket.inet_ntop(socket.AF_INET, payload[16:20])
    return DhcpMessage(
        op=payload[0],
        xid=struct.unpack_from("!I", payload, 4)[0],
        msg_type=mt[0] if len(mt) == 1 else 0,
        ciaddr=socket.inet_ntop(socket.AF_INET, payload[12:16]),
        yiaddr=yiaddr,
        server_id=_ip4(opts.get(_OPT_SERVER_ID)),
        requested=_ip4(opts.get(_OPT_REQUESTED)),
        lease=struct.unpack("!I", lease)[0] if lease is not None and len(lease) == 4 else None,
        router=_ip4(router[:4]) if router is not None and len(router) >= 4 else None,
        subnet=_subnet(yiaddr, opts.get(_OPT_MASK)),
        malformed=bad,
    )
