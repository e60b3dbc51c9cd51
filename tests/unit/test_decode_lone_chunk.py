"""The checker's one-read frame path gives what the general path gives, and only for the frame
it is for."""

from __future__ import annotations

from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkData, SCTPChunkSACK

from testbed.decode.link import LINKTYPE_ETHERNET, ip_span
from testbed.decode.sctp import chunk_spans, lone_chunk


def _frame(*chunks, **ip) -> bytes:
    ip_hdr = IP(src="192.0.2.100", dst="203.0.113.14", id=7, **ip)
    pkt = Ether() / ip_hdr / SCTP(sport=5001, dport=5002, tag=9)
    for c in chunks:
        pkt = pkt / c
    return bytes(pkt)


def test_one_data_chunk_reads_as_the_general_path_does():
    data = _frame(SCTPChunkData(tsn=42, data=b"x" * 13))
    src, dst, ipid, end, hdr, ctype, clen, word = lone_chunk(data)
    _v, proto, src2, dst2, l4, end2, ipid2, _cp = ip_span(LINKTYPE_ETHERNET, data)
    hdr2, spans, fault = chunk_spans(data, l4, end2)
    assert (src, dst, ipid, end, hdr) == (src2, dst2, ipid2, end2, hdr2) and fault is None
    assert [(ctype, 46, clen, word)] == list(spans) and word == 42


def test_other_frames_take_the_general_path():
    assert lone_chunk(_frame(SCTPChunkData(tsn=1, data=b"a"), SCTPChunkSACK())) is None  # two chunks
    assert lone_chunk(_frame(SCTPChunkData(tsn=1, data=b"a"), flags="MF")) is None  # a fragment
    assert lone_chunk(bytes(Ether() / IP(proto=17) / (b"\0" * 40))) is None  # not SCTP
    assert lone_chunk(_frame(SCTPChunkData(tsn=1, data=b"a"))[:50]) is None  # cut short
