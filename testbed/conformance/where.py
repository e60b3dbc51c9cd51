"""Where a kept packet was captured: the one location every transport's facts cite.

The pass keeps each packet as its first captured copy, located by ``Where`` (file, 1-based frame
number, capture time); the facts of every transport (``facts``, ``tcp_facts``, ``quic_facts``),
the rules' evidence and the report's ladder name frames by it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Where:
    """Evidence location: file name, 1-based frame number, capture time (epoch seconds)."""

    pcap: str
    frame: int
    time: float
