"""The traffic server on usrsctp (Debian's libusrsctp2, FreeBSD's SCTP in user space): a
correspondent that is not Linux, for interop against the kernel's SCTP.

    python -m testbed.sctp.usrsctp --bind 203.0.113.14 --port 5001 --stats S.json \
        [--echo] [--sysctl asconf_enable=1 --sysctl auth_enable=1]

It speaks SCTP directly over IP (raw sockets, no UDP encapsulation), so it runs in a network
namespace of a kernel without SCTP (a kernel with SCTP would answer the same packets itself).
It writes the same stats as the kernel server (``testbed.sctp.traffic``), so the scenario and
the checker treat both alike. Only a correspondent: usrsctp reads the host's addresses once, at
start, and adding one later needs a call outside its public API, so it cannot follow a mobile
node's moves; as a peer it follows the MN's ASCONF (ADD_IP, SET_PRIMARY, DELETE_IP, with AUTH).

Bound with ctypes: the library ships no Python binding, and the blocking socket calls used here
(socket, bind, listen, accept, recvv, sendv) are a small, stable C surface.
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import socket
import struct
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from testbed.traffic.messages import (
    ECHO_SIZE,
    Periodic,
    SeqTracker,
    ServerStats,
    decode_message,
    encode_message,
    note_arrival,
)

LIBRARY = "libusrsctp.so.2"
PACKAGE = "libusrsctp2"
AF_INET, SOCK_STREAM, IPPROTO_SCTP = 2, 1, 132
SCTP_RECVRCVINFO = 0x0000001F  # usrsctp.h: deliver struct sctp_rcvinfo with each message
SCTP_RECVV_RCVINFO = 1
SCTP_SENDV_NOINFO = 0
RCVINFO = struct.Struct("=HHHxxIIIII")  # sid, ssn, flags, ppid, tsn, cumtsn, context, assoc id
# the usrsctp sysctls a setting maps to (its other names have no counterpart here: usrsctp has
# no public switch for unauthenticated ASCONF, FreeBSD's asconf_auth_nochk)
SYSCTLS = ("asconf_enable", "auth_enable", "auto_asconf", "blackhole")
FROM_LINUX = {"addip_enable": "asconf_enable", "auth_enable": "auth_enable",
              "default_auto_asconf": "auto_asconf"}


def library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as e:
        raise OSError(f"{LIBRARY} not found: install the Debian package '{PACKAGE}' (make setup)") from e
    vp, u32 = ctypes.c_void_p, ctypes.c_uint32
    lib.usrsctp_socket.restype = vp
    lib.usrsctp_socket.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, vp, vp, u32, vp]
    lib.usrsctp_bind.argtypes = [vp, vp, u32]
    lib.usrsctp_listen.argtypes = [vp, ctypes.c_int]
    lib.usrsctp_accept.restype = vp
    lib.usrsctp_accept.argtypes = [vp, vp, vp]
    lib.usrsctp_setsockopt.argtypes = [vp, ctypes.c_int, ctypes.c_int, vp, u32]
    lib.usrsctp_recvv.restype = ctypes.c_ssize_t
    lib.usrsctp_recvv.argtypes = [vp, vp, ctypes.c_size_t, vp, vp, vp, vp, vp, vp]
    lib.usrsctp_sendv.restype = ctypes.c_ssize_t
    lib.usrsctp_sendv.argtypes = [vp, vp, ctypes.c_size_t, vp, ctypes.c_int, vp, u32, ctypes.c_uint,
                                  ctypes.c_int]
    lib.usrsctp_close.argtypes = [vp]
    return lib


def sysctls_from_linux(values: dict[str, int]) -> dict[str, int]:
    """A node's Linux-named SCTP settings as usrsctp sysctls (unmatched names are dropped)."""
    return {FROM_LINUX[k]: int(v) for k, v in values.items() if k in FROM_LINUX}


def _sockaddr_in(addr: str, port: int) -> ctypes.Array[ctypes.c_char]:
    raw = struct.pack("=HH4s8x", AF_INET, socket.htons(port), socket.inet_aton(addr))
    return ctypes.create_string_buffer(raw, len(raw))


