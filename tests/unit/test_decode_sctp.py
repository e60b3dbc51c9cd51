"""SCTP chunk decoding, against packets built with scapy."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP
from scapy.layers.sctp import (
    SCTP,
    SCTPChunkAbort,
    SCTPChunkAddressConf,
    SCTPChunkAddressConfAck,
    SCTPChunkAuthentication,
    SCTPChunkCookieAck,
    SCTPChunkCookieEcho,
    SCTPChunkData,
    SCTPChunkError,
    SCTPChunkForwardTSN,
    SCTPChunkHeartbeatAck,
    SCTPChunkHeartbeatReq,
    SCTPChunkInit,
    SCTPChunkInitAck,
    SCTPChunkParamAddIPAddr,
    SCTPChunkParamDelIPAddr,
    SCTPChunkParamErrorIndication,
    SCTPChunkParamIPv4Addr,
    SCTPChunkParamIPv6Addr,
    SCTPChunkParamSetPrimaryAddr,
    SCTPChunkParamSuccessIndication,
    SCTPChunkSACK,
    SCTPChunkShutdown,
    SCTPChunkShutdownAck,
    SCTPChunkShutdownComplete,
)

from testbed.decode import decode_sctp
from testbed.decode.sctp import (
    ADD_IP,
    DELETE_IP,
    ERROR_CAUSE_IND,
    SET_PRIMARY,
    SUCCESS_IND,
    AsconfAckChunk,
    AsconfChunk,
    AuthChunk,
    DataChunk,
    ErrorChunk,
    GenericChunk,
    InitChunk,
    MalformedChunk,
    SackChunk,
    ShutdownChunk,
    chunk_spans,
    decode_chunk,
)


def _sctp(*chunks: object) -> bytes:
    pkt = SCTP(sport=5000, dport=6000, tag=0xABCDEF01)
    for c in chunks:
        pkt = pkt / c
    return bytes(pkt)


def test_common_header_and_data() -> None:
    p = decode_sctp(
        _sctp(
            SCTPChunkData(
                tsn=77, stream_id=2, stream_seq=9, proto_id=51, data=b"hello", beginning=1, ending=1
            )
        )
    )
    assert (p.sport, p.dport, p.vtag, p.malformed) == (5000, 6000, 0xABCDEF01, None)
    (d,) = p.chunks
    assert isinstance(d, DataChunk)
    assert (d.tsn, d.stream, d.ssn, d.ppid, d.payload_length, d.flags & 3) == (77, 2, 9, 51, 5, 3)


def test_init_and_init_ack_with_addresses() -> None:
    init = SCTPChunkInit(
        init_tag=1,
        a_rwnd=2,
        n_out_streams=3,
        n_in_streams=4,
        init_tsn=5,
        params=[SCTPChunkParamIPv4Addr(addr="192.0.2.1"), SCTPChunkParamIPv6Addr(addr="2001:db8::1")],
    )
    ack = SCTPChunkInitAck(init_tag=9, a_rwnd=2, n_out_streams=1, n_in_streams=1, init_tsn=10)
    a, b = decode_sctp(_sctp(init)).chunks[0], decode_sctp(_sctp(ack)).chunks[0]
    assert isinstance(a, InitChunk) and isinstance(b, InitChunk)
    assert (a.type, a.initiate_tag, a.initial_tsn, a.outbound_streams) == (1, 1, 5, 3)
    assert a.addresses == ("192.0.2.1", "2001:db8::1")
    assert (b.type, b.initiate_tag, b.initial_tsn) == (2, 9, 10)


def test_sack_gaps_and_duplicates() -> None:
    (s,) = decode_sctp(
        _sctp(SCTPChunkSACK(cumul_tsn_ack=100, a_rwnd=5000, gap_ack_list=["2:3", "5:9"], dup_tsn_list=[98]))
    ).chunks
    assert isinstance(s, SackChunk)
    assert (s.cum_tsn, s.a_rwnd, s.gaps, s.duplicates) == (100, 5000, ((2, 3), (5, 9)), (98,))


def test_auth_and_asconf_ipv4_all_parameters() -> None:
    auth = SCTPChunkAuthentication(shared_key_id=2, HMAC_function=3, HMAC=b"\x11" * 32)
    asconf = SCTPChunkAddressConf(
        seq=0xFFFFFFFF,
        params=[
            SCTPChunkParamIPv4Addr(addr="198.51.100.7"),
            SCTPChunkParamAddIPAddr(correlation_id=1, addr_type=5, addr="198.51.100.7"),
            SCTPChunkParamSetPrimaryAddr(correlation_id=2, addr_type=5, addr="198.51.100.7"),
            SCTPChunkParamDelIPAddr(correlation_id=3, addr_type=5, addr="192.0.2.7"),
        ],
    )
    p = decode_sctp(_sctp(auth, asconf))
    assert p.malformed is None
    a, c = p.chunks
    assert isinstance(a, AuthChunk) and (a.shared_key_id, a.hmac_id, a.hmac_name) == (2, 3, "SHA-256")
    assert a.hmac == b"\x11" * 32
    assert isinstance(c, AsconfChunk) and (c.serial, c.address) == (0xFFFFFFFF, "198.51.100.7")
    assert [(x.type, x.correlation_id, x.address) for x in c.params] == [
        (ADD_IP, 1, "198.51.100.7"),
        (SET_PRIMARY, 2, "198.51.100.7"),
        (DELETE_IP, 3, "192.0.2.7"),
    ]
    assert c.params[1].name == "SET_PRIMARY"


def test_asconf_ipv6_inside_ipv4_offset() -> None:
    """Parameter padding is relative to the chunk, whatever the packet's alignment."""
    asconf = SCTPChunkAddressConf(
        seq=7,
        params=[
            SCTPChunkParamIPv6Addr(addr="2001:db8:2::10"),
            SCTPChunkParamAddIPAddr(correlation_id=4, addr_type=6, addr="2001:db8:2::10"),
        ],
    )
    raw = b"\x00" * 14 + bytes(IP() / SCTP() / asconf)  # Ethernet-sized offset: not 4-aligned
    p = decode_sctp(raw, 34)
    assert p.malformed is None
    (c,) = p.chunks
    assert c.params[0].address == "2001:db8:2::10"


