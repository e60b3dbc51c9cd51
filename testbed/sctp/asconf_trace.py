"""ASCONF exchanges read back from a capture (scapy), for tests and measurements.

Each SCTP packet becomes a ``ChunkEvent`` per chunk of interest; ASCONF requests carry their
parameters (ADD_IP / DELETE_IP / SET_PRIMARY with address) and whether an AUTH chunk came in
the same packet (RFC 5061 §4.1.1: ASCONF must be authenticated, RFC 4895).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.sctp import (
    SCTP,
    SCTPChunkAddressConf,
    SCTPChunkAddressConfAck,
    SCTPChunkAuthentication,
    SCTPChunkParamAddIPAddr,
    SCTPChunkParamDelIPAddr,
    SCTPChunkParamSetPrimaryAddr,
)
from scapy.packet import Packet
from scapy.utils import PcapReader

PARAM_KIND = {
    SCTPChunkParamAddIPAddr: "ADD_IP",
    SCTPChunkParamDelIPAddr: "DELETE_IP",
    SCTPChunkParamSetPrimaryAddr: "SET_PRIMARY",
}


@dataclass(frozen=True)
class AsconfEvent:
    """One ASCONF or ASCONF-ACK chunk seen on the wire."""

    t: float  # capture timestamp
    src: str
    dst: str
    kind: str  # "ASCONF" or "ASCONF-ACK"
    seq: int  # ASCONF serial number (the ACK echoes it)
    params: tuple[tuple[str, str], ...]  # (ADD_IP|DELETE_IP|SET_PRIMARY, address); ACK: ()
    authenticated: bool  # an AUTH chunk precedes it in the same packet


def _chunks(pkt: Packet) -> Iterable[Packet]:
    c = pkt[SCTP].payload
    while c is not None and c.__class__.__name__ not in ("NoPayload", "Padding", "Raw"):
        yield c
        c = c.payload


def events_from_packets(packets: Iterable[Packet]) -> list[AsconfEvent]:
    out: list[AsconfEvent] = []
    for pkt in packets:
        if SCTP not in pkt:
            continue
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        if ip is None:
            continue
        auth = False
        for c in _chunks(pkt):
            if isinstance(c, SCTPChunkAuthentication):
                auth = True
            elif isinstance(c, SCTPChunkAddressConfAck):  # subclass of ASCONF: test it first
                out.append(AsconfEvent(float(pkt.time), ip.src, ip.dst, "ASCONF-ACK", c.seq, (), auth))
            elif isinstance(c, SCTPChunkAddressConf):
                params = tuple((PARAM_KIND[type(p)], str(p.addr)) for p in c.params if type(p) in PARAM_KIND)
                out.append(AsconfEvent(float(pkt.time), ip.src, ip.dst, "ASCONF", c.seq, params, auth))
    return out


def read_events(pcap: Path) -> list[AsconfEvent]:
    with PcapReader(str(pcap)) as r:
        return events_from_packets(r)
