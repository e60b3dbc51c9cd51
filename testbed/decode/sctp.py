"""SCTP common header and chunks (RFC 9260, ASCONF RFC 5061, AUTH RFC 4895) as frozen dataclasses.

Chunks the mobility checker reasons about get their own class; the rest decode as
``GenericChunk`` with the raw value. ``decode_chunk`` never raises: bad input becomes a
``MalformedChunk`` carrying the reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from testbed.decode.fault import DecodeFault
from testbed.decode.link import ntop

# Chunk types
DATA, INIT, INIT_ACK, SACK, HEARTBEAT, HEARTBEAT_ACK, ABORT = 0, 1, 2, 3, 4, 5, 6
SHUTDOWN, SHUTDOWN_ACK, ERROR, COOKIE_ECHO, COOKIE_ACK = 7, 8, 9, 10, 11
SHUTDOWN_COMPLETE, AUTH, ASCONF_ACK, ASCONF, FORWARD_TSN = 14, 15, 0x80, 0xC1, 0xC0

CHUNK_NAMES = {
    DATA: "DATA", INIT: "INIT", INIT_ACK: "INIT_ACK", SACK: "SACK", HEARTBEAT: "HEARTBEAT",
    HEARTBEAT_ACK: "HEARTBEAT_ACK", ABORT: "ABORT", SHUTDOWN: "SHUTDOWN",
    SHUTDOWN_ACK: "SHUTDOWN_ACK", ERROR: "ERROR", COOKIE_ECHO: "COOKIE_ECHO",
    COOKIE_ACK: "COOKIE_ACK", SHUTDOWN_COMPLETE: "SHUTDOWN_COMPLETE", AUTH: "AUTH",
    ASCONF_ACK: "ASCONF_ACK", ASCONF: "ASCONF", FORWARD_TSN: "FORWARD_TSN",
    12: "ECNE", 13: "CWR", 0x40: "I_DATA", 0x82: "RE_CONFIG", 0x84: "PAD", 0xC2: "I_FORWARD_TSN",
}  # fmt: skip

# SCTP over UDP (RFC 6951): the IANA port, which the checker decodes as SCTP (a lab
# encapsulating on another port is seen as plain UDP)
SCTP_UDP_PORT = 9899

# ASCONF parameter types
ADD_IP, DELETE_IP, SET_PRIMARY = 0xC001, 0xC002, 0xC004
ERROR_CAUSE_IND, SUCCESS_IND = 0xC003, 0xC005
PARAM_NAMES = {
    ADD_IP: "ADD_IP", DELETE_IP: "DELETE_IP", SET_PRIMARY: "SET_PRIMARY",
    ERROR_CAUSE_IND: "ERROR_CAUSE_INDICATION", SUCCESS_IND: "SUCCESS_INDICATION",
    0xC006: "ADAPTATION_LAYER_INDICATION", 0x8008: "SUPPORTED_EXTENSIONS",
    5: "IPV4_ADDRESS", 6: "IPV6_ADDRESS", 7: "STATE_COOKIE", 9: "COOKIE_PRESERVATIVE",
    11: "HOSTNAME_ADDRESS", 12: "SUPPORTED_ADDRESS_TYPES", 0x8000: "ECN_CAPABLE",
    0x8002: "RANDOM", 0x8003: "CHUNK_LIST", 0x8004: "REQUESTED_HMAC_ALGORITHM",
    0xC000: "FORWARD_TSN_SUPPORTED",
}  # fmt: skip
HMAC_NAMES = {1: "SHA-1", 3: "SHA-256"}
ERROR_CAUSE_NAMES = {
    1: "Invalid Stream Identifier", 2: "Missing Mandatory Parameter", 3: "Stale Cookie Error",
    4: "Out of Resource", 5: "Unresolvable Address", 6: "Unrecognized Chunk Type",
    7: "Invalid Mandatory Parameter", 8: "Unrecognized Parameters", 9: "No User Data",
    10: "Cookie Received While Shutting Down", 11: "Restart with New Addresses",
    12: "User-Initiated Abort", 13: "Protocol Violation", 0x00A0: "Request to Delete Last IP",
    0x00A1: "Operation Refused Due to Resource Shortage", 0x00A2: "Request to Delete Source IP",
    0x00A3: "Association Aborted Due to Illegal ASCONF-ACK",
    0x00A4: "Request Refused - No Authorization", 0x0105: "Unsupported HMAC Identifier",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ErrorCause:
    code: int
    info: bytes

    @property
    def name(self) -> str:
        return ERROR_CAUSE_NAMES.get(self.code, f"cause {self.code}")


@dataclass(frozen=True, slots=True)
class Param:
    """A TLV parameter as found in INIT/INIT-ACK (value kept raw)."""

    type: int
    value: bytes


@dataclass(frozen=True, slots=True)
class AsconfParam:
    """One ASCONF request (ADD_IP, DELETE_IP, SET_PRIMARY...) or ASCONF-ACK response parameter."""

    type: int
    correlation_id: int
    address: str | None  # ADD/DELETE/SET_PRIMARY's address parameter
    causes: tuple[ErrorCause, ...] = ()  # ERROR_CAUSE_INDICATION only

    @property
    def name(self) -> str:
        return PARAM_NAMES.get(self.type, f"0x{self.type:04x}")


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """What every decoded chunk starts with: its type and flags."""

    type: int
    flags: int


@dataclass(frozen=True, slots=True)
class DataChunk(ChunkHeader):
    tsn: int
    stream: int
    ssn: int
    ppid: int
    payload_length: int


@dataclass(frozen=True, slots=True)
class InitChunk(ChunkHeader):
    """INIT or INIT-ACK (``type`` says which)."""

    initiate_tag: int
    a_rwnd: int
    outbound_streams: int
    inbound_streams: int
    initial_tsn: int
    params: tuple[Param, ...]
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SackChunk:
    type: int
    flags: int
    cum_tsn: int
    a_rwnd: int
    gaps: tuple[tuple[int, int], ...]
    duplicates: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AuthChunk(ChunkHeader):
    shared_key_id: int
    hmac_id: int
    hmac: bytes

    @property
    def hmac_name(self) -> str:
        return HMAC_NAMES.get(self.hmac_id, f"hmac {self.hmac_id}")


@dataclass(frozen=True, slots=True)
class AsconfChunk(ChunkHeader):
    serial: int
    address: str | None  # the mandatory address parameter (lookup address)
    params: tuple[AsconfParam, ...]


@dataclass(frozen=True, slots=True)
class AsconfAckChunk(ChunkHeader):
    """ASCONF-ACK. Linux sends no parameters on success: every request implicitly succeeded."""

    serial: int
    params: tuple[AsconfParam, ...]


@dataclass(frozen=True, slots=True)
class ErrorChunk(ChunkHeader):
    """ERROR or ABORT (``type`` says which); ABORT's T bit is ``flags & 1``."""

    causes: tuple[ErrorCause, ...]


