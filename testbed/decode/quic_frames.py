"""QUIC frames of a decrypted packet payload (RFC 9000 §19; DATAGRAM, RFC 9221).

Pure: the plaintext in, a ``Frames`` record out; never raises. Frames the checker reasons
about become dataclasses (STREAM, CRYPTO, ACK, the connection-ID and path-validation frames,
CONNECTION_CLOSE, HANDSHAKE_DONE); the rest are only stepped over, by type. A frame that does
not parse ends the walk, and ``malformed`` says why (the frames before it are kept).
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.decode.quic_packet import varint

PADDING, PING, ACK, ACK_ECN = 0x00, 0x01, 0x02, 0x03
RESET_STREAM, STOP_SENDING, CRYPTO, NEW_TOKEN = 0x04, 0x05, 0x06, 0x07
NEW_CONNECTION_ID, RETIRE_CONNECTION_ID = 0x18, 0x19
PATH_CHALLENGE, PATH_RESPONSE = 0x1A, 0x1B
CONNECTION_CLOSE, CONNECTION_CLOSE_APP, HANDSHAKE_DONE = 0x1C, 0x1D, 0x1E
DATAGRAM, DATAGRAM_LEN = 0x30, 0x31
# frames of one or more varints and nothing else: type → how many
_VARINT_FRAMES = {0x10: 1, 0x11: 2, 0x12: 1, 0x13: 1, 0x14: 1, 0x15: 2, 0x16: 1, 0x17: 1}


@dataclass(frozen=True, slots=True)
class StreamFrame:
    stream_id: int
    offset: int
    data: bytes
    fin: bool

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AckFrame:
    largest: int
    delay: int
    first_range: int
    ranges: tuple[tuple[int, int], ...] = ()  # acknowledged packet numbers, inclusive, descending


@dataclass(frozen=True, slots=True)
class NewConnectionId:
    sequence: int
    retire_prior_to: int
    cid: bytes
    reset_token: bytes


@dataclass(frozen=True, slots=True)
class RetireConnectionId:
    sequence: int


@dataclass(frozen=True, slots=True)
class PathChallenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class PathResponse:
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClose:
    error: int
    application: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ResetStream:
    stream_id: int
    error: int
    final_size: int


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    pass


Frame = (StreamFrame | CryptoFrame | AckFrame | NewConnectionId | RetireConnectionId | PathChallenge
         | PathResponse | ConnectionClose | ResetStream | HandshakeDone)
_DONE = HandshakeDone()


@dataclass(frozen=True, slots=True)
class Frames:
    """The frames of one packet; ``ack_eliciting`` is False when it held only ACK, PADDING and
    CONNECTION_CLOSE (RFC 9002 §2); ``probing`` True when only PATH_CHALLENGE, PATH_RESPONSE,
    NEW_CONNECTION_ID and PADDING (a probing packet, RFC 9000 §9.1)."""

    frames: tuple[Frame, ...]
    ack_eliciting: bool
    probing: bool
    malformed: str | None = None


def parse_frames(payload: bytes) -> Frames:
    """Walk ``payload``'s frames (see the module docstring)."""
    out: list[Frame] = []
    p, n = 0, len(payload)
    eliciting = False
    probing = True
    ftype = -1
    try:
        while p < n:
            ftype = payload[p]
            if ftype == PADDING:
                p += 1
                while p < n and payload[p] == 0:
                    p += 1
                continue
            if ftype & 0x80:  # a frame type of more than one byte (RFC 9000 §12.4)
                ftype, p = varint(payload, p)
            else:
                p += 1
            if ftype not in (ACK, ACK_ECN, CONNECTION_CLOSE, CONNECTION_CLOSE_APP):
                eliciting = True
            if ftype not in (PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID):
                probing = False
            if 0x08 <= ftype <= 0x0F:  # STREAM: OFF 0x04, LEN 0x02, FIN 0x01
                sid, p = varint(payload, p)
                off = 0
                if ftype & 0x04:
                    off, p = varint(payload, p)
                if ftype & 0x02:
                    length, p = varint(payload, p)
                else:
                    length = n - p
                if p + length > n:
                    raise IndexError("STREAM data overruns the packet")
                out.append(StreamFrame(sid, off, payload[p:p + length], bool(ftype & 0x01)))
                p += length
            elif ftype in (ACK, ACK_ECN):
                largest, p = varint(payload, p)
                delay, p = varint(payload, p)
                count, p = varint(payload, p)
                first, p = varint(payload, p)
                hi = largest
                ranges = [(hi - first, hi)]
                for _ in range(count):  # RFC 9000 §19.3.1: gap, then range length
                    gap, p = varint(payload, p)
                    length, p = varint(payload, p)
                    hi = ranges[-1][0] - gap - 2
                    ranges.append((hi - length, hi))
                for _ in range(3 if ftype == ACK_ECN else 0):
                    _v, p = varint(payload, p)
                out.append(AckFrame(largest, delay, first, tuple(ranges)))
            elif ftype == CRYPTO:
                off, p = varint(payload, p)
                length, p = varint(payload, p)
                if p + length > n:
                    raise IndexError("CRYPTO data overruns the packet")
                out.append(CryptoFrame(off, payload[p:p + length]))
                p += length
            elif ftype in (PING, HANDSHAKE_DONE):
                if ftype == HANDSHAKE_DONE:
                    out.append(_DONE)
            elif ftype in _VARINT_FRAMES:
                for _ in range(_VARINT_FRAMES[ftype]):
                    _v, p = varint(payload, p)
            elif ftype == NEW_CONNECTION_ID:
                seq, p = varint(payload, p)
                rpt, p = varint(payload, p)
                clen = payload[p]
                if not 1 <= clen <= 20 or p + 1 + clen + 16 > n:
                    raise IndexError(f"NEW_CONNECTION_ID with connection ID length {clen}")
                cid = payload[p + 1:p + 1 + clen]
                p += 1 + clen
                out.append(NewConnectionId(seq, rpt, cid, payload[p:p + 16]))
                p += 16
            elif ftype == RETIRE_CONNECTION_ID:
                seq, p = varint(payload, p)
                out.append(RetireConnectionId(seq))
            elif ftype in (PATH_CHALLENGE, PATH_RESPONSE):
                if p + 8 > n:
                    raise IndexError("truncated path validation data")
                data = payload[p:p + 8]
                out.append(PathChallenge(data) if ftype == PATH_CHALLENGE else PathResponse(data))
                p += 8
            elif ftype in (CONNECTION_CLOSE, CONNECTION_CLOSE_APP):
                err, p = varint(payload, p)
                if ftype == CONNECTION_CLOSE:
                    _ft, p = varint(payload, p)
                rlen, p = varint(payload, p)
                if p + rlen > n:
                    raise IndexError("CONNECTION_CLOSE reason overruns the packet")
                reason = payload[p:p + rlen].decode("utf-8", "replace")
                p += rlen
                out.append(ConnectionClose(err, ftype == CONNECTION_CLOSE_APP, reason))
            elif ftype == RESET_STREAM:
                sid, p = varint(payload, p)
                err, p = varint(payload, p)
                size, p = varint(payload, p)
                out.append(ResetStream(sid, err, size))
            elif ftype == STOP_SENDING:
                _v, p = varint(payload, p)
                _v, p = varint(payload, p)
            elif ftype == NEW_TOKEN:
                length, p = varint(payload, p)
                if p + length > n:
                    raise IndexError("NEW_TOKEN overruns the packet")
                p += length
            elif ftype in (DATAGRAM, DATAGRAM_LEN):
                length = n - p
                if ftype == DATAGRAM_LEN:
                    length, p = varint(payload, p)
                if p + length > n:
                    raise IndexError("DATAGRAM overruns the packet")
                p += length
            else:
                return Frames(tuple(out), eliciting, False, f"unknown frame type {ftype:#x}")
    except IndexError as e:
        what = str(e) if str(e) and "index" not in str(e) else "frame truncated"
        return Frames(tuple(out), eliciting, False, f"frame type {ftype:#x}: {what}")
    return Frames(tuple(out), eliciting, probing and bool(out))


__all__ = [
    "AckFrame", "ConnectionClose", "CryptoFrame", "Frame", "Frames", "HandshakeDone",
    "NewConnectionId", "PathChallenge", "PathResponse", "ResetStream", "RetireConnectionId",
    "StreamFrame", "parse_frames",
]  # fmt: skip