def test_asconf_ack_success_error_and_empty() -> None:
    cause = struct.pack("!HH", 0x00A2, 4)
    ack = SCTPChunkAddressConfAck(
        seq=12,
        params=[
            SCTPChunkParamSuccessIndication(correlation_id=1),
            SCTPChunkParamErrorIndication(correlation_id=2, error_causes=cause),
        ],
    )
    (c,) = decode_sctp(_sctp(ack)).chunks
    assert isinstance(c, AsconfAckChunk) and c.serial == 12
    assert [(x.type, x.correlation_id) for x in c.params] == [(SUCCESS_IND, 1), (ERROR_CAUSE_IND, 2)]
    assert c.params[1].causes[0].name == "Request to Delete Source IP"
    (empty,) = decode_sctp(_sctp(SCTPChunkAddressConfAck(seq=13))).chunks
    assert isinstance(empty, AsconfAckChunk) and empty.params == ()


def test_other_chunks() -> None:
    cause = struct.pack("!HH", 12, 4)
    p = decode_sctp(
        _sctp(
            SCTPChunkHeartbeatReq(),
            SCTPChunkHeartbeatAck(),
            SCTPChunkAbort(error_causes=cause),
            SCTPChunkShutdown(cumul_tsn_ack=55),
            SCTPChunkShutdownAck(),
            SCTPChunkShutdownComplete(),
            SCTPChunkCookieEcho(cookie=b"c" * 8),
            SCTPChunkCookieAck(),
            SCTPChunkError(error_causes=cause),
            SCTPChunkForwardTSN(new_tsn=99),
        )
    )
    assert p.malformed is None
    kinds = [type(c).__name__ for c in p.chunks]
    assert kinds == [
        "GenericChunk", "GenericChunk", "ErrorChunk", "ShutdownChunk", "GenericChunk",
        "GenericChunk", "GenericChunk", "GenericChunk", "ErrorChunk", "GenericChunk",
    ]  # fmt: skip
    abort, shut = p.chunks[2], p.chunks[3]
    assert isinstance(abort, ErrorChunk) and abort.causes[0].name == "User-Initiated Abort"
    assert isinstance(shut, ShutdownChunk) and shut.cum_tsn == 55
    fwd = p.chunks[-1]
    assert isinstance(fwd, GenericChunk) and fwd.name == "FORWARD_TSN"
    assert p.chunks[6].value == b"c" * 8


