"""Kernel SCTP socket API on plain Python sockets: the RFC 6458 calls the lab needs.

Hand-rolled with ``struct`` + ``setsockopt`` because there is no maintained Python binding
(pysctp is unmaintained and needs lksctp-tools headers to build); the calls below are the
few ``sctp_bindx``/``sctp_connectx``/primary-address options, whose layouts come from
``<linux/sctp.h>``. Pitfalls measured on Linux 6.1 and 6.12: ``sctp_setpeerprim`` and ``sctp_prim`` are packed
(4-byte assoc id + 128-byte sockaddr_storage = 132 bytes); SET_PEER_PRIMARY_ADDR wants the LOCAL
port in the address, SCTP_PRIMARY_ADDR the PEER's port.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPPROTO_SCTP = 132
SOL_SCTP = 132
# <linux/sctp.h> option numbers
SCTP_NODELAY = 3
SCTP_SET_PEER_PRIMARY_ADDR = 5
SCTP_PRIMARY_ADDR = 6
SCTP_STATUS = 14
SCTP_AUTH_KEY = 23
SCTP_AUTH_ACTIVE_KEY = 24
SCTP_AUTO_ASCONF = 30
SCTP_RECVRCVINFO = 32
SCTP_SOCKOPT_BINDX_ADD = 100
SCTP_SOCKOPT_BINDX_REM = 101
SCTP_GET_PEER_ADDRS = 108
SCTP_GET_LOCAL_ADDRS = 109
SCTP_SOCKOPT_CONNECTX = 110
# cmsg types at level IPPROTO_SCTP
SCTP_RCVINFO = 3

SOCKADDR_STORAGE_LEN = 128
_SOCKADDR_IN_LEN = 16
_SOCKADDR_IN6_LEN = 28

Addr = tuple[str, int]  # (address, port); IPv6 scope ids are not needed in the lab


def family_of(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def pack_sockaddr(addr: str, port: int) -> bytes:
    """sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes); family in host order, port in network."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", port, ip.packed)
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI16s", port, 0, ip.packed)
        + (struct.pack("=I", 0))
    )


def unpack_sockaddrs(buf: bytes, count: int) -> list[Addr]:
    """Packed sockaddr_in/sockaddr_in6 run, as SCTP_GET_{LOCAL,PEER}_ADDRS return it."""
    out: list[Addr] = []
    off = 0
    for _ in range(count):
        (fam,) = struct.unpack_from("=H", buf, off)
        if fam == socket.AF_INET:
            port, raw = struct.unpack_from("!H4s", buf, off + 2)
            out.append((str(ipaddress.IPv4Address(raw)), port))
            off += _SOCKADDR_IN_LEN
        elif fam == socket.AF_INET6:
            port, _flow, raw = struct.unpack_from("!HI16s", buf, off + 2)
            out.append((str(ipaddress.IPv6Address(raw)), port))
            off += _SOCKADDR_IN6_LEN
        else:
            raise ValueError(f"unknown address family {fam} at offset {off}")
    return out


def unpack_sockaddr(buf: bytes) -> Addr:
    return unpack_sockaddrs(buf, 1)[0]


def pack_assoc_addr(assoc_id: int, addr: str, port: int) -> bytes:
    """struct sctp_prim / sctp_setpeerprim: packed {sctp_assoc_t; sockaddr_storage}."""
    sa = pack_sockaddr(addr, port)
    return struct.pack("=i", assoc_id) + sa + b"\0" * (SOCKADDR_STORAGE_LEN - len(sa))


_libc = ctypes.CDLL(None, use_errno=True)


