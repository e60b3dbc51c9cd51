"""MPTCP option decoding and the keyed values, against bytes built field by field and against
values Linux 6.18 put on the wire in the lab (keys, tokens, HMACs of one captured handover)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from testbed.decode import decode_frame
from testbed.decode.mptcp import (
    AddAddr,
    Dss,
    MalformedOption,
    MpCapable,
    MpJoin,
    MpOther,
    MpPrio,
    RemoveAddr,
    add_addr_hmac,
    decode_mptcp,
    idsn_of,
    join_ack_hmac,
    join_synack_hmac,
    option_name,
    token_of,
)
from testbed.decode.tcp import decode_tcp
from tests.support import mptcp_synth as ms

# One handover captured in the lab (Linux 6.18, MPTCP v1): the MN's key, the CN's, the MN's
# join nonce, the CN's, and what the CN and the MN sent.
KEY_MN, KEY_CN = 0xF8B881F28C8DFA67, 0xCE6CEAA075613D69
NONCE_MN, NONCE_CN = 0x4DC92342, 0x066DD1E8


def opt(body: bytes) -> bytes:
    return bytes([30, len(body) + 2]) + body


def test_linux_keyed_values():
    assert token_of(KEY_CN) == 0x8B22C7B1  # the token of the join SYN
    assert join_synack_hmac(KEY_CN, KEY_MN, NONCE_CN, NONCE_MN).hex() == "85f687acf0a7b385"
    full = join_ack_hmac(KEY_MN, KEY_CN, NONCE_MN, NONCE_CN)
    assert full.hex() == "95c3a765c908645c6d2ccab17b93236d785daf69"
    assert add_addr_hmac(KEY_MN, KEY_CN, 5, "198.51.100.100", None).hex() == "1ee887f00662fc9f"
    # the CN's first DATA_ACK after the MN's first 200 bytes: IDSN + 1 + 200
    assert 6705726850760337820 - idsn_of(KEY_MN) == 201


def test_mp_capable_forms():
    assert decode_mptcp(opt(ms.capable()), 0, 4, syn=True, ack=False) == MpCapable(1, 1, None, None)
    syn_ack = decode_mptcp(opt(ms.capable(ms.KEY_B)), 0, 12, syn=True, ack=True)
    assert syn_ack == MpCapable(1, 1, ms.KEY_B, None)
    third = decode_mptcp(opt(ms.capable(ms.KEY_A, ms.KEY_B)), 0, 20)
    assert (third.sender_key, third.receiver_key, third.data_len) == (ms.KEY_A, ms.KEY_B, None)
    first_data = opt(ms.capable(ms.KEY_A, ms.KEY_B, data_len=200))
    assert decode_mptcp(first_data, 0, 22, data=True).data_len == 200
    assert isinstance(decode_mptcp(first_data, 0, 22, data=False), MalformedOption)


def test_mp_join_steps():
    syn = decode_mptcp(opt(ms.join_syn(0x01020304, 77, 5, True)), 0, 12, syn=True, ack=False)
    assert syn == MpJoin("syn", True, 5, token=0x01020304, nonce=77)
    mac = bytes(range(8))
    assert decode_mptcp(opt(ms.join_synack(mac, 99, 2)), 0, 16, syn=True, ack=True) == \
        MpJoin("synack", False, 2, nonce=99, hmac=mac)
    assert decode_mptcp(opt(ms.join_ack(bytes(20))), 0, 24).hmac == bytes(20)
    assert isinstance(decode_mptcp(opt(ms.join_syn(1, 2, 3, False)), 0, 12, syn=False), MalformedOption)


def test_dss_with_64_and_32_bit_fields_and_data_fin():
    d = decode_mptcp(opt(ms.dss(ack=10, dsn=2**40, ssn=7, length=100, fin=True)), 0, 28)
    assert d == Dss(0x1F, 10, 2**40, 7, 100, True, True) and d.data_fin
    short = bytes([30, 18, 0x20, 0x05]) + struct.pack("!IIIH", 5, 6, 7, 8)  # A + M, 32-bit fields
    d = decode_mptcp(short, 0, 18)
    assert (d.data_ack, d.dsn, d.ssn, d.data_len, d.dsn64, d.ack64) == (5, 6, 7, 8, False, False)
    with_checksum = bytes([30, 20, 0x20, 0x05]) + struct.pack("!IIIHH", 5, 6, 7, 8, 0xBEEF)
    assert decode_mptcp(with_checksum, 0, 20).data_len == 8
    assert isinstance(decode_mptcp(bytes([30, 8, 0x20, 0x0F, 0, 0, 0, 0]), 0, 8), MalformedOption)


@pytest.mark.parametrize("address", ["198.51.100.7", "2001:db8:a2::7"])
def test_add_addr_announcement_echo_and_port(address: str):
    mac = bytes(range(8))
    a = decode_mptcp(opt(ms.add_addr(3, address, mac=mac)), 0, len(ms.add_addr(3, address, mac=mac)) + 2)
    assert a == AddAddr(False, 3, address, None, mac)
    e = decode_mptcp(opt(ms.add_addr(3, address, echo=True)), 0, len(ms.add_addr(3, address, echo=True)) + 2)
    assert e == AddAddr(True, 3, address, None, b"")
    body = bytes([0x30, 3]) + ipaddress.ip_address(address).packed + struct.pack("!H", 8080) + mac
    assert decode_mptcp(opt(body), 0, len(body) + 2).port == 8080
    assert add_addr_hmac(1, 2, 3, address, 8080) != add_addr_hmac(1, 2, 3, address, None)


def test_remove_prio_and_the_rest():
    assert decode_mptcp(opt(ms.remove_addr(0, 5)), 0, 5) == RemoveAddr((0, 5))
    assert decode_mptcp(opt(ms.prio(True)), 0, 3) == MpPrio(True, None)
    assert decode_mptcp(bytes([30, 4, 0x50, 9]), 0, 4) == MpPrio(False, 9)
    fastclose = bytes([30, 12, 0x70, 0]) + struct.pack("!Q", 42)
    other = decode_mptcp(fastclose, 0, 12)
    assert isinstance(other, MpOther) and option_name(other) == "MP_FASTCLOSE"
    assert isinstance(decode_mptcp(bytes([30, 2]), 0, 2), MalformedOption)


def test_tcp_segment_with_options_among_others():
    frame = ms.frame(ms.MN_OLD, 40000, ms.CN, 5001, "PA", 10, 20, ms.dss(ack=1, dsn=2, length=3), b"abc")
    p = decode_frame(1, frame)
    assert p.tcp is not None and p.unknown is None and p.malformed is None
    assert (p.tcp.sport, p.tcp.dport, p.tcp.seq, p.tcp.ack, p.tcp.payload_len) == (40000, 5001, 10, 20, 3)
    (d,) = p.tcp.mptcp
    assert isinstance(d, Dss) and d.dsn == 2
    cut = decode_tcp(b"\0" * 10, 0, 10)
    assert cut.malformed == "truncated TCP header"
