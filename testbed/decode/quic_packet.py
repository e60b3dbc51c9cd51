"""QUIC packet headers (RFC 9000 §17), header protection removal (RFC 9001 §5.4) and packet
number recovery (RFC 9000 §17.1, Appendix A.3).

Pure: bytes in, frozen dataclasses or tuples out. A UDP datagram may carry several long-header
packets and at most one short-header packet last (coalesced, RFC 9000 §12.2); ``long_header``
gives each long header's extent so the caller can walk them. A short header carries no length
for its Destination Connection ID: the caller matches it against the connection IDs it knows
(``short_dcid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from testbed.decode.quic_versions import SAMPLE_LEN, TAG_LEN, V1, V2

if TYPE_CHECKING:
    from testbed.decode.quic_crypto import Protection

INITIAL, ZERO_RTT, HANDSHAKE, RETRY, ONE_RTT = "initial", "0-rtt", "handshake", "retry", "1-rtt"
VERSION_NEGOTIATION = "version negotiation"
# the long-header type bits (0x30 of the first byte) per version (RFC 9000 §17.2, RFC 9369 §3.2)
LONG_TYPES = {
    V1: (INITIAL, ZERO_RTT, HANDSHAKE, RETRY),
    V2: (RETRY, INITIAL, ZERO_RTT, HANDSHAKE),
}
MAX_CID = 20  # bytes, in versions 1 and 2 (RFC 9000 §17.2)
SPIN_BIT = 0x20  # short header (RFC 9000 §17.4)
KEY_PHASE = 0x04  # short header, once header protection is removed (RFC 9001 §6)


class PacketFault(Exception):
    """A header that does not parse: the reason names what is wrong."""


def varint(buf: bytes, p: int) -> tuple[int, int]:
    """A variable-length integer (RFC 9000 §16) at ``p``: (value, next offset). Raises
    ``IndexError`` when the buffer ends inside it."""
    b = buf[p]
    n = 1 << (b >> 6)
    if p + n > len(buf):
        raise IndexError("truncated varint")
    v = b & 0x3F
    for i in range(1, n):
        v = (v << 8) | buf[p + i]
    return v, p + n


@dataclass(frozen=True, slots=True)
class LongHeader:
    """One long-header packet in a datagram: ``start``..``end`` its bytes; ``pn_offset`` where
    its (protected) packet number begins; ``kind`` one of the type names above, or
    ``VERSION_NEGOTIATION``, or None for a version this decoder does not know."""

    version: int
    kind: str | None
    dcid: bytes
    scid: bytes
    token: bytes
    start: int
    pn_offset: int
    end: int


def long_header(buf: bytes, start: int, end: int) -> LongHeader:
    """Parse the long header at ``start`` (first byte has 0x80). A packet of an unknown
    version is returned whole (``kind`` None, ``end`` the datagram's end): its layout beyond
    the connection IDs is the version's own (RFC 8999). Raises ``PacketFault``."""
    if end - start < 7:
        raise PacketFault("long header truncated")
    first = buf[start]
    version = int.from_bytes(buf[start + 1:start + 5], "big")
    p = start + 5
    dlen = buf[p]
    if (dlen > MAX_CID and version in LONG_TYPES) or p + 1 + dlen >= end:
        raise PacketFault(f"long header: bad Destination Connection ID length {dlen}")
    dcid = bytes(buf[p + 1:p + 1 + dlen])
    p += 1 + dlen
    slen = buf[p]
    if (slen > MAX_CID and version in LONG_TYPES) or p + 1 + slen > end:
        raise PacketFault(f"long header: bad Source Connection ID length {slen}")
    scid = bytes(buf[p + 1:p + 1 + slen])
    p += 1 + slen
    if version == 0:
        return LongHeader(0, VERSION_NEGOTIATION, dcid, scid, b"", start, p, end)
    types = LONG_TYPES.get(version)
    if types is None:
        return LongHeader(version, None, dcid, scid, b"", start, p, end)
    kind = types[(first & 0x30) >> 4]
    if kind == RETRY:  # token to the end, then the 16-byte integrity tag
        if end - p < TAG_LEN:
            raise PacketFault("Retry shorter than its integrity tag")
        return LongHeader(version, kind, dcid, scid, bytes(buf[p:end - TAG_LEN]), start, end, end)
    token = b""
    try:
        if kind == INITIAL:
            tlen, p = varint(buf, p)
            if p + tlen > end:
                raise PacketFault("Initial token overruns the datagram")
            token = bytes(buf[p:p + tlen])
            p += tlen
        length, p = varint(buf, p)
    except IndexError as e:
        raise PacketFault(f"{kind} header truncated") from e
    if p + length > end:
        raise PacketFault(f"{kind} packet length {length} overruns the datagram ({end - p} bytes left)")
    return LongHeader(version, kind, dcid, scid, token, start, p, p + length)


def remove_header_protection(buf: bytes, start: int, pn_offset: int, end: int, mask_of: Protection,
                             long: bool) -> tuple[bytes, int, int]:
    """Unmask the first byte and the packet number (RFC 9001 §5.4.1): returns (the unprotected
    header bytes ``start``..end of packet number, packet number length, truncated packet
    number). The sample starts 4 bytes after the packet number's start (§5.4.2). Raises
    ``PacketFault`` when the packet is too short to sample."""
    s = pn_offset + 4
    if s + SAMPLE_LEN > end:
        raise PacketFault("packet too short for a header protection sample")
    mask = mask_of.mask(bytes(buf[s:s + SAMPLE_LEN]))
    first = buf[start] ^ (mask[0] & (0x0F if long else 0x1F))
    pn_len = (first & 0x03) + 1
    header = bytearray(buf[start:pn_offset + pn_len])
    header[0] = first
    tpn = 0
    at = pn_offset - start
    for i in range(pn_len):
        b = header[at + i] ^ mask[1 + i]
        header[at + i] = b
        tpn = (tpn << 8) | b
    return bytes(header), pn_len, tpn


def decode_packet_number(largest: int, truncated: int, pn_len: int) -> int:
    """The full packet number nearest the next expected one (RFC 9000 Appendix A.3);
    ``largest`` is the largest received so far in the space, -1 for none."""
    expected = largest + 1
    win = 1 << (pn_len * 8)
    half = win // 2
    candidate = (expected & ~(win - 1)) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + half and candidate >= win:
        return candidate - win
    return candidate


def short_dcid(buf: bytes, start: int, end: int, lengths: tuple[int, ...],
               known: dict[bytes, object]) -> bytes | None:
    """The Destination Connection ID of a short header: the first prefix of one of
    ``lengths`` that is a known connection ID (RFC 9000 §17.3: its length is the receiver's
    choice, not on the wire)."""
    for n in lengths:
        if start + 1 + n <= end:
            cid = bytes(buf[start + 1:start + 1 + n])
            if cid in known:
                return cid
    return None


__all__ = [
    "HANDSHAKE", "INITIAL", "KEY_PHASE", "LONG_TYPES", "ONE_RTT", "RETRY", "SPIN_BIT",
    "VERSION_NEGOTIATION", "ZERO_RTT", "LongHeader", "PacketFault", "decode_packet_number",
    "long_header", "remove_header_protection", "short_dcid", "varint",
]  # fmt: skip
