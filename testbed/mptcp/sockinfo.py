"""What an MPTCP socket tells about itself (``SOL_MPTCP`` options, include/uapi/linux/mptcp.h):
its connection token, and its subflows with their addresses and received byte counts.

``MPTCP_INFO`` is a plain read. The per-subflow options read a ``struct mptcp_subflow_data``
header the caller fills in (its own size and the element size it expects) before the kernel
fills in the rest; Python's ``socket.getsockopt`` only hands the kernel a zeroed buffer, so
those two go through libc's ``getsockopt`` (ctypes) with the header written first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO, MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS = 1, 2, 3
_HEADER = struct.Struct("=IIII")  # size_subflow_data, num_subflows, size_kernel, size_user
_ADDRS_SIZE = 256  # struct mptcp_subflow_addrs: two sockaddr_storage unions
_TCPINFO_SIZE = 232  # as much of struct tcp_info as this reads (older kernels copy less)
_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received in struct tcp_info
_INFO = struct.Struct("=6BxxII")  # subflows..add_addr_accepted_max, flags, token
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass(frozen=True)
class SubflowInfo:
    local: tuple[str, int]
    remote: tuple[str, int]
    bytes_received: int


def mptcp_socket(family: int = socket.AF_INET) -> socket.socket:
    """A stream socket speaking MPTCP (falls back to TCP on the wire when the peer does not)."""
    return socket.socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP)


def token(sock: socket.socket) -> int:
    """The connection token the path manager names this connection by."""
    raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, _INFO.size)
    return _INFO.unpack_from(raw)[7]


def _subflow_data(sock: socket.socket, opt: int, size: int, count: int) -> list[bytes]:
    buf = ctypes.create_string_buffer(_HEADER.size + size * count)
    _HEADER.pack_into(buf, 0, _HEADER.size, 0, 0, size)
    n = ctypes.c_uint32(len(buf))
    if _libc.getsockopt(sock.fileno(), SOL_MPTCP, opt, buf, ctypes.byref(n)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    _, num, _, size_user = _HEADER.unpack_from(buf)
    got = min(num, count)
    return [buf.raw[_HEADER.size + i * size_user: _HEADER.size + (i + 1) * size_user] for i in range(got)]


def _sockaddr(raw: bytes) -> tuple[str, int]:
    (family,) = struct.unpack_from("=H", raw)
    port = struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[4:8])), port
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[8:24])), port
    return "", 0


def subflows(sock: socket.socket, count: int = 8) -> list[SubflowInfo]:
    """The connection's subflows (at most ``count``): addresses and bytes received on each.
    The two options list the subflows in the same order (both walk the connection's list)."""
    addrs = _subflow_data(sock, MPTCP_SUBFLOW_ADDRS, _ADDRS_SIZE, count)
    infos = _subflow_data(sock, MPTCP_TCPINFO, _TCPINFO_SIZE, count)
    out = []
    for a, i in zip(addrs, infos, strict=False):
        got = struct.unpack_from("=Q", i, _BYTES_RECEIVED)[0] if len(i) >= _BYTES_RECEIVED + 8 else 0
        out.append(SubflowInfo(_sockaddr(a[:128]), _sockaddr(a[128:256]), got))
    return out
