"""The pass's one-read test of the commonest frame (Ethernet + IPv4 + SCTP with one chunk),
written out in the loop of ``conformance.extract``, against the decoder it copies
(``decode.sctp.lone_chunk``): over the synthetic captures, the fuzz corpus, mutations of them
and every header field the test reads set to edge values, each frame takes the fast path
exactly when ``lone_chunk`` accepts it, with the fields ``lone_chunk`` reads. And a packet of
one chunk leaves the SCTP facts the general path leaves."""

from __future__ import annotations

import functools
import random
from collections.abc import Hashable
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.sctp import (
    SCTP,
    SCTPChunkCookieAck,
    SCTPChunkData,
    SCTPChunkHeartbeatReq,
    SCTPChunkInit,
    SCTPChunkSACK,
    SCTPChunkShutdown,
)

from testbed.conformance.dedup import CopyFilter, Point, transport_key
from testbed.conformance.extract import _Extractor
from testbed.conformance.facts import Facts, Key
from testbed.conformance.sctp_track import SctpTracker
from testbed.conformance.where import Where
from testbed.decode.pcap import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, PcapReader
from testbed.decode.sctp import lone_chunk
from tests.support import fuzz, mptcp_synth, synth

Frames = list[tuple[float, bytes]]
# offsets of the bytes the one-read test looks at: Ethernet type, IPv4 version/IHL, total
# length, fragment field, protocol, and the one chunk's type and length
_READ = (12, 13, 14, 16, 17, 20, 21, 23, 46, 48, 49)
_EDGES = (0, 1, 3, 4, 5, 0x20, 0x40, 0x45, 0x46, 0x7F, 0x80, 0x84, 0xFF)


def _frame(*chunks: object, pad: int = 0, **ip: object) -> bytes:
    ip_hdr = IP(src="192.0.2.100", dst="203.0.113.14", id=7, **ip)
    pkt = Ether() / ip_hdr / SCTP(sport=5001, dport=5002, tag=9)
    for c in chunks:
        pkt = pkt / c
    return bytes(pkt) + b"\0" * pad


def _hand_made() -> Frames:
    """Frames at the edges of the test: trailers, DF, a VLAN tag, SCTP over UDP, short chunks."""
    data = SCTPChunkData(tsn=42, data=b"x" * 13)
    frames = [
        _frame(data),
        _frame(data, pad=6),  # an Ethernet trailer after the IP packet
        _frame(data, flags="DF"),  # DF is not a fragment
        _frame(data, flags="MF"),
        _frame(data, frag=3),
        _frame(SCTPChunkSACK(cumul_tsn_ack=41)),
        _frame(SCTPChunkHeartbeatReq()),
        _frame(SCTPChunkInit(init_tag=5, n_out_streams=1, n_in_streams=1, init_tsn=1)),
        _frame(data, SCTPChunkSACK()),
        _frame(SCTPChunkShutdown(cumul_tsn_ack=41)),  # 54 bytes: just what the test reads
        _frame(SCTPChunkCookieAck(), pad=10),  # a chunk of its header alone, padded to 60 bytes
        _frame(SCTPChunkCookieAck()),  # the same unpadded: 50 bytes, too short to read at once
        _frame(SCTPChunkData(tsn=1, data=b""))[:54],  # exactly the bytes the test reads
        _frame(data)[:53],
        bytes(Ether() / Dot1Q(vlan=3) / IP(src="192.0.2.1", dst="192.0.2.2") / SCTP() / data),
        bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=9899, dport=9899) / SCTP() / data),
        bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", options=b"\x01\x01\x01\x00") / SCTP() / data),
    ]
    return [(1.0 + i * 1e-3, f) for i, f in enumerate(frames)]


def _edges(frames: Frames) -> Frames:
    """Every lone frame with each byte the test reads set to each edge value."""
    out = []
    for t, f in frames:
        if lone_chunk(f) is None:
            continue
        for at in _READ:
            for v in _EDGES:
                g = bytearray(f)
                g[at] = v
                out.append((t, bytes(g)))
    return out


@functools.cache
def _corpus() -> list[Frames]:
    seeds = [c.sorted_frames() for c in (
        synth.trash_capture(), synth.trash_capture(synth.Knobs(v6=True)),
        synth.trash_capture(synth.Knobs(lose_tsn=True, confirm="late", abort=True)),
        mptcp_synth.mptcp_handover(), mptcp_synth.tcp_break(),
    )]  # fmt: skip
    seeds += fuzz.corpus()
    rng = random.Random(19)
    mutated = [fuzz.mutate(rng, rng.choice(seeds)) for _ in range(200)]
    # each lone frame of the ladder mutated on its own, many times over
    lone = [fr for fr in seeds[0] if lone_chunk(fr[1]) is not None]
    alone = [fuzz.mutate(rng, [rng.choice(lone)]) for _ in range(400)]
    return [*seeds, *mutated, [fr for m in alone for fr in m], _hand_made(), _edges(_hand_made()),
            _edges(seeds[0][:40])]


class _Filter(CopyFilter):
    """The pass's copy filter, noting the key of the packet it was last asked about."""

    __slots__ = ("key",)

    def is_copy(self, ts: float, key: Hashable, point: Point) -> bool:
        self.key = key
        return super().is_copy(ts, key, point)


