"""Struct layouts of the hand-rolled SCTP socket API (compared with <linux/sctp.h> sizes)."""

from __future__ import annotations

import socket
import struct

import pytest

from testbed.sctp import sockapi


def test_sockaddr_in_layout() -> None:
    b = sockapi.pack_sockaddr("192.0.2.10", 5001)
    assert len(b) == 16
    assert struct.unpack_from("=H", b)[0] == socket.AF_INET
    assert b[2:4] == (5001).to_bytes(2, "big")
    assert b[4:8] == bytes([192, 0, 2, 10])
    assert b[8:] == b"\0" * 8


def test_sockaddr_in6_layout() -> None:
    b = sockapi.pack_sockaddr("2001:db8::1", 80)
    assert len(b) == 28
    assert struct.unpack_from("=H", b)[0] == socket.AF_INET6
    assert b[2:4] == (80).to_bytes(2, "big")
    assert b[8:24] == socket.inet_pton(socket.AF_INET6, "2001:db8::1")


def test_packed_prim_struct_is_132_bytes() -> None:
    # struct sctp_prim / sctp_setpeerprim are __attribute__((packed, aligned(4)))
    b = sockapi.pack_assoc_addr(7, "198.51.100.10", 4242)
    assert len(b) == 4 + 128
    assert struct.unpack_from("=i", b)[0] == 7
    assert sockapi.unpack_sockaddr(b[4:]) == ("198.51.100.10", 4242)


def test_unpack_mixed_address_run() -> None:
    run = sockapi.pack_sockaddr("192.0.2.1", 1) + sockapi.pack_sockaddr("2001:db8::2", 2)
    assert sockapi.unpack_sockaddrs(run, 2) == [("192.0.2.1", 1), ("2001:db8::2", 2)]


def test_unpack_rejects_unknown_family() -> None:
    with pytest.raises(ValueError):
        sockapi.unpack_sockaddrs(b"\x99\x00" + b"\0" * 14, 1)


def test_parse_status() -> None:
    head = struct.pack("=iiIHHHHI", 3, 4, 1000, 2, 0, 10, 10, 1400)
    paddr = struct.pack("=i", 3) + sockapi.pack_sockaddr("203.0.113.10", 5001).ljust(128, b"\0")
    tail = struct.pack("=iIIII", 2, 4380, 5, 200, 1500)
    buf = head + paddr + tail
    assert len(buf) == sockapi.STATUS_LEN == 176
    st = sockapi.parse_status(buf)
    assert st.state == "ESTABLISHED"
    assert st.primary == ("203.0.113.10", 5001)
    assert (st.primary_srtt_ms, st.primary_rto_ms, st.unacked) == (5, 200, 2)


def test_normalise_unmaps_v4() -> None:
    assert sockapi.normalise("::ffff:192.0.2.10") == "192.0.2.10"
    assert sockapi.normalise("2001:db8::1") == "2001:db8::1"


def test_auth_key_is_set_then_made_active() -> None:
    from testbed.sctp import sockapi

    calls = []

    class Sock:
        def setsockopt(self, level, opt, value):
            calls.append((level, opt, value))

    sockapi.set_auth_key(Sock(), b"secret")  # type: ignore[arg-type]
    assert calls[0] == (132, 23, struct.pack("=iHH", 0, 0, 6) + b"secret")  # SCTP_AUTH_KEY
    assert calls[1] == (132, 24, struct.pack("=iHxx", 0, 0)) and len(calls[1][2]) == 8