@dataclass(frozen=True, slots=True)
class ShutdownChunk(ChunkHeader):
    cum_tsn: int


@dataclass(frozen=True, slots=True)
class GenericChunk(ChunkHeader):
    """HEARTBEAT(-ACK), COOKIE-*, SHUTDOWN-ACK/COMPLETE, FORWARD-TSN and unknown types."""

    value: bytes

    @property
    def name(self) -> str:
        return CHUNK_NAMES.get(self.type, f"chunk {self.type}")


@dataclass(frozen=True, slots=True)
class MalformedChunk:
    type: int
    reason: str


Chunk = (
    DataChunk | InitChunk | SackChunk | AuthChunk | AsconfChunk | AsconfAckChunk | ErrorChunk
    | ShutdownChunk | GenericChunk | MalformedChunk
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SCTPPacket:
    sport: int
    dport: int
    vtag: int
    checksum: int
    chunks: tuple[Chunk, ...]
    malformed: str | None = None  # reason, when the packet could not be fully decoded


def _tlvs(buf: bytes, off: int, end: int) -> list[tuple[int, int, int]]:
    """Split ``buf[off:end]`` into ``(type, value offset, value end)`` of padded TLVs."""
    out = []
    while off + 4 <= end:
        t, ln = struct.unpack_from("!HH", buf, off)
        if ln < 4 or off + ln > end:
            raise DecodeFault(f"parameter 0x{t:04x} length {ln} overruns its chunk")
        out.append((t, off + 4, off + ln))
        off += (ln + 3) & ~3
    if end - off not in (0, 1, 2, 3) and off < end:
        raise DecodeFault("trailing bytes after parameters")
    return out


def _address(buf: bytes, t: int, v: int, e: int) -> str:
    if t == 5 and e - v == 4:
        return ntop(buf[v:e])
    if t == 6 and e - v == 16:
        return ntop(buf[v:e])
    raise DecodeFault(f"expected an IPv4/IPv6 address parameter, got type 0x{t:04x} len {e - v}")


def _causes(buf: bytes, off: int, end: int) -> tuple[ErrorCause, ...]:
    return tuple(ErrorCause(t, buf[v:e]) for t, v, e in _tlvs(buf, off, end))


def _asconf_params(buf: bytes, tlvs: list[tuple[int, int, int]]) -> tuple[AsconfParam, ...]:
    out = []
    for t, v, e in tlvs:
        if t in (ADD_IP, DELETE_IP, SET_PRIMARY):
            (corr,) = struct.unpack_from("!I", buf, v)
            inner = _tlvs(buf, v + 4, e)
            if len(inner) != 1:
                raise DecodeFault(f"{PARAM_NAMES[t]} must carry exactly one address parameter")
            out.append(AsconfParam(t, corr, _address(buf, *inner[0])))
        elif t == ERROR_CAUSE_IND:
            (corr,) = struct.unpack_from("!I", buf, v)
            out.append(AsconfParam(t, corr, None, _causes(buf, v + 4, e)))
        elif t == SUCCESS_IND:
            (corr,) = struct.unpack_from("!I", buf, v)
            out.append(AsconfParam(t, corr, None))
        else:  # e.g. adaptation layer indication: keep the type, no correlation id
            out.append(AsconfParam(t, 0, None))
    return tuple(out)


def _decode(buf: bytes, off: int, length: int) -> Chunk:
    ctype, flags = buf[off], buf[off + 1]
    v, end = off + 4, off + length
    if ctype == DATA:
        tsn, sid, ssn, ppid = struct.unpack_from("!IHHI", buf, v)
        if length < 16:
            raise DecodeFault("DATA chunk shorter than 16 bytes")
        return DataChunk(ctype, flags, tsn, sid, ssn, ppid, length - 16)
    if ctype in (INIT, INIT_ACK):
        tag, rwnd, nout, nin, itsn = struct.unpack_from("!IIHHI", buf, v)
        params = tuple(Param(t, buf[pv:pe]) for t, pv, pe in _tlvs(buf, v + 16, end))
        addrs = tuple(ntop(p.value) for p in params if p.type in (5, 6) and len(p.value) in (4, 16))
        return InitChunk(ctype, flags, tag, rwnd, nout, nin, itsn, params, addrs)
    if ctype == SACK:
        cum, rwnd, ngap, ndup = struct.unpack_from("!IIHH", buf, v)
        if 16 + 4 * (ngap + ndup) > length:
            raise DecodeFault(f"SACK with {ngap} gaps and {ndup} dups overruns its chunk")
        g = struct.unpack_from(f"!{2 * ngap}H", buf, v + 12)
        d = struct.unpack_from(f"!{ndup}I", buf, v + 12 + 4 * ngap)
        return SackChunk(ctype, flags, cum, rwnd, tuple(zip(g[::2], g[1::2], strict=True)), d)
    if ctype == AUTH:
        if length < 8:
            raise DecodeFault(f"AUTH chunk of {length} bytes has no room for its key and HMAC ids")
        kid, hid = struct.unpack_from("!HH", buf, v)
        return AuthChunk(ctype, flags, kid, hid, buf[v + 4 : end])
    if ctype == ASCONF:
        (serial,) = struct.unpack_from("!I", buf, v)
        tlvs = _tlvs(buf, v + 4, end)
        if not tlvs or tlvs[0][0] not in (5, 6):
            raise DecodeFault("ASCONF without its address parameter")
        t, pv, pe = tlvs[0]
        addr = _address(buf, t, pv, pe)
        return AsconfChunk(ctype, flags, serial, addr, _asconf_params(buf, tlvs[1:]))
    if ctype == ASCONF_ACK:
        (serial,) = struct.unpack_from("!I", buf, v)
        return AsconfAckChunk(ctype, flags, serial, _asconf_params(buf, _tlvs(buf, v + 4, end)))
    if ctype in (ERROR, ABORT):
        return ErrorChunk(ctype, flags, _causes(buf, v, end))
    if ctype == SHUTDOWN:
        return ShutdownChunk(ctype, flags, struct.unpack_from("!I", buf, v)[0])
    return GenericChunk(ctype, flags, buf[v:end])


def decode_chunk(buf: bytes, off: int, length: int) -> Chunk:
    """Decode the chunk at ``buf[off:off+length]`` (length from its header, padding excluded)."""
    try:
        return _decode(buf, off, length)
    except (DecodeFault, struct.error, IndexError, ValueError) as e:
        reason = str(e) if isinstance(e, DecodeFault) else f"truncated chunk ({e})"
        return MalformedChunk(buf[off] if off < len(buf) else -1, reason)


_HEADER = struct.Struct("!HHI").unpack_from  # ports and verification tag
_FIRST = struct.Struct("!HHI4xBBHI").unpack_from  # those, and the first chunk's header and word
_CHUNK8 = struct.Struct("!BBHI").unpack_from  # chunk header and the value's first word
_CHUNK4 = struct.Struct("!BBH").unpack_from
Span = tuple[int, int, int, int]  # (chunk type, offset, length, first word of the value or 0)


def chunk_spans(buf: bytes, off: int, end: int) -> tuple[tuple[int, int, int] | None, list[Span], str | None]:
    """Frame an SCTP packet without decoding its chunks: ``((sport, dport, vtag), spans, fault)``.

    The header triple is ``None`` when even the common header is cut. Each span's first word is
    the TSN of a DATA chunk, the cumulative TSN of a SACK, the serial of an ASCONF: what the
    checker reads for every DATA without building a ``DataChunk``. ``fault`` names the framing
    error that stopped the walk (the spans before it are kept). ``decode_sctp`` is this plus
    ``decode_chunk`` per span.
    """
    if end - off >= 20:  # common header and a first chunk header, read at once
        sport, dport, vtag, ctype, _flags, clen, word = _FIRST(buf, off)
        header = (sport, dport, vtag)
        if clen >= 4 and off + 12 + ((clen + 3) & ~3) == end:  # one chunk: a lone DATA or SACK
            return header, [(ctype, off + 12, clen, word)], None
    elif end - off < 12:
        return None, [], "truncated SCTP common header"
    else:
        header = _HEADER(buf, off)
    spans: list[Span] = []
    p = off + 12
    while p + 4 <= end:
        if p + 8 <= end:
            ctype, _flags, clen, word = _CHUNK8(buf, p)
        else:
            ctype, _flags, clen = _CHUNK4(buf, p)
            word = 0
        if clen < 4 or p + clen > end:
            return header, spans, f"chunk {CHUNK_NAMES.get(ctype, ctype)} length {clen} overruns the packet"
        spans.append((ctype, p, clen, word))
        p += (clen + 3) & ~3
    if p < end:
        return header, spans, f"{end - p} stray bytes after the last chunk"
    return header, spans, None if spans else "SCTP packet without chunks"


# Ethernet type; IPv4 version/IHL, total length, id, fragment field, protocol, addresses; SCTP
# ports, tag and the one chunk's type, flags, length and first value word: 54 bytes, one read
LONE_FRAME = struct.Struct("!12xHBxHHHxB2x4s4sHHI4xBBHI").unpack_from
LoneChunk = tuple[bytes, bytes, int, int, tuple[int, int, int], int, int, int]


def lone_chunk(buf: bytes) -> LoneChunk | None:
    """The commonest frame of a lab capture read at once: Ethernet + IPv4 (no options,
    unfragmented, complete) + SCTP with exactly one chunk (a DATA or a SACK).

    Returns ``(src, dst, ip id, l4 end, (sport, dport, vtag), chunk type, chunk length, first
    value word)``, or None for any other frame (which then goes through ``link.ip_span`` and
    ``chunk_spans``, the general path that frames the same bytes the same way). One
    ``unpack_from`` per frame. The checker's pass writes this test out in its loop (a call per
    packet would cost it a tenth of its time); this function is the reference the written-out
    test is held to, frame by frame.
    """
    if len(buf) < 54:
        return None
    (etype, vihl, total, ipid, frag, proto, src, dst,
     sport, dport, vtag, ctype, _fl, clen, word) = LONE_FRAME(buf, 0)
    end = 14 + total
    if (etype != 0x0800 or vihl != 0x45 or proto != 132 or frag & 0x3FFF or end > len(buf)
            or clen < 4 or 46 + ((clen + 3) & ~3) != end):
        return None
    return src, dst, ipid, end, (sport, dport, vtag), ctype, clen, word


def decode_sctp(buf: bytes, off: int = 0, end: int | None = None) -> SCTPPacket:
    """Decode an SCTP packet in ``buf[off:end]``; never raises."""
    end = len(buf) if end is None else end
    header, spans, bad = chunk_spans(buf, off, end)
    if header is None:
        return SCTPPacket(0, 0, 0, 0, (), bad)
    chunks: list[Chunk] = []
    first_bad = None
    for ctype, p, clen, _word in spans:
        ch = decode_chunk(buf, p, clen)
        chunks.append(ch)
        if isinstance(ch, MalformedChunk) and first_bad is None:
            first_bad = f"{CHUNK_NAMES.get(ctype, ctype)}: {ch.reason}"
    (checksum,) = struct.unpack_from("!I", buf, off + 8)
    return SCTPPacket(header[0], header[1], header[2], checksum, tuple(chunks), first_bad or bad)