class _Record:
    """Stands in for the pass's SCTP tracker: notes what the fast path hands on (and the copy
    key built for the packet) per frame, and passes every call through."""

    def __init__(self, sctp: SctpTracker, copies: _Filter) -> None:
        self.sctp, self.copies = sctp, copies
        self.fast: dict[int, tuple[object, ...]] = {}

    def one(self, data: bytes, l4: int, end: int, hdr: Key, ctype: int, clen: int, word: int,
            src: bytes, dst: bytes, pidx: int, fno: int, ts: float) -> Where | None:
        assert pidx == 0
        self.fast[fno] = (src, dst, end, hdr, ctype, clen, word, l4, getattr(self.copies, "key", None))
        return self.sctp.one(data, l4, end, hdr, ctype, clen, word, src, dst, pidx, fno, ts)

    def packet(self, data: bytes, l4: int, end: int, src: bytes, dst: bytes, pidx: int, fno: int,
               ts: float) -> Where | None:
        return self.sctp.packet(data, l4, end, src, dst, pidx, fno, ts)


def _fast_path(frames: Frames, tmp: Path, *, dedup: bool = False,
               linktype: int = LINKTYPE_ETHERNET) -> dict[int, tuple[object, ...]]:
    """The pass over ``frames`` written as one capture (with ``dedup``, beside an empty one, so
    that every packet goes through the copy filter): what its fast path handed on, by frame
    number."""
    synth.write_pcap(tmp / "a.pcap", frames, linktype=linktype)
    synth.write_pcap(tmp / "b.pcap", [], linktype=linktype)
    paths = [tmp / "a.pcap", tmp / "b.pcap"] if dedup else [tmp / "a.pcap"]
    ex = _Extractor([p.name for p in paths], window=0.5)
    ex.copies = _Filter(0.5)
    rec = _Record(ex.sctp, ex.copies)
    ex.sctp = rec  # type: ignore[assignment]
    readers = {i: PcapReader(p) for i, p in enumerate(paths)}
    try:
        facts = ex.run(readers)
    finally:
        for r in readers.values():
            r.close()
    if linktype == LINKTYPE_ETHERNET:  # one capture point: no packet is a copy of another
        assert facts.duplicates_removed == 0
    return rec.fast


def _expected(frames: Frames, *, dedup: bool) -> dict[int, tuple[object, ...]]:
    """What ``lone_chunk`` reads of each frame it accepts, as the fast path hands it on."""
    out = {}
    for fno, (_t, f) in enumerate(frames, 1):
        lone = lone_chunk(f)
        if lone is not None:
            src, dst, ipid, end, hdr, ctype, clen, word = lone
            key = (src, dst, 132, ipid, transport_key(132, f, 34, end)) if dedup else None
            out[fno] = (src, dst, end, hdr, ctype, clen, word, 34, key)
    return out


@pytest.mark.parametrize("dedup", [False, True], ids=["one-capture", "copy-filtered"])
def test_the_fast_path_takes_exactly_the_frames_lone_chunk_reads(tmp_path: Path, dedup: bool) -> None:
    frames = lone = 0
    for capture in _corpus():
        got = _fast_path(capture, tmp_path, dedup=dedup)
        want = _expected(capture, dedup=dedup)
        assert got.keys() == want.keys(), sorted(got.keys() ^ want.keys())[:5]
        for fno, fields in want.items():
            assert got[fno] == fields, fno
        frames += len(capture)
        lone += len(want)
    assert lone > 2000 and frames - lone > 2000  # both verdicts were put to the test, many times


@pytest.mark.parametrize("linktype", [LINKTYPE_RAW, LINKTYPE_LINUX_SLL])
def test_the_fast_path_is_for_ethernet_alone(tmp_path: Path, linktype: int) -> None:
    # the same bytes under another link type: lone_chunk's test is an Ethernet frame's
    for capture in _corpus()[:8]:
        assert _fast_path(capture, tmp_path, linktype=linktype) == {}


def _sctp_facts(f: Facts) -> tuple[object, ...]:
    return (f.flows, f.asconfs, f.acks, f.inits, f.answered_inits, f.sender_itsn, f.init_addresses,
            f.auth_vectors, f.aborts, f.heartbeats, f.confirmations, f.origins, f.malformed,
            f.malformed_examples)


def test_a_packet_of_one_chunk_leaves_what_the_general_path_leaves() -> None:
    for capture in _corpus():
        one, general = Facts(pcaps=["a.pcap"]), Facts(pcaps=["a.pcap"])
        fast, slow = SctpTracker(one), SctpTracker(general)
        for fno, (ts, f) in enumerate(capture, 1):
            lone = lone_chunk(f)
            if lone is None:
                continue
            src, dst, _ipid, end, hdr, ctype, clen, word = lone
            at = fast.one(f, 34, end, hdr, ctype, clen, word, src, dst, 0, fno, ts)
            assert at == slow.packet(f, 34, end, src, dst, 0, fno, ts)
        assert _sctp_facts(one) == _sctp_facts(general)
