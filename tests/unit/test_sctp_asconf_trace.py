"""The ASCONF trace the VM test reads its capture with, from scapy-built packets."""

from __future__ import annotations

from pathlib import Path

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

from tests.support.asconf_trace import read_events
from tests.support.synth import write_pcap


def _pkt(src: str, dst: str, *chunks: object) -> bytes:
    p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / SCTP()
    for c in chunks:
        p = p / c
    return bytes(p)


def test_asconf_with_auth_and_ack(tmp_path: Path) -> None:
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
    write_pcap(tmp_path / "t.pcap", [(1.0, req), (1.001, ack), (1.002, data)])
    evs = read_events(tmp_path / "t.pcap")
    assert [(e.kind, e.seq, e.authenticated) for e in evs] == [("ASCONF", 7, True), ("ASCONF-ACK", 7, False)]
    assert evs[0].params == (("ADD_IP", "198.51.100.10"), ("DELETE_IP", "192.0.2.10"))
    assert (evs[0].src, evs[0].dst) == ("192.0.2.10", "203.0.113.10")
    assert evs[1].t == 1.001
