"""ASCONF events from scapy-built packets (the same path the VM test reads its pcap with)."""

from __future__ import annotations

from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.layers.sctp import (
    SCTP,
    SCTPChunkAddressConf,
    SCTPChunkAddressConfAck,
    SCTPChunkAuthentication,
    SCTPChunkData,
    SCTPChunkParamAddIPAddr,
    SCTPChunkParamDelIPAddr,
    SCTPChunkParamIPv4Addr,
)

from testbed.sctp.asconf_trace import events_from_packets


def _pkt(src: str, dst: str, *chunks):  # type: ignore[no-untyped-def]
    p = Ether() / IP(src=src, dst=dst) / SCTP(sport=1, dport=2)
    for c in chunks:
        p = p / c
    return Ether(bytes(p))  # dissect back, as from a capture


def test_asconf_with_auth_and_ack() -> None:
    req = _pkt(
        "192.0.2.10",
        "203.0.113.10",
        SCTPChunkAuthentication(shared_key_id=0, HMAC_function=1, HMAC=b"\0" * 20),
        SCTPChunkAddressConf(
            seq=7,
            params=[
                SCTPChunkParamIPv4Addr(addr="192.0.2.10"),
                SCTPChunkParamAddIPAddr(correlation_id=1, addr="198.51.100.10"),
                SCTPChunkParamDelIPAddr(correlation_id=2, addr="192.0.2.10"),
            ],
        ),
    )
    ack = _pkt("203.0.113.10", "192.0.2.10", SCTPChunkAddressConfAck(seq=7))
    data = _pkt("192.0.2.10", "203.0.113.10", SCTPChunkData(data=b"x"))
    evs = events_from_packets([req, ack, data])
    assert [(e.kind, e.seq, e.authenticated) for e in evs] == [("ASCONF", 7, True), ("ASCONF-ACK", 7, False)]
    assert evs[0].params == (("ADD_IP", "198.51.100.10"), ("DELETE_IP", "192.0.2.10"))
    assert (evs[0].src, evs[0].dst) == ("192.0.2.10", "203.0.113.10")
