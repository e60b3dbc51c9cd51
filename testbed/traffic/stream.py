"""Traffic over one stream connection, plain TCP or Multipath TCP: a paced client and a verifying
server, with the numbered messages, continuity checks and per-message records of the SCTP app.

    python -m testbed.traffic.stream server --transport mptcp --bind 203.0.113.14 --port 5001 \
        --stats S.json --echo
    python -m testbed.traffic.stream client --transport mptcp --local 192.0.2.100 \
        --server 203.0.113.14 --port 5001 --rate 50 --size 200 --control C.sock --mode trash \
        --stats C.json

A stream has no message boundaries: the header's length field frames each message. The source
address of a message is the peer's for TCP; for MPTCP it is the remote address of the subflow
whose received byte count grew since the previous read (MPTCP_SUBFLOW_ADDRS and MPTCP_TCPINFO
list the subflows in one order), which is where the bytes came in. The server accepts any
number of connections (one per mobile node) and reports each. ``--user-timeout`` sets
TCP_USER_TIMEOUT on plain TCP: Linux keeps retransmitting to an address that went away for
about 15 minutes otherwise, so this is what lets a connection that cannot follow a move die
within seconds, with ETIMEDOUT, and the time it died recorded.

The MPTCP client embeds the binding-update driver (``testbed.mptcp.driver``) behind
``--control``, as the SCTP client does.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from testbed.mobility import driver as binding_driver
from testbed.mobility import protocol
from testbed.mptcp import sockinfo
from testbed.traffic.messages import (
    ECHO_SIZE,
    Periodic,
    SeqTracker,
    ServerStats,
    encode_message,
    note_arrival,
    split_messages,
)

TRANSPORTS = ("tcp", "mptcp")


def stream_socket(transport: str) -> socket.socket:
    if transport == "mptcp":
        return sockinfo.mptcp_socket()
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def user_timeout(sock: socket.socket, ms: int) -> None:
    if ms > 0:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)


class SourceOfBytes:
    """Which subflow delivered what was just read (see the module docstring)."""

    def __init__(self, sock: socket.socket, peer: str, mptcp: bool) -> None:
        self.sock, self.last, self.mptcp = sock, peer, mptcp
        self.seen: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}

    def __call__(self) -> str:
        if not self.mptcp:
            return self.last
        try:
            flows = sockinfo.subflows(self.sock)
        except OSError:
            return self.last
        grew = []
        for f in flows:
            key = (f.local, f.remote)
            grew.append((f.bytes_received - self.seen.get(key, 0), f.remote[0]))
            self.seen[key] = f.bytes_received
        best = max(grew, default=(0, self.last))
        if best[0] > 0:
            self.last = best[1]
        return self.last


# -- server -----------------------------------------------------------------------------------
class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.conns: list[ServerStats] = []
        self.errors: dict[int, dict[str, Any]] = {}  # per connection: how it ended, if not cleanly

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            rows = []
            for i, st in enumerate(self.conns):
                rows.append({**asdict(st), **self.errors.get(i, {})})
            return {"role": "server", "transport": self.args.transport, "connections": rows}

    def serve_one(self, i: int, conn: socket.socket, peer: tuple[str, int]) -> None:
        a = self.args
        st, tracker = self.conns[i], SeqTracker()
        source = SourceOfBytes(conn, peer[0], a.transport == "mptcp")
        buf = bytearray()
        echo = a.echo
        try:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    with self.lock:
                        st.closed = True
                    break
                t = time.time()
                src = source()
                buf += data
                try:
                    msgs = split_messages(buf)
                except ValueError as e:
                    raise ValueError(f"{e} at {st.bytes} bytes") from e
                for msg in msgs:
                    with self.lock:
                        note_arrival(st, tracker, msg, t, src, -1)
                    if echo:
                        try:
                            conn.sendall(encode_message(msg.seq, ECHO_SIZE, t))
                            st.echoed += 1
                        except OSError:  # the client is closing the connection
                            echo = False
        except (OSError, ValueError) as e:
            with self.lock:
                st.error = f"{type(e).__name__}: {e}"
                self.errors[i] = {"error_at": time.time()}
        finally:
            conn.close()

    def run(self) -> int:
        a = self.args
        lsock = stream_socket(a.transport)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((a.bind or "0.0.0.0", a.port))
        lsock.listen(64)
        periodic = Periodic(Path(a.stats), self.snapshot)
        periodic.write()  # the file appears once the server listens
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: (stop.set(), lsock.shutdown(socket.SHUT_RDWR)))
        threads = []
        try:
            while not stop.is_set():
                try:
                    conn, peer = lsock.accept()
                except OSError:
                    break
                user_timeout(conn, a.user_timeout)
                with self.lock:
                    self.conns.append(ServerStats(peer=peer[0]))
                    i = len(self.conns) - 1
                th = threading.Thread(target=self.serve_one, args=(i, conn, peer), daemon=True)
                th.start()
                threads.append(th)
                if a.connections and len(threads) >= a.connections:
                    break  # every expected client came: wait for them to finish
            for th in threads:
                while th.is_alive() and not stop.is_set():
                    th.join(0.5)
        finally:
            periodic.stopped.set()
            periodic.write()
        return 0


# -- client -----------------------------------------------------------------------------------
def client(a: argparse.Namespace) -> int:
    sock = stream_socket(a.transport)
    sock.bind((a.local, 0))
    sock.connect((a.server, a.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if a.transport == "tcp":
        user_timeout(sock, a.user_timeout)
    local_port = sock.getsockname()[1]
    driver = control = None
    if a.transport == "mptcp" and a.control:
        from testbed.mptcp.driver import MptcpDriver, follow_events

        driver = MptcpDriver(sockinfo.token(sock), a.local, a.server, a.port, a.mode, local_port=local_port)
        ready = threading.Event()
        threading.Thread(target=follow_events, args=(driver.on_event, ready), daemon=True).start()
        ready.wait(10)
        control = binding_driver.serve(Path(a.control), driver)
    sent = 0
    state: dict[str, Any] = {"error": "", "error_at": None, "eof": threading.Event()}
    echoes = SeqTracker()

    def receive() -> None:
        buf = bytearray()
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            buf += data
            for m in split_messages(buf):
                echoes.feed(m.seq)
        state["eof"].set()

    def snapshot() -> dict[str, Any]:
        return {"role": "client", "transport": a.transport, "sent": sent, "start": t_start,
                "error": state["error"], "error_at": state["error_at"], "local_port": local_port,
                "token": driver.token if driver else None, "echo_received": echoes.received,
                "echo_missing": echoes.missing, "echo_duplicates": list(echoes.duplicates),
                "driver_log": [protocol.encode(d) for d in driver.log] if driver else []}

    t_start = time.time()
    periodic = Periodic(Path(a.stats), snapshot)
    threading.Thread(target=receive, name="echo-receiver", daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    periodic.write()
    interval, t0 = 1.0 / a.rate, time.monotonic()
    try:
        while not stop.is_set() and (a.count <= 0 or sent < a.count):
            delay = t0 + sent * interval - time.monotonic()
            if delay > 0 and stop.wait(delay):  # pacing, not synchronisation
                break
            sock.sendall(encode_message(sent, a.size, time.time()))
            sent += 1
        sock.shutdown(socket.SHUT_WR)  # the end of the stream: the server then closes its side
        state["eof"].wait(a.linger)
    except OSError as e:
        state["error"], state["error_at"] = f"{type(e).__name__}: {e}", time.time()
    finally:
        if control:
            control.close()
        if driver:
            driver.close()
        periodic.stopped.set()
        periodic.write()
        sock.close()
    return 1 if state["error"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.traffic.stream", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="role", required=True)
    for p in (s := sub.add_parser("server", help="accept connections and verify each stream"),
              c := sub.add_parser("client", help="send a paced, numbered stream")):
        p.add_argument("--transport", choices=TRANSPORTS, default="mptcp")
        p.add_argument("--port", type=int, default=5001)
        p.add_argument("--stats", required=True, help="JSON stats file (rewritten every second)")
        p.add_argument("--user-timeout", type=int, default=0, metavar="MS",
                       help="TCP_USER_TIMEOUT (plain TCP): give up after MS of unacknowledged data")
    s.add_argument("--bind", default="", help="local address (default: any)")
    s.add_argument("--echo", action="store_true", help="answer each message")
    s.add_argument("--connections", type=int, default=0, help="stop accepting after N (0: never)")
    c.add_argument("--local", required=True, help="local address to bind")
    c.add_argument("--server", required=True)
    c.add_argument("--rate", type=float, default=20.0, help="messages per second")
    c.add_argument("--size", type=int, default=200, help="bytes per message")
    c.add_argument("--count", type=int, default=0, help="stop after N messages (0: no limit)")
    c.add_argument("--control", default="", help="unix socket for binding-update commands (MPTCP)")
    c.add_argument("--mode", choices=("trash", "auto"), default="trash")
    c.add_argument("--linger", type=float, default=5.0, help="seconds to wait for the server's end")
    args = ap.parse_args(argv)
    return Server(args).run() if args.role == "server" else client(args)


if __name__ == "__main__":
    raise SystemExit(main())
