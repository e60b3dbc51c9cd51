"""The QUIC decoder against the RFC 9001 and RFC 9369 Appendix A vectors, and its faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.decode.quic_crypto import (
    TLS_CHACHA20_POLY1305_SHA256,
    V1,
    V2,
    initial_protection,
    initial_secrets,
    next_generation,
    protection,
    retry_tag_valid,
)
from testbed.decode.quic_frames import (
    AckFrame,
    CryptoFrame,
    NewConnectionId,
    PathChallenge,
    RetireConnectionId,
    StreamFrame,
    parse_frames,
)
from testbed.decode.quic_packet import (
    INITIAL,
    RETRY,
    PacketFault,
    decode_packet_number,
    long_header,
    remove_header_protection,
)
from testbed.decode.tls import client_hello_random, server_hello_suite

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures/quic/rfc_vectors.json").read_text())
DCID = bytes.fromhex(VECTORS["dcid"])
VERSIONS = {"v1": V1, "v2": V2}


def _h(name: str, v: str) -> bytes:
    return bytes.fromhex(VECTORS[v][name])


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_initial_keys_match_the_rfc(v: str) -> None:
    d = [bytes.fromhex(x) for x in VECTORS[v]["derive"]]
    client_secret, server_secret = initial_secrets(DCID, VERSIONS[v])
    assert (client_secret, server_secret) == (d[0], d[4])
    client, server = initial_protection(DCID, VERSIONS[v])
    assert (client.key, client.iv, client.hp) == (d[1], d[2], d[3])
    assert (server.key, server.iv, server.hp) == (d[5], d[6], d[7])


def _open(prot, packet: bytes, long: bool, largest: int = -1):
    if long:
        h = long_header(packet, 0, len(packet))
        pn_offset, end = h.pn_offset, h.end
    else:
        pn_offset, end = 1 + 8, len(packet)
    header, pn_len, tpn = remove_header_protection(packet, 0, pn_offset, end, prot, long)
    pn = decode_packet_number(largest, tpn, pn_len)
    return header, pn, prot.open(pn, header, packet[pn_offset + pn_len:end])


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_client_initial_decrypts_to_the_rfc_plaintext(v: str) -> None:
    client, _server = initial_protection(DCID, VERSIONS[v])
    packet = _h("long_client_encrypted_packet", v)
    h = long_header(packet, 0, len(packet))
    assert (h.version, h.kind, h.dcid, h.end) == (VERSIONS[v], INITIAL, DCID, len(packet))
    header, pn, plain = _open(client, packet, True)
    assert header == _h("long_client_plain_header", v)
    assert pn == VECTORS[v]["long_client_packet_number"]
    assert plain == _h("long_client_plain_payload", v)
    frames = parse_frames(plain)
    assert frames.malformed is None
    crypto = frames.frames[0]
    assert isinstance(crypto, CryptoFrame) and crypto.offset == 0
    assert client_hello_random(crypto.data) == bytes.fromhex(
        "ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c")


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_server_initial_decrypts_and_names_its_suite(v: str) -> None:
    _client, server = initial_protection(DCID, VERSIONS[v])
    header, pn, plain = _open(server, _h("long_server_encrypted_packet", v), True)
    assert header == _h("long_server_plain_header", v) and pn == 1
    assert plain == _h("long_server_plain_payload", v)
    frames = parse_frames(plain).frames
    assert isinstance(frames[0], AckFrame) and frames[0].largest == 0
    assert isinstance(frames[1], CryptoFrame)
    assert server_hello_suite(frames[1].data) == 0x1301


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_chacha20_short_header(v: str) -> None:
    secret = bytes.fromhex(VECTORS["chacha20_secret"])
    prot = protection(secret, TLS_CHACHA20_POLY1305_SHA256, VERSIONS[v])
    packet = _h("chacha20_client_encrypted_packet", v)
    header, pn_len, tpn = remove_header_protection(packet, 0, 1, len(packet), prot, False)
    assert header == _h("chacha20_client_plain_header", v)
    pn = decode_packet_number(654360563, tpn, pn_len)
    assert pn == VECTORS[v]["chacha20_client_packet_number"]
    assert prot.open(pn, header, packet[len(header):]) == _h("chacha20_client_plain_payload", v)


@pytest.mark.parametrize("v", ["v1", "v2"])
def test_retry_integrity_tag(v: str) -> None:
    packet = _h("retry", v)
    h = long_header(packet, 0, len(packet))
    assert (h.kind, h.scid, h.token) == (RETRY, bytes.fromhex("f067a5502a4262b5"), b"token")
    assert retry_tag_valid(packet, DCID, VERSIONS[v])
    assert not retry_tag_valid(packet, DCID[:-1] + b"\0", VERSIONS[v])


def test_a_flipped_bit_fails_the_aead_not_the_decoder() -> None:
    client, _ = initial_protection(DCID, V1)
    packet = bytearray(_h("long_client_encrypted_packet", "v1"))
    packet[-1] ^= 1
    assert _open(client, bytes(packet), True)[2] is None


def test_key_update_keeps_the_header_protection_key() -> None:
    p0 = protection(bytes(range(32)), 0x1301, V1)
    p1 = next_generation(p0)
    assert p1.hp == p0.hp and p1.key != p0.key and p1.generation == 1
    sealed = p1.seal(7, b"hdr", b"payload")
    assert p1.open(7, b"hdr", sealed) == b"payload" and p0.open(7, b"hdr", sealed) is None


@pytest.mark.parametrize(("largest", "truncated", "pn_len", "want"), [
    (0xA82F30EA, 0x9B32, 2, 0xA82F9B32),  # RFC 9000 Appendix A.3's example
    (-1, 0, 1, 0), (255, 0x00, 1, 256), (300, 0xFF, 1, 255),
])
def test_packet_number_recovery(largest: int, truncated: int, pn_len: int, want: int) -> None:
    assert decode_packet_number(largest, truncated, pn_len) == want


@pytest.mark.parametrize("data", [b"\xc0\x00\x00\x00\x01\x08", b"\xc0\x00\x00\x00\x01\x30" + bytes(60),
                                  bytes.fromhex("c00000000108") + bytes(8) + b"\x00\x00\x44\x9e"])
def test_truncated_long_headers_are_faults(data: bytes) -> None:
    with pytest.raises(PacketFault):
        long_header(data, 0, len(data))


def test_frames() -> None:
    payload = (bytes([0x0E, 0x04, 0x10]) + b"\x05hello"  # STREAM id 4 off 16 len 5
               + bytes([0x18, 0x01, 0x00, 0x04]) + b"abcd" + bytes(16)  # NEW_CONNECTION_ID
               + bytes([0x19, 0x00])  # RETIRE_CONNECTION_ID 0
               + bytes([0x1A]) + b"12345678" + bytes(10))  # PATH_CHALLENGE, PADDING
    f = parse_frames(payload)
    assert f.malformed is None and f.ack_eliciting and not f.probing
    assert f.frames == (StreamFrame(4, 16, b"hello", False), NewConnectionId(1, 0, b"abcd", bytes(16)),
                        RetireConnectionId(0), PathChallenge(b"12345678"))
    probe = parse_frames(bytes([0x1A]) + b"12345678" + bytes(30))
    assert probe.probing
    bad = parse_frames(bytes([0x0A, 0x04, 0x40]))  # STREAM whose length runs out
    assert bad.malformed is not None and bad.frames == ()
    assert parse_frames(bytes([0x01, 0x3F])).malformed == "unknown frame type 0x3f"
