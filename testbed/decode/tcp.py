"""TCP segments (RFC 9293 §3.1): ports, sequence numbers, flags, payload length and the
Multipath TCP options among the TCP options.

``tcp_header`` is the cheap part the checker's loop calls for every TCP packet (one
``unpack_from``); ``mptcp_spans`` walks the option list only when the header has options beyond
the fixed 20 bytes. ``decode_tcp`` builds the whole ``TcpSegment`` for everyone else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from testbed.decode.mptcp import TCPOPT_MPTCP, MalformedOption, MptcpOption, decode_mptcp

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_HEADER = struct.Struct("!HHIIBB").unpack_from  # ports, seq, ack, data offset, flags
_EOL, _NOP = 0, 1


@dataclass(frozen=True, slots=True)
class TcpSegment:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload_len: int
    mptcp: tuple[MptcpOption, ...] = ()
    malformed: str | None = None

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)


def tcp_header(buf: bytes, l4: int, end: int) -> tuple[int, int, int, int, int, int]:
    """``(sport, dport, seq, ack, flags, header length)``; raises ``ValueError`` when cut."""
    if end - l4 < 20:
        raise ValueError("truncated TCP header")
    sport, dport, seq, ack, off, flags = _HEADER(buf, l4)
    hlen = (off >> 4) * 4
    if hlen < 20 or l4 + hlen > end:
        raise ValueError(f"bad TCP data offset {hlen}")
    return sport, dport, seq, ack, flags, hlen


def mptcp_spans(buf: bytes, start: int, stop: int) -> tuple[list[tuple[int, int]], str | None]:
    """``[(offset, length)]`` of the MPTCP options in ``buf[start:stop]`` (the TCP options),
    and the framing fault that stopped the walk, if any."""
    spans: list[tuple[int, int]] = []
    p = start
    while p < stop:
        kind = buf[p]
        if kind == _EOL:
            break
        if kind == _NOP:
            p += 1
            continue
        if p + 1 >= stop:
            return spans, f"TCP option {kind} without its length"
        n = buf[p + 1]
        if n < 2 or p + n > stop:
            return spans, f"TCP option {kind} of length {n} overruns the header"
        if kind == TCPOPT_MPTCP:
            spans.append((p, n))
        p += n
    return spans, None


def decode_tcp(buf: bytes, l4: int, end: int) -> TcpSegment:
    """The segment in ``buf[l4:end]``; never raises (a fault sets ``malformed``)."""
    try:
        sport, dport, seq, ack, flags, hlen = tcp_header(buf, l4, end)
    except ValueError as e:
        return TcpSegment(0, 0, 0, 0, 0, 0, malformed=str(e))
    spans, fault = mptcp_spans(buf, l4 + 20, l4 + hlen)
    payload = end - l4 - hlen
    opts = tuple(decode_mptcp(buf, p, n, syn=bool(flags & SYN), ack=bool(flags & ACK), data=payload > 0)
                 for p, n in spans)
    bad = next((f"MPTCP option: {o.reason}" for o in opts if isinstance(o, MalformedOption)), None)
    return TcpSegment(sport, dport, seq, ack, flags, payload, opts, fault or bad)
