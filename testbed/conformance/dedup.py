"""Recognising copies of one packet captured at several points.

With one pcap per link, or ``tcpdump -i any`` seeing a packet on two interfaces, the same packet
is captured more than once; only its first copy counts. Copies are recognised by identical IP
addresses, protocol, IPv4 id and transport bytes (TTL and IP checksum change hop by hop, the
rest does not) seen at a *different* capture point within ``window`` seconds. The same bytes
seen again at the *same* capture point are a genuine retransmission and are kept, so a
retransmitted DATA chunk still counts as a duplicate TSN.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

Point = tuple[int, int, int]  # (capture file index, pcapng interface, link-layer capture point)


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
