"""DHCPv6 messages (RFC 8415 §8, §21): the fields movement detection and the report use —
message type, transaction, the addresses an IA_NA carries, the status.

Hand-rolled like the DHCPv4 decoder (a few ``struct`` reads, no scapy on the mobile node).
``decode_dhcp6`` never raises: an option running past the end sets ``malformed`` and keeps what
was read before it; a payload too short for the message header is ``None``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

CLIENT_PORT, SERVER_PORT = 546, 547
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
INFORMATION_REQUEST = 11
TYPE_NAMES = {
    SOLICIT: "SOLICIT", ADVERTISE: "ADVERTISE", REQUEST: "REQUEST", CONFIRM: "CONFIRM",
    RENEW: "RENEW", REBIND: "REBIND", REPLY: "REPLY", RELEASE: "RELEASE", DECLINE: "DECLINE",
    INFORMATION_REQUEST: "INFORMATION-REQUEST",
}  # fmt: skip
CLIENT_MESSAGES = frozenset({SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE,
                             INFORMATION_REQUEST})
_OPT_IA_NA, _OPT_IAADDR, _OPT_STATUS, _OPT_RAPID_COMMIT = 3, 5, 13, 14


@dataclass(frozen=True, slots=True)
class Ia6Address:
    address: str
    preferred: int
    valid: int


@dataclass(frozen=True, slots=True)
class Dhcp6Message:
    msg_type: int
    xid: int
    addresses: tuple[Ia6Address, ...]  # the IA_NA addresses (a stateful REPLY/ADVERTISE)
    status: int | None = None  # top-level Status Code option, when present
    rapid_commit: bool = False
    malformed: str | None = None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.msg_type, f"type {self.msg_type}")

    @property
    def from_client(self) -> bool:
        return self.msg_type in CLIENT_MESSAGES


def _options(buf: bytes, off: int, end: int) -> tuple[list[tuple[int, int, int]], str | None]:
    out = []
    while off + 4 <= end:
        code, length = struct.unpack_from("!HH", buf, off)
        if off + 4 + length > end:
            return out, f"option {code} overruns the message"
        out.append((code, off + 4, off + 4 + length))
        off += 4 + length
    return out, (f"{end - off} stray bytes after the options" if off < end else None)


def decode_dhcp6(payload: bytes) -> Dhcp6Message | None:
    """A UDP payload between ports 546 and 547 as a DHCPv6 client/server message."""
    if len(payload) < 4:
        return None
    msg_type = payload[0]
    xid = int.from_bytes(payload[1:4], "big")
    opts, bad = _options(payload, 4, len(payload))
    addrs: list[Ia6Address] = []
    status = None
    rapid = False
    for code, v, end in opts:
        if code == _OPT_IA_NA and end - v >= 12:
            inner, fault = _options(payload, v + 12, end)
            bad = bad or fault
            for icode, iv, iend in inner:
                if icode == _OPT_IAADDR and iend - iv >= 24:
                    pref, valid = struct.unpack_from("!II", payload, iv + 16)
                    addrs.append(Ia6Address(str(ipaddress.IPv6Address(payload[iv:iv + 16])), pref, valid))
        elif code == _OPT_STATUS and end - v >= 2:
            (status,) = struct.unpack_from("!H", payload, v)
        elif code == _OPT_RAPID_COMMIT:
            rapid = True
    return Dhcp6Message(msg_type, xid, tuple(addrs), status, rapid, bad)
