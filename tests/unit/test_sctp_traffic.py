"""Message framing and stream-continuity accounting of the traffic app (pure parts)."""

from __future__ import annotations

import pytest

from testbed.traffic.messages import (
    HEADER,
    Message,
    SeqTracker,
    ServerStats,
    decode_message,
    encode_message,
    note_arrival,
)


def test_roundtrip_and_exact_size() -> None:
    b = encode_message(41, 200, 1234.5)
    assert len(b) == 200
    assert decode_message(b) == Message(41, 1234.5, 200)


def test_size_below_header_is_header() -> None:
    assert len(encode_message(0, 1, 0.0)) == HEADER.size


@pytest.mark.parametrize(
    "data", [b"TBSC", b"XXXX" + encode_message(1, 64, 0.0)[4:], encode_message(1, 64, 0.0)[:-1]]
)
def test_decode_rejects_bad(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_message(data)


def test_tracker_gap_dup_late() -> None:
    t = SeqTracker()
    assert [t.feed(s) for s in (0, 1, 4, 2, 2, 5)] == ["ok", "ok", "gap", "late", "dup", "ok"]
    assert t.gaps == [(2, 3)]
    assert t.missing == 1  # 3 never came
    assert t.duplicates == [2] and t.reordered == [2]


def test_note_arrival_records_source_switch() -> None:
    st, tr = ServerStats(), SeqTracker()
    for seq, src in enumerate(["192.0.2.10"] * 3 + ["198.51.100.10"] * 2):
        note_arrival(st, tr, Message(seq, 0.0, 100), 10.0 + seq, src, 1000 + seq)
    assert st.received == 5 and st.bytes == 500 and st.missing == 0
    assert st.sources == {"192.0.2.10": 3, "198.51.100.10": 2}
    assert st.source_switches == [{"seq": 3, "t": 13.0, "from": "192.0.2.10", "to": "198.51.100.10"}]
    assert st.messages[0] == (0, 10.0, "192.0.2.10", 1000)
