"""Traffic over one multi-homed SCTP association: a paced client and a verifying server.

    python -m testbed.sctp.traffic server --bind 203.0.113.10 --port 5001 --stats S.json
    python -m testbed.sctp.traffic client --local 192.0.2.10 --server 203.0.113.10 \
        --port 5001 --rate 50 --size 200 --duration 30 --control /run/tc.sock --stats C.json

Each message carries a sequence number; the server checks continuity (gaps, duplicates) and
records, per message, its arrival time and the SOURCE ADDRESS of the packet that carried it.
That address is recvmsg()'s msg_name: Linux fills it from the IP header of the DATA chunk's
packet (sctp_inet_skb_msgname); SCTP_RCVINFO carries no address, only the TSN, recorded too.
Stats go to ``--stats`` as JSON every second, on SIGUSR1 and at exit (atomic rename). The
client embeds the binding-update driver behind ``--control`` (see driver.py).
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from testbed.mobility import driver as binding_driver
from testbed.mobility import protocol
from testbed.sctp import sockapi
from testbed.sctp.acks import AsconfAcks
from testbed.sctp.driver import SctpDriver
from testbed.traffic.messages import (
    ECHO_SIZE,
    Periodic,
    SeqTracker,
    ServerStats,
    decode_message,
    encode_message,
    note_arrival,
    write_json,
)

REFUSED = 3  # the client's exit status when the peer refused the association (ABORT to INIT)
SHUTDOWN_WAIT = 3.0  # seconds the client reads the server's last echoes after its SHUTDOWN


def _family(addrs: list[str]) -> int:
    return (
        socket.AF_INET6 if any(sockapi.family_of(a) == socket.AF_INET6 for a in addrs) else (socket.AF_INET)
    )


def _bind(sock: socket.socket, addrs: list[str], port: int) -> None:
    """bind() the first address, sctp_bindx() the rest (a multi-homed endpoint)."""
    if not addrs:
        sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", port))
        return
    sockapi.bindx(sock, addrs, port)


def serve(args: argparse.Namespace) -> int:
    addrs = _split(args.bind)
    lsock = sockapi.sctp_socket(_family(addrs) if addrs else socket.AF_INET6)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.auth_key:  # the accepted association inherits the listener's keys
        sockapi.set_auth_key(lsock, bytes.fromhex(args.auth_key))
    _bind(lsock, addrs, args.port)
    lsock.listen(1)
    stats, tracker = ServerStats(), SeqTracker()
    lock = threading.Lock()

    def snapshot() -> dict[str, Any]:
        with lock:
            return asdict(stats)

    stats_path = Path(args.stats)
    periodic = Periodic(stats_path, snapshot)
    signal.signal(signal.SIGTERM, _interrupt)
    periodic.write()
    try:
        conn, peer = lsock.accept()
        stats.peer = sockapi.normalise(peer[0])
        conn.setsockopt(sockapi.SOL_SCTP, sockapi.SCTP_RECVRCVINFO, struct.pack("=i", 1))
        partial = b""
        while True:
            data, anc, flags, src = conn.recvmsg(1 << 16, socket.CMSG_SPACE(32))
            if not data and not (flags & socket.MSG_EOR):
                stats.closed = True
                break
            partial += data
            if not flags & socket.MSG_EOR:
                continue  # a message larger than the buffer: keep reading its rest
            t = time.time()
            tsn = _rcvinfo_tsn(anc)
            msg = decode_message(partial)
            partial = b""
            with lock:
                note_arrival(stats, tracker, msg, t, sockapi.normalise(src[0]) if src else "?", tsn)
            if args.echo:  # a reply per message: DATA toward the MN, sent to its primary path
                try:
                    conn.send(encode_message(msg.seq, ECHO_SIZE, t))
                    stats.echoed += 1
                except OSError:  # the client is shutting the association down
                    args.echo = False
    except KeyboardInterrupt:
        pass
    except OSError as e:
        stats.error = f"{type(e).__name__}: {e}"
    finally:
        periodic.stopped.set()
        periodic.write()
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _rcvinfo_tsn(anc: list[tuple[int, int, bytes]]) -> int:
    for level, typ, data in anc:
        if level == sockapi.IPPROTO_SCTP and typ == sockapi.SCTP_RCVINFO and len(data) >= 20:
            # struct sctp_rcvinfo: sid u16, ssn u16, flags u16, (pad), ppid u32, tsn u32, ...
            return struct.unpack_from("=HHHxxII", data)[4]
    return -1


def client(args: argparse.Namespace) -> int:
    local, servers = _split(args.local), _split(args.server)
    families = tuple(sorted({int(f) for f in _split(args.families)} or {4}))
    # AF_INET6 whenever IPv6 is wanted, even while the MN holds IPv4 only: the association
    # must accept IPv6 addresses later (a move to an IPv6-only network)
    sock = sockapi.sctp_socket(socket.AF_INET6 if 6 in families else _family(local + servers))
    if args.auth_key:
        sockapi.set_auth_key(sock, bytes.fromhex(args.auth_key))
    if args.mode == "auto_asconf":
        local = []  # auto_asconf only follows addresses on wildcard-bound sockets
    _bind(sock, local, 0)
    if args.mode == "auto_asconf" and args.auto_asconf_sockopt:
        sockapi.set_auto_asconf(sock, True)  # EINVAL unless the socket is bound to the wildcard
    try:
        sockapi.connectx(sock, servers, args.port)
    except ConnectionRefusedError as e:  # the peer answered the INIT with ABORT
        write_json(Path(args.stats), {"role": "client", "sent": 0, "refused": True,
                                      "error": f"{type(e).__name__}: {e}"})
        return REFUSED
    sock.setsockopt(sockapi.SOL_SCTP, sockapi.SCTP_NODELAY, struct.pack("=i", 1))
    local_port = sockapi.local_addrs(sock)[0][1]
    acks = AsconfAcks(local_port, args.port, _encap_port()).start() if args.mode == "trash" else None
    driver = SctpDriver(sock, local_port, args.port, args.mode, families=families, acks=acks)
    sent = 0
    t_start = time.time()
    error = ""
    ended = ""  # how the association ended: "shutdown" (graceful) or "abort" (it did not in time)
    echoes = SeqTracker()

    def receive() -> None:
        """Read the server's replies (--echo) so its sends never block; check their continuity."""
        partial = b""
        while True:
            try:
                data, _anc, flags, _src = sock.recvmsg(1 << 16)
            except OSError:
                return
            if not data:
                return
            partial += data
            if flags & socket.MSG_EOR:
                echoes.feed(decode_message(partial).seq)
                partial = b""

    def snapshot() -> dict[str, Any]:
        return {
            "role": "client",
            "sent": sent,
            "start": t_start,
            "error": error,
            "local_port": local_port,
            "echo_received": echoes.received,
            "echo_missing": echoes.missing,
            "echo_duplicates": list(echoes.duplicates),
            "end": ended,
            "driver_log": [protocol.encode(d) for d in driver.log],
        }

    control = binding_driver.serve(Path(args.control), driver) if args.control else None
    periodic = Periodic(Path(args.stats), snapshot)
    receiver = threading.Thread(target=receive, name="echo-receiver", daemon=True)
    receiver.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    periodic.write()
    interval = 1.0 / args.rate
    t0 = time.monotonic()
    try:
        while not stop.is_set() and (args.count <= 0 or sent < args.count):
            if args.duration > 0 and time.monotonic() - t0 >= args.duration:
                break
            delay = t0 + sent * interval - time.monotonic()
            if delay > 0 and stop.wait(delay):  # pacing, not synchronisation
                break
            sock.send(encode_message(sent, args.size, time.time()))
            sent += 1
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        if control:
            control.close()
        # Graceful SHUTDOWN: the server reads the end of the stream and closes, its last echoes
        # are read here until the association ends. Closing with echoes still unread would
        # make the kernel ABORT the association instead (User-Initiated Abort), which a slow
        # guest hits whenever the receiver lags.
        # An association whose SHUTDOWN did not complete within --shutdown-wait is aborted:
        # closed with it still going, the kernel would go on with it after this process, into
        # the next run on the lab.
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # not connected any more
        receiver.join(args.shutdown_wait)
        ended = "abort" if receiver.is_alive() else "shutdown"
        periodic.stopped.set()
        periodic.write()
        if ended == "abort":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        if acks is not None:
            acks.close()
    return 1 if error else 0


