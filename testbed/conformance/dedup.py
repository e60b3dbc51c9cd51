"""Recognising copies of one packet captured at several points.

With one pcap per link, or ``tcpdump -i any`` seeing a packet on two interfaces, the same packet
is captured more than once; only its first copy counts. Copies are recognised by identical IP
addresses, protocol, IPv4 id and transport bytes (TTL and IP checksum change hop by hop, the
rest does not) seen at a *different* capture point within ``window`` seconds. The transport
checksum is left out too: with checksum offload a packet between two namespaces of one kernel
is captured with its SCTP CRC32c (or UDP/TCP checksum) not yet filled in on one link and filled
in on the next (a bridge computes it when it forwards), so the same packet differs there. The same bytes
seen again at the *same* capture point are a genuine retransmission and are kept, so a
retransmitted DATA chunk still counts as a duplicate TSN.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

Point = tuple[int, int, int]  # (capture file index, pcapng interface, link-layer capture point)


# where each transport keeps its checksum: (offset in its header, length)
CHECKSUM_AT = {132: (8, 4), 17: (6, 2), 6: (16, 2)}


def transport_key(proto: int, data: bytes, l4: int, end: int) -> bytes:
    """The transport bytes of a packet as a copy key: all but the checksum field."""
    spot = CHECKSUM_AT.get(proto)
    if spot is None or end - l4 < spot[0] + spot[1]:
        return data[l4:end]
    at, n = l4 + spot[0], spot[1]
    return data[l4:at] + data[at + n:end]


class CopyFilter:
    """Remembers each packet key for ``window`` seconds of capture time (input in time order)."""

    __slots__ = ("_order", "_seen", "removed", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.removed = 0
        self._seen: dict[Hashable, tuple[float, set[Point]]] = {}
        self._order: deque[tuple[float, Hashable]] = deque()

    def is_copy(self, ts: float, key: Hashable, point: Point) -> bool:
        """True when ``key`` was seen at another point less than ``window`` seconds ago."""
        ent = self._seen.get(key)
        if ent is not None and ts - ent[0] <= self.window and point not in ent[1]:
            ent[1].add(point)
            self.removed += 1
            return True
        self._seen[key] = (ts, {point})
        order = self._order
        order.append((ts, key))
        while order and ts - order[0][0] > self.window:
            old_ts, old_key = order.popleft()
            ent = self._seen.get(old_key)
            if ent is not None and ent[0] == old_ts:
                del self._seen[old_key]
        return False
