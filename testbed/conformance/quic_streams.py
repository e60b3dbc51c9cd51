"""One direction of a QUIC stream as the capture shows it: offsets covered, holes, and the
numbered messages (``testbed.traffic.messages``) its bytes carry, read in order as the receiver
gets them: directly, or from the DATA frames of an HTTP/3 request or response (the ngtcp2
pairings carry them as the body of a GET).

A hole is a range of offsets jumped over. A later frame covering it (a retransmission, RFC 9000
§13.3) fills it; one never filled is a break, unless the packets that carried it were not
captured: the sender's packet numbers jump across it and the receiver acknowledged those numbers
(a loaded tcpdump drops packets). Such a hole is counted apart, and message reading resumes at
the next message after it.
"""

from __future__ import annotations

from collections.abc import Sequence

from testbed.conformance.quic_facts import StreamFlow
from testbed.conformance.where import Where
from testbed.decode.quic_frames import StreamFrame
from testbed.decode.quic_packet import varint
from testbed.traffic.messages import HEADER, MAGIC

_MAX_PENDING = 4096  # out-of-order pieces kept per direction for message reading
_HSIZE = HEADER.size
_H3_DATA, _H3_HEADERS = 0x00, 0x01  # HTTP/3 frame types (RFC 9114 §7.2)


Acked = list[list[int]]  # disjoint inclusive packet number ranges a receiver acknowledged, ascending


def acked_add(acked: Acked, ranges: tuple[tuple[int, int], ...]) -> None:
    """Merge an ACK frame's ranges into what its sender acknowledged so far."""
    for lo, hi in ranges:
        out: Acked = []
        placed = False
        for r in acked:
            if r[1] + 1 < lo:
                out.append(r)
            elif hi + 1 < r[0]:
                if not placed:
                    out.append([lo, hi])
                    placed = True
                out.append(r)
            else:
                lo, hi = min(lo, r[0]), max(hi, r[1])
        if not placed:
            out.append([lo, hi])
        acked[:] = sorted(out)


def _covered(acked: Acked, a: int, b: int) -> bool:
    return any(lo <= a and b <= hi for lo, hi in acked)


def add(fl: StreamFlow, fr: StreamFrame, where: Where, pn: int, gaps: Sequence[tuple[int, int]],
        acked: Acked) -> bool:
    """Account one STREAM frame of the packet numbered ``pn``; ``gaps`` are the sender's
    packet numbers not captured (recent ranges), ``acked`` what the receiver acknowledged so
    far. True when the frame carried new data (beyond the highest offset seen)."""
    fl.frames += 1
    if fl.first is None:
        fl.first = where
    lo, hi = fr.offset, fr.end
    if fr.fin:
        fl.fin = hi
    if hi <= lo:
        return False
    if lo > fl.high:  # a jump: the bytes between are missing for now
        fl.holes[fl.high] = lo
        fl.hole_where[fl.high] = where
        # the packets not captured since the one that brought the highest offset so far
        since = [g for g in gaps if fl.high_pn < g[0] and g[1] < pn]
        if since:
            fl.hole_pns[fl.high] = (since[0][0], since[-1][1])
    new = hi > fl.high
    if lo < fl.high:  # some or all seen before, unless it fills a hole
        _fill(fl, lo, min(hi, fl.high))
    if new:
        fl.high, fl.high_pn = hi, pn
    _deliver(fl, lo, fr.data, where)
    if fl.hole_pns and acked:
        acknowledged(fl, acked, where)
    return new


def acknowledged(fl: StreamFlow, acked: Acked, where: Where) -> None:
    """Holes whose uncaptured packets the receiver acknowledged were delivered, only not
    captured."""
    for start, (a, b) in list(fl.hole_pns.items()):
        if start in fl.holes and _covered(acked, a, b):
            del fl.hole_pns[start]
            fl.uncaptured[start] = fl.holes.pop(start)
            fl.hole_where.pop(start, None)
            _skip(fl, start, fl.uncaptured[start], where)


def _fill(fl: StreamFlow, lo: int, hi: int) -> None:
    """Bytes ``lo..hi`` below the highest offset: fill the holes they cover, count the rest as
    sent again."""
    covered = 0
    for start, stop in list(fl.holes.items()):
        a, b = max(start, lo), min(stop, hi)
        if a >= b:
            continue
        covered += b - a
        del fl.holes[start]
        w = fl.hole_where.pop(start, None)
        gap = fl.hole_pns.pop(start, None)
        for rest_lo, rest_hi in ((start, a), (b, stop)):
            if rest_lo < rest_hi:
                fl.holes[rest_lo] = rest_hi
                if w is not None:
                    fl.hole_where[rest_lo] = w
                if gap is not None:
                    fl.hole_pns[rest_lo] = gap
        if start >= a and b >= stop:
            fl.filled += 1
    fl.resent += (hi - lo) - covered


