"""Stream reading of the QUIC checker: holes, retransmissions, uncaptured packets, numbered
messages directly and inside HTTP/3 DATA frames, and across HTTP/3 request streams."""

from __future__ import annotations

from testbed.conformance import quic_streams
from testbed.conformance.quic_facts import QuicConn, QuicFacts, StreamFlow
from testbed.conformance.quic_rules import continuity_quic
from testbed.conformance.where import Where
from testbed.decode.quic_frames import StreamFrame
from testbed.traffic.messages import encode_message

W = Where("x.pcap", 1, 1.0)


def _h3(body: bytes, *, headers: bytes = b"\x00\x00\xd9") -> bytes:
    """HEADERS then one DATA frame (RFC 9114 §7.2), lengths as one-byte or two-byte varints."""
    def frame(ftype: int, payload: bytes) -> bytes:
        n = len(payload)
        length = bytes([n]) if n < 64 else bytes([0x40 | n >> 8, n & 0xFF])
        return bytes([ftype]) + length + payload
    return frame(0x01, headers) + frame(0x00, body)


def _feed(fl: StreamFlow, data: bytes, pieces: list[tuple[int, int]], pn: int = 0) -> None:
    for i, (lo, hi) in enumerate(pieces):
        quic_streams.add(fl, StreamFrame(0, lo, data[lo:hi], hi == len(data)), W, pn + i, (), [])


def test_messages_in_order_out_of_order_and_retransmitted() -> None:
    data = b"".join(encode_message(i, 40, 0.0) for i in range(5))
    fl = StreamFlow()
    _feed(fl, data, [(0, 50), (100, 200), (50, 120), (0, 10)])  # a hole filled, then bytes again
    assert (fl.messages, fl.first_seq, fl.last_seq, fl.seq_faults) == (5, 0, 4, [])
    assert fl.holes == {} and fl.filled == 1 and fl.resent == 20 + 10


def test_a_missing_message_is_a_fault() -> None:
    data = b"".join(encode_message(i, 40, 0.0) for i in (0, 1, 3))
    fl = StreamFlow()
    _feed(fl, data, [(0, len(data))])
    assert [what for what, _w in fl.seq_faults] == ["messages 2..2 missing"]


def test_an_uncaptured_hole_the_receiver_acknowledged_resumes_reading() -> None:
    data = b"".join(encode_message(i, 40, 0.0) for i in range(6))
    fl = StreamFlow()
    quic_streams.add(fl, StreamFrame(0, 0, data[:80], False), W, 10, (), [])
    # packets 11 and 12 (bytes 80..170) were not captured; the receiver acknowledged 0..13
    quic_streams.add(fl, StreamFrame(0, 170, data[170:], True), W, 13, [(11, 12)], [[0, 13]])
    assert fl.holes == {} and fl.uncaptured == {80: 170}
    # messages 2 and 3 and the start of 4 were in the hole: reading resumes at message 5
    assert (fl.messages, fl.uncaptured_messages, fl.last_seq, fl.seq_faults) == (3, 3, 5, [])


def test_an_uncaptured_hole_nobody_acknowledged_stays_a_hole() -> None:
    data = b"".join(encode_message(i, 40, 0.0) for i in range(6))
    fl = StreamFlow()
    quic_streams.add(fl, StreamFrame(0, 0, data[:80], False), W, 10, (), [])
    quic_streams.add(fl, StreamFrame(0, 170, data[170:], True), W, 13, [(11, 12)], [[0, 11]])
    assert fl.holes == {80: 170} and not fl.uncaptured


def test_messages_inside_http3_data_frames_split_anywhere() -> None:
    body = b"".join(encode_message(i, 30, 0.0) for i in range(4))
    data = _h3(body)
    fl = StreamFlow()
    _feed(fl, data, [(0, 3), (3, 7), (7, 60), (60, len(data))])  # cuts inside frame headers too
    assert fl.h3 and (fl.messages, fl.first_seq, fl.last_seq, fl.unframed) == (4, 0, 3, False)


def _conn_with(flows: dict[int, StreamFlow]) -> QuicFacts:
    c = QuicConn(b"\x01" * 8, ("198.51.100.10", 1), ("203.0.113.1", 443), W, 1, keys="found")
    c.streams = {(False, sid): fl for sid, fl in flows.items()}
    q = QuicFacts(conns=[c], keylog="k.txt")
    return q


def _response(seq: int) -> StreamFlow:
    fl = StreamFlow()
    data = _h3(encode_message(seq, 40, 0.0))
    _feed(fl, data, [(0, len(data))])
    return fl


def test_numbered_gets_run_on_across_request_streams() -> None:
    ok = continuity_quic(_conn_with({0: _response(0), 4: _response(1), 8: _response(2)}))
    assert ok.status == "pass" and "3 messages over 3 HTTP/3 streams, 0..2" in ok.message
    gap = continuity_quic(_conn_with({0: _response(0), 4: _response(1), 8: _response(3)}))
    assert gap.status == "fail"
    assert gap.evidence[0].what.endswith("messages 2..2 missing between HTTP/3 streams 4 and 8")
