"""ASCONF and ASCONF-ACK chunks read back from a capture, for tests that drive kernel SCTP
directly (no scenario, no verdict): the checker's own pass (``conformance.extract``), flattened
to one record per chunk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.conformance.extract import extract
from testbed.conformance.facts import Facts
from testbed.decode.sctp import ADD_IP, DELETE_IP, SET_PRIMARY

_KINDS = (ADD_IP, DELETE_IP, SET_PRIMARY)


@dataclass(frozen=True)
class AsconfEvent:
    """One ASCONF or ASCONF-ACK chunk seen on the wire (first copy)."""

    t: float  # capture timestamp
    src: str
    dst: str
    kind: str  # "ASCONF" or "ASCONF-ACK"
    seq: int  # ASCONF serial number (the ACK echoes it)
    params: tuple[tuple[str, str], ...]  # (ADD_IP|DELETE_IP|SET_PRIMARY, address); ACK: ()
    authenticated: bool  # an AUTH chunk precedes it in the same packet


def events_from_facts(facts: Facts) -> list[AsconfEvent]:
    out = [
        AsconfEvent(
            a.where.time, a.src, a.dst, "ASCONF", a.chunk.serial,
            tuple((p.name, p.address or "") for p in a.chunk.params if p.type in _KINDS),
            a.auth is not None,
        )
        for a in facts.asconfs
    ]  # fmt: skip
    out += [
        AsconfEvent(k.where.time, k.src, k.dst, "ASCONF-ACK", k.chunk.serial, (), k.auth is not None)
        for k in facts.acks
    ]
    return sorted(out, key=lambda e: e.t)


def read_events(pcap: Path) -> list[AsconfEvent]:
    return events_from_facts(extract([pcap]))
