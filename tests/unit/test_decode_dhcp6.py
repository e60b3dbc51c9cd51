"""DHCPv6 decoding (RFC 8415): message type, transaction, IA_NA addresses; bad input never
raises."""

from __future__ import annotations

import struct

from testbed.decode.dhcp6 import ADVERTISE, INFORMATION_REQUEST, REPLY, SOLICIT, decode_dhcp6


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def _ia_na(addr: bytes, pref: int, valid: int) -> bytes:
    return _opt(3, struct.pack("!III", 1, 0, 0) + _opt(5, addr + struct.pack("!II", pref, valid)))


A = bytes.fromhex("20010db800a200000000000000001c10")


def test_reply_with_an_ia_na_address():
    m = decode_dhcp6(bytes([REPLY]) + b"\x12\x34\x56" + _opt(2, b"\x00\x01duid") + _ia_na(A, 300, 600))
    assert m is not None and m.malformed is None
    assert (m.msg_type, m.xid, m.type_name) == (REPLY, 0x123456, "REPLY") and not m.from_client
    assert [(a.address, a.preferred, a.valid) for a in m.addresses] == [("2001:db8:a2::1c10", 300, 600)]


def test_client_messages_and_status():
    sol = decode_dhcp6(bytes([SOLICIT]) + b"\0\0\1" + _opt(14, b""))
    assert sol.from_client and sol.rapid_commit and sol.addresses == ()
    info = decode_dhcp6(bytes([INFORMATION_REQUEST]) + b"\0\0\2")
    assert info.type_name == "INFORMATION-REQUEST" and info.from_client
    adv = decode_dhcp6(bytes([ADVERTISE]) + b"\0\0\3" + _opt(13, struct.pack("!H", 2) + b"NoAddrsAvail"))
    assert adv.status == 2


def test_truncated_input_is_malformed_not_an_exception():
    assert decode_dhcp6(b"\x07\x00") is None
    m = decode_dhcp6(bytes([REPLY]) + b"\0\0\1" + struct.pack("!HH", 3, 40) + b"\0" * 10)
    assert m is not None and m.malformed and "overruns" in m.malformed