def _encap_port() -> int:
    """The UDP port SCTP is encapsulated to in this namespace (RFC 6951), 0 when it is not."""
    try:
        return int(Path("/proc/sys/net/sctp/encap_port").read_text())
    except (OSError, ValueError):
        return 0


def _split(s: str | None) -> list[str]:
    return [a for a in (s or "").split(",") if a]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.sctp.traffic", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server", help="accept one association and verify the stream")
    s.add_argument("--bind", default="", help="comma-separated local addresses (default: any)")
    s.add_argument("--port", type=int, default=5001)
    s.add_argument("--stats", required=True, help="JSON stats file (rewritten every second)")
    s.add_argument("--echo", action="store_true", help="answer each message (DATA toward the client)")
    s.add_argument("--auth-key", help="endpoint-pair shared key (hex) for SCTP-AUTH, key id 0")
    c = sub.add_parser("client", help="send a paced, numbered stream; accept driver commands")
    c.add_argument("--local", default="", help="comma-separated local addresses to bind")
    c.add_argument("--server", required=True, help="comma-separated server addresses")
    c.add_argument("--port", type=int, default=5001)
    c.add_argument("--rate", type=float, default=20.0, help="messages per second")
    c.add_argument("--size", type=int, default=200, help="bytes per message")
    c.add_argument("--count", type=int, default=0, help="stop after N messages (0: no limit)")
    c.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: no limit)")
    c.add_argument("--control", default="", help="unix socket path for driver commands")
    c.add_argument("--mode", choices=("trash", "auto_asconf"), default="trash")
    c.add_argument("--families", default="4", help="address families of the association: 4, 6 or 4,6")
    c.add_argument(
        "--auto-asconf-sockopt",
        action="store_true",
        help="also set SCTP_AUTO_ASCONF on the socket (mode auto_asconf)",
    )
    c.add_argument("--auth-key", help="endpoint-pair shared key (hex) for SCTP-AUTH, key id 0")
    c.add_argument("--stats", required=True)
    c.add_argument("--shutdown-wait", type=float, default=SHUTDOWN_WAIT,
                   help="seconds for the graceful SHUTDOWN at the end, after which the association "
                   "is aborted (default %(default)s)")
    args = ap.parse_args(argv)
    return serve(args) if args.role == "server" else client(args)


if __name__ == "__main__":
    raise SystemExit(main())