def test_malformed_chunks_are_reported() -> None:
    good = _sctp(SCTPChunkData(tsn=1, data=b"x" * 20))
    p = decode_sctp(good[:-5])
    assert p.malformed and "overruns" in p.malformed
    assert decode_sctp(b"\x00" * 5).malformed == "truncated SCTP common header"
    bad_asconf = bytearray(
        _sctp(
            SCTPChunkAddressConf(
                seq=1,
                params=[
                    SCTPChunkParamIPv4Addr(addr="192.0.2.1"),
                    SCTPChunkParamAddIPAddr(correlation_id=1, addr_type=5, addr="192.0.2.1"),
                ],
            )
        )
    )
    struct.pack_into("!H", bad_asconf, 12 + 8 + 2, 200)  # address parameter length overruns
    p = decode_sctp(bytes(bad_asconf))
    assert isinstance(p.chunks[0], MalformedChunk) and "ASCONF" in (p.malformed or "")


@pytest.mark.parametrize("seed", range(5))
def test_garbage_and_every_truncation_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    pkt = _sctp(
        SCTPChunkAuthentication(shared_key_id=0, HMAC_function=1, HMAC=b"\0" * 20),
        SCTPChunkAddressConf(
            seq=5,
            params=[
                SCTPChunkParamIPv4Addr(addr="192.0.2.1"),
                SCTPChunkParamDelIPAddr(correlation_id=1, addr_type=5, addr="192.0.2.1"),
            ],
        ),
        SCTPChunkSACK(cumul_tsn_ack=1, gap_ack_list=["1:2"]),
    )
    for cut in range(len(pkt)):
        decode_sctp(pkt[:cut])
    for _ in range(300):
        b = bytearray(pkt)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        decode_sctp(bytes(b))
        decode_sctp(rng.randbytes(rng.randint(0, 80)))


def test_chunk_spans_frame_what_decode_sctp_decodes() -> None:
    """The checker's hot loop reads spans; decode_sctp is spans + decode_chunk: they agree."""
    raw = _sctp(
        SCTPChunkData(tsn=77, data=b"x" * 5),  # padded to a multiple of 4
        SCTPChunkSACK(cumul_tsn_ack=12, a_rwnd=100),
        SCTPChunkAddressConf(seq=3, params=[SCTPChunkParamIPv4Addr(addr="192.0.2.1")]),
        SCTPChunkCookieAck(),  # 4 bytes: no first word
    )
    header, spans, fault = chunk_spans(raw, 0, len(raw))
    assert fault is None and header == (5000, 6000, 0xABCDEF01)
    chunks = decode_sctp(raw).chunks
    assert [s[0] for s in spans] == [c.type for c in chunks] == [0, 3, 0xC1, 11]
    assert [s[3] for s in spans] == [77, 12, 3, 0]  # TSN, cumulative TSN, serial, none
    for (_t, off, length, _w), ch in zip(spans, chunks, strict=True):
        assert decode_chunk(raw, off, length) == ch
    cut = raw[:-2]
    _h, spans2, fault2 = chunk_spans(cut, 0, len(cut))
    assert len(spans2) == 3 and fault2 == decode_sctp(cut).malformed == "2 stray bytes after the last chunk"
    assert chunk_spans(raw[:12], 0, 12) == ((5000, 6000, 0xABCDEF01), [], "SCTP packet without chunks")
    assert chunk_spans(raw, 0, 9) == (None, [], "truncated SCTP common header")


def test_auth_chunk_too_short_for_its_ids_is_malformed() -> None:
    """Found by the checker fuzz: a 4-byte AUTH chunk crashed the HMAC check."""
    import struct as _s

    from testbed.decode.sctp import MalformedChunk, decode_chunk

    buf = _s.pack("!BBH", 15, 0, 4) + b"\xc1\x00\x00\x08" + bytes(4)
    assert isinstance(decode_chunk(buf, 0, 4), MalformedChunk)
