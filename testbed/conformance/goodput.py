"""Goodput from a capture: new TCP payload bytes per direction over time windows.

Only bytes beyond the highest sequence number a flow has sent count (a retransmission is not
goodput). The direction is the mobile node's: ``up`` from an address in the access network's
prefixes, ``down`` toward one. Read from the access router's port toward the MN, whose
capture sees the uplink after the MN's shaping and the downlink after the router's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.decode.link import PROTO_TCP, NotIP, ip_span, ntop
from testbed.decode.pcap import PcapReader
from testbed.decode.tcp import tcp_header

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Window:
    start: float  # wall seconds
    end: float
    direction: str  # up | down
    expected_kbit: float
    label: str = ""


def new_bytes(pcap: Path, prefixes: Sequence[Net]) -> list[tuple[float, str, int]]:
    """(time, direction, new payload bytes) per TCP segment that carried any."""
    high: dict[tuple[bytes, bytes, int, int], int] = {}
    out: list[tuple[float, str, int]] = []
    with PcapReader(pcap) as r:
        for t, linktype, data, _ in r:
            try:
                _, proto, src, dst, l4, end, _, _ = ip_span(linktype, data)
            except (NotIP, ValueError, IndexError):
                continue
            if proto != PROTO_TCP:
                continue
            try:
                sport, dport, seq, _, _, hlen = tcp_header(data, l4, end)
            except ValueError:
                continue
            size = end - l4 - hlen
            if size <= 0:
                continue
            key = (src, dst, sport, dport)
            end_seq = (seq + size) % (1 << 32)
            top = high.get(key)
            # how far this segment's end lies past the highest byte seen (signed, modulo 2^32): a
            # segment after a gap (bytes the capture did not see) counts whole, a resent one not
            past = size if top is None else (end_seq - top + (1 << 31)) % (1 << 32) - (1 << 31)
            fresh = min(size, past) if past > 0 else 0
            if fresh:
                high[key] = end_seq
            if fresh:
                up = any(ipaddress.ip_address(ntop(src)) in p for p in prefixes)
                out.append((t, "up" if up else "down", fresh))
    return out


def measure(samples: Iterable[tuple[float, str, int]], windows: Sequence[Window]) -> list[float]:
    """Each window's goodput in kbit/s."""
    totals = [0] * len(windows)
    for t, direction, n in samples:
        for i, w in enumerate(windows):
            if w.direction == direction and w.start <= t < w.end:
                totals[i] += n
    return [tot * 8 / 1000 / (w.end - w.start) for tot, w in zip(totals, windows, strict=True)]
