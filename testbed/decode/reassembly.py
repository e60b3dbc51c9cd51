"""Reassembly the checker needs: IP fragments into datagrams, TCP byte streams into DNS messages.

Pure and bounded: state is fed packets in capture order and hands back whole datagrams or DNS
messages; memory is capped by the number of open datagrams/streams and their sizes, and state
older than ``timeout`` seconds of capture time is dropped (RFC 791's reassembly timer, RFC 8200
§4.5's 60 s). No library does this over raw capture bytes without building a packet object
per frame (scapy's ``defragment`` works on lists of its own packets), which the checker's
million-packet captures cannot afford; fragments and DNS over TCP are rare, so only they pay.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAX_DATAGRAM = 65535
MAX_OPEN = 256  # datagrams or streams held at once; the oldest is dropped beyond
MAX_PENDING_SEGMENTS = 64  # out-of-order TCP segments kept per stream


@dataclass(frozen=True, slots=True)
class Fragment:
    """One IP fragment: the datagram it belongs to and where its bytes go."""

    version: int
    proto: int
    src: bytes
    dst: bytes
    ident: int
    offset: int  # bytes into the datagram's payload
    more: bool  # more fragments follow
    payload: bytes


@dataclass(slots=True)
class _Datagram:
    first_seen: float
    parts: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None  # known once the last fragment came


class Defragmenter:
    """Collects fragments by (version, src, dst, proto, id); ``add`` returns the payload once
    every byte from 0 to the last fragment's end arrived (first copy of a byte wins)."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.open: dict[tuple[object, ...], _Datagram] = {}
        self.dropped = 0  # datagrams never completed (timed out, too many, oversize)

    def add(self, frag: Fragment, now: float) -> bytes | None:
        self._expire(now)
        key = (frag.version, frag.src, frag.dst, frag.proto, frag.ident)
        dg = self.open.get(key)
        if dg is None:
            if len(self.open) >= MAX_OPEN:
                self.open.pop(next(iter(self.open)))
                self.dropped += 1
            dg = self.open[key] = _Datagram(now)
        end = frag.offset + len(frag.payload)
        if end > MAX_DATAGRAM:
            del self.open[key]
            self.dropped += 1
            return None
        dg.parts.setdefault(frag.offset, frag.payload)
        if not frag.more:
            dg.total = end
        if dg.total is None:
            return None
        whole = bytearray(dg.total)
        have = 0  # contiguous bytes from 0
        for off in sorted(dg.parts):
            part = dg.parts[off]
            if off > have:
                return None  # a hole
            tail = part[have - off:]
            whole[have:have + len(tail)] = tail[: dg.total - have]
            have = max(have, min(off + len(part), dg.total))
        if have < dg.total:
            return None
        del self.open[key]
        return bytes(whole)

    def _expire(self, now: float) -> None:
        while self.open:
            key, dg = next(iter(self.open.items()))
            if now - dg.first_seen <= self.timeout:
                return
            del self.open[key]
            self.dropped += 1


@dataclass(slots=True)
class _Stream:
    last_seen: float
    next_seq: int | None = None  # next byte expected, None until the first segment
    buf: bytearray = field(default_factory=bytearray)
    pending: dict[int, bytes] = field(default_factory=dict)  # out-of-order segments by seq


TCP_FIN, TCP_SYN, TCP_RST = 0x01, 0x02, 0x04
MAX_MESSAGE = 65535 + 2


class DnsOverTcp:
    """Per direction of a TCP connection, the byte stream cut into RFC 1035 §4.2.2 messages
    (two-byte length prefix). Retransmitted bytes are ignored, out-of-order segments wait for
    the gap to fill; a stream first seen mid-way starts at its first segment."""

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self.streams: dict[tuple[object, ...], _Stream] = {}

    def add(self, flow: tuple[object, ...], seq: int, flags: int, payload: bytes, now: float) -> list[bytes]:
        """Feed one segment of ``flow`` (src, sport, dst, dport); return the DNS messages it
        completed (without their length prefix)."""
        self._expire(now)
        st = self.streams.get(flow)
        if flags & TCP_RST:
            self.streams.pop(flow, None)
            return []
        if st is None:
            if len(self.streams) >= MAX_OPEN:
                self.streams.pop(next(iter(self.streams)))
            st = self.streams[flow] = _Stream(now)
        st.last_seen = now
        self.streams[flow] = self.streams.pop(flow)  # most recently used last: expiry order
        if flags & TCP_SYN:
            st.next_seq, st.buf, st.pending = (seq + 1) & 0xFFFFFFFF, bytearray(), {}
            seq = (seq + 1) & 0xFFFFFFFF
        if st.next_seq is None:
            st.next_seq = seq
        if payload:
            if len(st.pending) < MAX_PENDING_SEGMENTS:
                st.pending.setdefault(seq, payload)
            self._advance(st)
        out = self._messages(st)
        if flags & TCP_FIN and not st.pending:
            self.streams.pop(flow, None)
        return out

    @staticmethod
    def _advance(st: _Stream) -> None:
        """Move every segment that now touches the stream's end into its buffer."""
        moved = True
        while moved and st.next_seq is not None:
            moved = False
            for seq in list(st.pending):
                d = (st.next_seq - seq) & 0xFFFFFFFF  # bytes of this segment already had
                data = st.pending[seq]
                if d < 0x80000000:  # starts at or before the stream's end
                    del st.pending[seq]
                    if d < len(data):
                        st.buf += data[d:]
                        st.next_seq = (st.next_seq + len(data) - d) & 0xFFFFFFFF
                        moved = True

    @staticmethod
    def _messages(st: _Stream) -> list[bytes]:
        out: list[bytes] = []
        while len(st.buf) >= 2:
            (n,) = struct.unpack_from("!H", st.buf)
            if len(st.buf) < 2 + n:
                break
            out.append(bytes(st.buf[2:2 + n]))
            del st.buf[:2 + n]
        if len(st.buf) > MAX_MESSAGE:  # cannot be a message boundary any more: resynchronise
            st.buf.clear()
        return out

    def _expire(self, now: float) -> None:
        while self.streams:
            key, st = next(iter(self.streams.items()))
            if now - st.last_seen <= self.timeout:
                return
            del self.streams[key]