def _skip(fl: StreamFlow, start: int, stop: int, where: Where) -> None:
    """Reading in order goes on after an uncaptured hole, from the next message header (not
    within HTTP/3, whose frame boundaries the hole took along: message reading stops there)."""
    if fl.unframed or fl.delivered != start:
        return
    if fl.h3:
        fl.unframed = True
        return
    fl.delivered, fl.partial, fl.resync = stop, b"", True
    _deliver(fl, stop, b"", where)


def _deliver(fl: StreamFlow, offset: int, data: bytes, where: Where) -> None:
    """Take the stream's bytes in order (out-of-order pieces wait) and read them."""
    if fl.unframed:
        return
    if offset > fl.delivered:
        if len(fl.pending) < _MAX_PENDING:
            fl.pending[offset] = data
        return
    if offset + len(data) < fl.delivered:
        return
    chunk = data[fl.delivered - offset:]
    fl.delivered = max(fl.delivered, offset + len(data))
    while fl.pending:
        nxt = min(fl.pending)
        if nxt > fl.delivered:
            break
        piece = fl.pending.pop(nxt)
        if nxt + len(piece) > fl.delivered:
            chunk += piece[fl.delivered - nxt:]
            fl.delivered = nxt + len(piece)
    if fl.h3 is None and chunk:
        # a request or response stream of HTTP/3 opens with HEADERS (RFC 9114 §4.1): the
        # messages are in its DATA frames' payloads
        fl.h3 = chunk[0] == _H3_HEADERS
    _messages(fl, _h3_body(fl, chunk) if fl.h3 else chunk, where)


def _h3_body(fl: StreamFlow, chunk: bytes) -> bytes:
    """The DATA frames' payload bytes in ``chunk`` (RFC 9114 §7.1: type, length, payload)."""
    buf, out, p = fl.h3_head + chunk, bytearray(), 0
    fl.h3_head = b""
    while p < len(buf):
        if fl.h3_left:
            n = min(fl.h3_left, len(buf) - p)
            if fl.h3_data:
                out += buf[p:p + n]
            p += n
            fl.h3_left -= n
            continue
        try:
            ftype, q = varint(buf, p)
            length, q = varint(buf, q)
        except IndexError:  # the frame header goes on in the next bytes
            fl.h3_head = buf[p:]
            break
        fl.h3_data, fl.h3_left, p = ftype == _H3_DATA, length, q
    return bytes(out)


def _messages(fl: StreamFlow, data: bytes, where: Where) -> None:
    """Read numbered messages (``testbed.traffic.messages``' framing) from in-order bytes."""
    buf = fl.partial + data
    at = 0
    if fl.resync:  # after bytes that were not captured: the next message header
        at = buf.find(MAGIC)
        if at < 0:
            fl.partial = buf[-(len(MAGIC) - 1):]
            return
        fl.resync = False
        fl.after_gap = True
    while len(buf) - at >= _HSIZE:
        magic, length, seq, _sent = HEADER.unpack_from(buf, at)
        if magic != MAGIC or length < _HSIZE:
            if fl.messages:  # a message stream that stops being one
                fl.seq_faults.append((f"bytes at offset {fl.delivered - len(buf) + at} are not a message",
                                      where))
            fl.unframed = True  # else not a message stream (another app's): not read
            fl.partial = b""
            return
        if len(buf) - at < length:
            break
        at += length
        fl.messages += 1
        if fl.first_seq is None:
            fl.first_seq = seq
        elif fl.last_seq is not None and seq != fl.last_seq + 1:
            if fl.after_gap and seq > fl.last_seq:  # the messages between were not captured
                fl.uncaptured_messages += seq - fl.last_seq - 1
            else:
                what = (f"message {seq} repeats" if seq <= fl.last_seq
                        else f"messages {fl.last_seq + 1}..{seq - 1} missing")
                fl.seq_faults.append((what, where))
        fl.after_gap = False
        fl.last_seq = seq if fl.last_seq is None else max(fl.last_seq, seq)
    fl.partial = buf[at:]


__all__ = ["Acked", "acked_add", "acknowledged", "add"]