def getsockopt_inout(sock: socket.socket, level: int, opt: int, buf: bytes) -> bytes:
    """getsockopt() whose buffer also carries input (an assoc id, an address).

    Python's ``socket.getsockopt(level, opt, buflen)`` passes an uninitialised buffer, but
    SCTP reads the request from it, so the call goes through libc via ctypes.
    """
    cbuf = ctypes.create_string_buffer(buf, len(buf))
    optlen = ctypes.c_uint32(len(buf))
    if _libc.getsockopt(sock.fileno(), level, opt, cbuf, ctypes.byref(optlen)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getsockopt(SOL_SCTP, {opt}): {os.strerror(err)}")
    return cbuf.raw[: optlen.value]


def sctp_socket(family: int = socket.AF_INET6) -> socket.socket:
    """One-to-one style (SOCK_STREAM) SCTP socket; AF_INET6 also carries IPv4 (mapped)."""
    try:
        return socket.socket(family, socket.SOCK_STREAM, IPPROTO_SCTP)
    except OSError as e:  # errno 93 on kernels without SCTP (like the lab host's)
        raise OSError(e.errno, f"kernel has no SCTP ({e.strerror}): run this inside a VM node") from e


def bindx(sock: socket.socket, addrs: Iterable[str], port: int, add: bool = True) -> None:
    """sctp_bindx(): add/remove local addresses; on an association this sends ASCONF."""
    opt = SCTP_SOCKOPT_BINDX_ADD if add else SCTP_SOCKOPT_BINDX_REM
    sock.setsockopt(SOL_SCTP, opt, b"".join(pack_sockaddr(a, port) for a in addrs))


def connectx(sock: socket.socket, addrs: Sequence[str], port: int) -> None:
    """sctp_connectx(): connect to a multi-homed peer (blocks until established)."""
    sock.setsockopt(SOL_SCTP, SCTP_SOCKOPT_CONNECTX, b"".join(pack_sockaddr(a, port) for a in addrs))


def set_peer_primary(sock: socket.socket, local_addr: str, local_port: int, assoc_id: int = 0) -> None:
    """Ask the peer to use ``local_addr`` as its primary path to us (ASCONF SET_PRIMARY)."""
    sock.setsockopt(SOL_SCTP, SCTP_SET_PEER_PRIMARY_ADDR, pack_assoc_addr(assoc_id, local_addr, local_port))


def set_primary(sock: socket.socket, peer_addr: str, peer_port: int, assoc_id: int = 0) -> None:
    """Choose the peer address this end sends to (local decision, nothing on the wire)."""
    sock.setsockopt(SOL_SCTP, SCTP_PRIMARY_ADDR, pack_assoc_addr(assoc_id, peer_addr, peer_port))


def get_primary(sock: socket.socket, assoc_id: int = 0) -> Addr:
    buf = getsockopt_inout(sock, SOL_SCTP, SCTP_PRIMARY_ADDR, pack_assoc_addr(assoc_id, "0.0.0.0", 0))
    return unpack_sockaddr(buf[4:])


def _get_addrs(sock: socket.socket, opt: int, assoc_id: int) -> list[Addr]:
    # struct sctp_getaddrs {sctp_assoc_t assoc_id; __u32 addr_num; __u8 addrs[];}
    buf = getsockopt_inout(sock, SOL_SCTP, opt, struct.pack("=iI", assoc_id, 0) + b"\0" * 4096)
    _aid, num = struct.unpack_from("=iI", buf)
    return unpack_sockaddrs(buf[8:], num)


def local_addrs(sock: socket.socket, assoc_id: int = 0) -> list[Addr]:
    return _get_addrs(sock, SCTP_GET_LOCAL_ADDRS, assoc_id)


def peer_addrs(sock: socket.socket, assoc_id: int = 0) -> list[Addr]:
    return _get_addrs(sock, SCTP_GET_PEER_ADDRS, assoc_id)


def set_auth_key(sock: socket.socket, key: bytes, key_id: int = 0, assoc_id: int = 0) -> None:
    """SCTP_AUTH_KEY then SCTP_AUTH_ACTIVE_KEY: ``key`` becomes endpoint-pair shared key
    ``key_id`` (replacing the empty key 0 when ``key_id`` is 0) and the one AUTH uses. Set it
    before the association starts, on both ends (struct sctp_authkey: assoc id, key number,
    key length, key; struct sctp_authkeyid: assoc id, key number)."""
    sock.setsockopt(SOL_SCTP, SCTP_AUTH_KEY, struct.pack("=iHH", assoc_id, key_id, len(key)) + key)
    sock.setsockopt(SOL_SCTP, SCTP_AUTH_ACTIVE_KEY, struct.pack("=iHxx", assoc_id, key_id))


def set_auto_asconf(sock: socket.socket, on: bool) -> None:
    sock.setsockopt(SOL_SCTP, SCTP_AUTO_ASCONF, struct.pack("=i", int(on)))


# struct sctp_status: {assoc_id i32, state i32, rwnd u32, unackdata u16, penddata u16,
#   instrms u16, outstrms u16, fragmentation_point u32, sctp_paddrinfo (packed: assoc_id i32,
#   sockaddr_storage, state i32, cwnd u32, srtt u32, rto u32, mtu u32)}
_STATUS_HEAD = struct.Struct("=iiIHHHHI")
_PADDRINFO_TAIL = struct.Struct("=iIIII")
STATUS_LEN = _STATUS_HEAD.size + 4 + SOCKADDR_STORAGE_LEN + _PADDRINFO_TAIL.size

SCTP_STATES = {
    0: "EMPTY",
    1: "CLOSED",
    2: "COOKIE_WAIT",
    3: "COOKIE_ECHOED",
    4: "ESTABLISHED",
    5: "SHUTDOWN_PENDING",
    6: "SHUTDOWN_SENT",
    7: "SHUTDOWN_RECEIVED",
    8: "SHUTDOWN_ACK_SENT",
}


@dataclass(frozen=True)
class Status:
    """The parts of SCTP_STATUS the lab reports: state and the current primary path."""

    state: str
    primary: Addr
    primary_srtt_ms: int
    primary_rto_ms: int
    unacked: int


def parse_status(buf: bytes) -> Status:
    _aid, state, _rwnd, unack, _pend, _ins, _outs, _frag = _STATUS_HEAD.unpack_from(buf)
    off = _STATUS_HEAD.size + 4
    primary = unpack_sockaddr(buf[off : off + SOCKADDR_STORAGE_LEN])
    _pstate, _cwnd, srtt, rto, _mtu = _PADDRINFO_TAIL.unpack_from(buf, off + SOCKADDR_STORAGE_LEN)
    return Status(SCTP_STATES.get(state, str(state)), primary, srtt, rto, unack)


def status(sock: socket.socket, assoc_id: int = 0) -> Status:
    req = struct.pack("=i", assoc_id) + b"\0" * (STATUS_LEN - 4)
    buf = getsockopt_inout(sock, SOL_SCTP, SCTP_STATUS, req)
    return parse_status(buf)


def normalise(addr: str) -> str:
    """Unmap ::ffff:a.b.c.d (an AF_INET6 socket reports IPv4 peers that way)."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