class Connection:
    """One accepted association: messages in (with source address and TSN), echoes out."""

    def __init__(self, lib: ctypes.CDLL, sock: int) -> None:
        self.lib, self.sock = lib, sock
        on = ctypes.c_int(1)
        lib.usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_RECVRCVINFO, ctypes.byref(on), ctypes.sizeof(on))
        self.buf = ctypes.create_string_buffer(1 << 16)
        self.frm = ctypes.create_string_buffer(128)
        self.info = ctypes.create_string_buffer(64)

    def receive(self) -> tuple[bytes, str, int, bool] | None:
        """(data, source address, TSN, end of record) of the next read; None at the end."""
        fromlen, infolen = ctypes.c_uint32(128), ctypes.c_uint32(64)
        infotype, flags = ctypes.c_uint(0), ctypes.c_int(0)
        n = self.lib.usrsctp_recvv(self.sock, self.buf, len(self.buf), self.frm, ctypes.byref(fromlen),
                                   self.info, ctypes.byref(infolen), ctypes.byref(infotype),
                                   ctypes.byref(flags))
        if n <= 0:
            return None
        src = socket.inet_ntoa(self.frm.raw[4:8])
        tsn = RCVINFO.unpack_from(self.info.raw)[4] if infotype.value == SCTP_RECVV_RCVINFO else -1
        return self.buf.raw[:n], src, tsn, bool(flags.value & socket.MSG_EOR)

    def send(self, data: bytes) -> bool:
        return self.lib.usrsctp_sendv(self.sock, data, len(data), None, 0, None, 0, SCTP_SENDV_NOINFO, 0) > 0


def serve(args: argparse.Namespace) -> int:
    lib = library()
    lib.usrsctp_init(0, None, None)  # port 0: SCTP straight over IP, no UDP encapsulation
    for kv in args.sysctl:
        name, _, value = kv.partition("=")
        if name not in SYSCTLS:
            raise SystemExit(f"--sysctl {kv}: one of {', '.join(SYSCTLS)}")
        getattr(lib, f"usrsctp_sysctl_set_sctp_{name}")(ctypes.c_uint32(int(value)))
    stats, tracker, lock = ServerStats(), SeqTracker(), threading.Lock()

    def snapshot() -> dict[str, Any]:
        with lock:
            return asdict(stats)

    periodic = Periodic(Path(args.stats), snapshot)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    lsock = lib.usrsctp_socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP, None, None, 0, None)
    if not lsock:
        raise SystemExit("usrsctp_socket failed (no raw socket: run as root in the node's namespace)")
    addr = _sockaddr_in(args.bind, args.port)
    if lib.usrsctp_bind(lsock, addr, len(addr)) != 0 or lib.usrsctp_listen(lsock, 1) != 0:
        raise SystemExit(f"usrsctp cannot listen on {args.bind}:{args.port}")
    periodic.write()  # listening: the scenario waits for this file

    def run() -> None:
        try:
            conn_sock = lib.usrsctp_accept(lsock, None, None)
            if not conn_sock:
                stats.error = "usrsctp_accept failed"
                return
            conn = Connection(lib, conn_sock)
            partial = b""
            while (got := conn.receive()) is not None:
                data, src, tsn, eor = got
                partial += data
                if not eor:
                    continue
                t = time.time()
                msg = decode_message(partial)
                partial = b""
                with lock:
                    stats.peer = stats.peer or src
                    note_arrival(stats, tracker, msg, t, src, tsn)
                if args.echo and conn.send(encode_message(msg.seq, ECHO_SIZE, t)):
                    stats.echoed += 1
            stats.closed = True
        finally:
            done.set()

    threading.Thread(target=run, name="usrsctp-server", daemon=True).start()
    done.wait()  # the association ended, or a signal: the blocking C calls are left to exit
    periodic.stopped.set()
    periodic.write()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.sctp.usrsctp", description=__doc__.splitlines()[0])
    ap.add_argument("--bind", required=True, help="the IPv4 address to listen on")
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--stats", required=True, help="JSON stats file (rewritten every second)")
    ap.add_argument("--echo", action="store_true", help="answer each message (DATA toward the client)")
    ap.add_argument("--sysctl", action="append", default=[], help="NAME=VALUE, a usrsctp sysctl")
    return serve(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
