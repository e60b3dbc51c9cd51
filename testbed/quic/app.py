"""QUIC traffic over aioquic: the numbered message stream of the other transports' apps.

    python -m testbed.quic.app server --bind 203.0.113.14 --port 4433 --cert C --key K \
        --stats S.json --keylog keylog-cn.txt [--echo] [--rate 50 --size 200]
    python -m testbed.quic.app client --local 192.0.2.100 --server 203.0.113.14 --port 4433 \
        --rate 50 --size 200 --stats C.json --keylog keylog-mn.txt --control C.sock \
        [--http3 --count N]

The server takes both kinds of connection (``testbed.quic.server``); the client speaks
``testbed-messages`` to an aioquic server, or, with ``--http3``, GETs numbered files from an
HTTP/3 server (``gtlsserver``). Both write their TLS secrets in SSLKEYLOGFILE format
(``--keylog``), which is what lets the checker decrypt the run, and their stats as JSON (every
second and at the end). The client serves the QUIC binding driver on ``--control`` once its
handshake is confirmed: that socket appearing is the sign that it is connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from testbed.traffic.messages import write_json

DEFAULT_PORT = 4433
IDLE_TIMEOUT = 60.0  # longer than any gap a scenario moves through: the connection must outlive it
CONNECT_TIMEOUT = 20.0


def _keylog(path: str) -> IO[str] | None:
    return open(path, "a", buffering=1) if path else None  # noqa: SIM115 - open for the run


async def _write_every(path: Path, snapshot: Callable[[], Any], stop: asyncio.Event,
                       period: float = 1.0) -> None:
    while not stop.is_set():
        write_json(path, snapshot())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


# -- server -----------------------------------------------------------------------------------
async def serve(a: argparse.Namespace) -> int:
    from aioquic.asyncio import serve as quic_serve
    from aioquic.quic.configuration import QuicConfiguration

    from testbed.quic.server import ALPN_H3, ALPN_MESSAGES, ServerApp

    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN_MESSAGES, ALPN_H3],
                               idle_timeout=a.idle_timeout, secrets_log_file=_keylog(a.keylog))
    config.load_cert_chain(a.cert, a.key)
    app = ServerApp(echo=a.echo, rate=a.rate, size=a.size)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    server = await quic_serve(a.bind, a.port, configuration=config, create_protocol=app.protocol)
    stats = Path(a.stats)
    writer = asyncio.create_task(_write_every(stats, app.snapshot, stop))
    await stop.wait()  # the file appeared once the server listened (the writer's first write)
    app.stopping.set()  # h3 bodies end their streams now
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.linger
    while any(not c.ended for c in app.conns) and loop.time() < deadline:
        app.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.changed.wait(), deadline - loop.time())
    await writer
    server.close()
    write_json(stats, app.snapshot())
    return 0


# -- client -----------------------------------------------------------------------------------
async def connect(a: argparse.Namespace) -> int:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    from testbed.mobility import driver as binding_driver
    from testbed.mobility.protocol import encode
    from testbed.quic import migration
    from testbed.quic.client import MessageStream, Requests
    from testbed.quic.driver import QuicBindingDriver, QuicDriver
    from testbed.quic.endpoint import ClientEndpoint
    from testbed.quic.server import ALPN_H3, ALPN_MESSAGES

    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN_H3 if a.http3 else ALPN_MESSAGES],
                               verify_mode=ssl.CERT_NONE, idle_timeout=a.idle_timeout,
                               secrets_log_file=_keylog(a.keylog), server_name=a.sni or None)
    conn = QuicConnection(configuration=config)
    app: MessageStream | Requests = (Requests(conn, authority=a.sni or a.server, count=a.count) if a.http3
                                     else MessageStream(conn, a.size))
    endpoint = ClientEndpoint(conn, a.server, a.port, app.on_event)
    driver = QuicDriver(endpoint)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    t_start = time.time()

    def snapshot() -> dict[str, Any]:
        return {"role": "client", "transport": "quic", "http3": a.http3, "start": t_start,
                "local": a.local, **app.snapshot(), "dropped": endpoint.dropped,
                "send_errors": endpoint.send_errors, "paths": endpoint.path_log,
                "driver_log": [encode(d) for d in driver.log]}

    stats = Path(a.stats)
    writer = asyncio.create_task(_write_every(stats, snapshot, stop))
    await endpoint.open(a.local)
    endpoint.connect(a.local)
    confirmed = await endpoint.wait_until(lambda: migration.handshake_confirmed(conn) or app.end.ended,
                                          a.connect_timeout)
    control = None
    status = 0
    try:
        if not confirmed or app.end.ended:
            app.end.error = app.end.error or f"handshake not confirmed within {a.connect_timeout:g} s"
            return 1
        if a.control:  # the binding process's commands, in the binding-driver protocol
            facade = QuicBindingDriver(driver, asyncio.get_running_loop())
            control = binding_driver.serve(Path(a.control), facade)
        loop = asyncio.get_running_loop()
        interval, t0, n = 1.0 / a.rate, loop.time(), 0
        while not stop.is_set() and not app.end.ended and (a.messages <= 0 or n < a.messages):
            delay = t0 + n * interval - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):  # pacing; a stop cuts it short
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            app.send_next()
            endpoint.transmit()
            n += 1
            if isinstance(app, Requests) and app.exhausted:
                break
        app.finish()
        endpoint.transmit()
        await endpoint.wait_until(lambda: app.done, a.linger)
        status = 1 if app.end.error else 0
        return status
    finally:
        if control is not None:
            control.close()
        conn.close()
        endpoint.transmit()
        stop.set()
        await writer
        write_json(stats, snapshot())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.quic.app", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="role", required=True)
    for p in (s := sub.add_parser("server", help="accept connections, record each message"),
              c := sub.add_parser("client", help="send a paced, numbered stream (or GETs)")):
        p.add_argument("--port", type=int, default=DEFAULT_PORT)
        p.add_argument("--stats", required=True, help="JSON stats file (rewritten every second)")
        p.add_argument("--keylog", default="", help="TLS secrets, SSLKEYLOGFILE format")
        p.add_argument("--rate", type=float, default=50.0, help="messages per second")
        p.add_argument("--size", type=int, default=200, help="bytes per message")
        p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT)
        p.add_argument("--linger", type=float, default=5.0, help="seconds to wait for the peer's end")
    s.add_argument("--bind", required=True, help="local address")
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--echo", action="store_true", help="answer each message")
    c.add_argument("--local", required=True, help="local address to start from")
    c.add_argument("--server", required=True)
    c.add_argument("--sni", default="", help="TLS server name (HTTP/3: also the :authority)")
    c.add_argument("--control", default="", help="unix socket for binding-update commands")
    c.add_argument("--messages", type=int, default=0, help="stop after N messages (0: no limit)")
    c.add_argument("--http3", action="store_true", help="GET /m/<seq> from an HTTP/3 server")
    c.add_argument("--count", type=int, default=0, help="--http3: files the server holds")
    c.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT)
    args = ap.parse_args(argv)
    try:
        return asyncio.run(serve(args) if args.role == "server" else connect(args))
    except ImportError as e:  # the lab checks aioquic before it starts this; a hand-run may not
        print(f"aioquic is not importable ({e}): {Path(sys.executable).parent}/pip install aioquic==1.7.2",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
