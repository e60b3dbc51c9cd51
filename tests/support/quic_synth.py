"""Real QUIC captures without a lab: an aioquic client and server linked in memory.

aioquic's I/O-free core (``QuicConnection.receive_datagram`` / ``datagrams_to_send``) runs both
ends on a simulated clock with a fixed one-way delay; every datagram is written as an
Ethernet/IPv4/UDP frame, at the client's capture point and, optionally, at the server's (the
second capture sees the addresses a NAT would give: ``nat``). The client carries the numbered
messages of ``testbed.traffic.messages`` on one bidirectional stream and the server echoes each
one (``ECHO_SIZE`` bytes), as the lab's stream app does. Both ends log their TLS secrets in
SSLKEYLOGFILE format.

A migration (RFC 9000 §9.2) is the client switching to an unused connection ID of the server
(``change_connection_id()``, which also retires the previous one) and sending from a new
address; the server then validates the new path (PATH_CHALLENGE/PATH_RESPONSE). Only tests and
``bench/`` use this module.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import ssl
import struct
from dataclasses import dataclass, field
from pathlib import Path

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamDataReceived
from aioquic.quic.packet import encode_quic_retry, pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.traffic.messages import ECHO_SIZE, HEADER, encode_message
from tests.support.synth import write_pcap

START = 1_700_000_000.0
ALPN = ["testbed-messages"]
Addr = tuple[str, int]


def _certificate() -> tuple[object, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cn.lab.test")])
    now = datetime.datetime(2023, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return cert, key


_CERT: tuple[object, object] | None = None


def _frame(src: Addr, dst: Addr, payload: bytes, ipid: int) -> bytes:
    """Ethernet + IPv4 + UDP (checksum 0: none, RFC 768) around ``payload``."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ipid & 0xFFFF, 0x4000, 64, 17, 0,
                     ipaddress.ip_address(src[0]).packed, ipaddress.ip_address(dst[0]).packed)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + udp


@dataclass
class QuicRun:
    """What ``quic_run`` produced: frames per capture point, the keylog and the ground truth."""

    client_frames: list[tuple[float, bytes]] = field(default_factory=list)
    server_frames: list[tuple[float, bytes]] = field(default_factory=list)
    keylog: str = ""
    migrations: list[tuple[float, Addr]] = field(default_factory=list)  # (time, new client address)
    messages_sent: int = 0
    echoes_received: int = 0
    version: int = 0
    datagrams: int = 0

    def write(self, out: Path, *, keylog: bool = True, server_side: bool | None = None) -> list[Path]:
        """``mn.pcap`` (and ``cn.pcap`` when the server side was captured) plus ``keylog.txt``."""
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "mn.pcap"]
        write_pcap(paths[0], self.client_frames)
        if self.server_frames and server_side is not False:
            paths.append(out / "cn.pcap")
            write_pcap(paths[1], sorted(self.server_frames, key=lambda f: f[0]))
        if keylog:
            (out / "keylog.txt").write_text(self.keylog)
        return paths


def quic_run(
    *,
    messages: int = 40,
    interval: float = 0.02,
    size: int = 200,
    client: Addr = ("198.51.100.10", 50000),
    server: Addr = ("203.0.113.1", 4433),
    moves: tuple[tuple[int, Addr], ...] = ((20, ("198.51.100.20", 50001)),),
    one_way: float = 0.005,
    version: int | None = None,
    retry: bool = False,
    key_update_at: tuple[int, ...] = (),
    cipher_suites: list[int] | None = None,
    nat: dict[Addr, Addr] | None = None,
    server_capture: bool = False,
    change_cid: bool = True,
    drop: frozenset[int] = frozenset(),
) -> QuicRun:
    """Run one connection: ``messages`` numbered messages ``interval`` apart; before message
    ``i`` of each ``moves`` entry the client moves to its address. ``nat`` maps a client
    address to the one the server sees (and the server capture shows). ``drop``: indexes of
    client datagrams lost before any capture point (a retransmission fills them)."""
    global _CERT
    if _CERT is None:
        _CERT = _certificate()
    cert, key = _CERT
    log = io.StringIO()
    ccfg = QuicConfiguration(is_client=True, alpn_protocols=ALPN, secrets_log_file=log,
                             verify_mode=ssl.CERT_NONE)
    if version is not None:
        ccfg.original_version = version
        ccfg.supported_versions = [version, *(v for v in ccfg.supported_versions if v != version)]
    scfg = QuicConfiguration(is_client=False, alpn_protocols=ALPN, secrets_log_file=log)
    scfg.certificate, scfg.private_key = cert, key
    if cipher_suites is not None:
        ccfg.cipher_suites = scfg.cipher_suites = cipher_suites  # type: ignore[assignment]
    nat = nat or {}
    run = QuicRun()
    now = START
    cli = QuicConnection(configuration=ccfg)
    cli.connect(server, now=now)
    srv: QuicConnection | None = None
    here = client
    ipid = 0
    sent_index = 0
    retried = False
    wire: list[tuple[float, bool, bytes, Addr]] = []  # in flight: (arrival, to server, data, from)

    def capture(t: float, src: Addr, dst: Addr, data: bytes, to_server: bool) -> None:
        nonlocal ipid
        ipid += 1
        run.datagrams += 1
        # the client side's capture sees the client's own address; the server's, the NAT's
        if to_server:
            run.client_frames.append((t, _frame(src, dst, data, ipid)))
            if server_capture:
                run.server_frames.append((t + one_way, _frame(nat.get(src, src), dst, data, ipid)))
        else:
            real = next((a for a, pub in nat.items() if pub == dst), dst)
            if server_capture:
                run.server_frames.append((t, _frame(src, dst, data, ipid)))
            run.client_frames.append((t + one_way, _frame(src, real, data, ipid)))

    def flush(t: float) -> None:
        nonlocal sent_index
        for data, _addr in cli.datagrams_to_send(t):
            sent_index += 1
            if sent_index in drop:
                continue
            capture(t, here, server, data, True)
            wire.append((t + one_way, True, data, nat.get(here, here)))
        if srv is not None:
            for data, addr in srv.datagrams_to_send(t):
                dst = addr  # type: ignore[assignment]
                capture(t, server, dst, data, False)
                wire.append((t + one_way, False, data, server))

    def deliver(until: float) -> None:
        nonlocal srv, retried, odcid
        while True:
            wire.sort(key=lambda w: w[0])
            if not wire or wire[0][0] > until:
                return
            at, to_server, data, src = wire.pop(0)
            if to_server:
                if srv is None:
                    hdr = pull_quic_header(Buffer(data=data), host_cid_length=8)
                    if retry and not retried:
                        retried = True
                        new_cid = bytes(range(0x10, 0x18))
                        pkt = encode_quic_retry(hdr.version, new_cid, hdr.source_cid, hdr.destination_cid,
                                                b"retry-token")
                        capture(at, server, src, pkt, False)
                        wire.append((at + one_way, False, pkt, server))
                        odcid = hdr.destination_cid
                        continue
                    if retried:
                        srv = QuicConnection(configuration=scfg, original_destination_connection_id=odcid,
                                             retry_source_connection_id=hdr.destination_cid)
                    else:
                        srv = QuicConnection(configuration=scfg,
                                             original_destination_connection_id=hdr.destination_cid)
                srv.receive_datagram(data, src, now=at)
                for ev in iter(srv.next_event, None):
                    if isinstance(ev, StreamDataReceived):
                        _echo(srv, ev)
            else:
                cli.receive_datagram(data, src, now=at)
                for ev in iter(cli.next_event, None):
                    if isinstance(ev, StreamDataReceived):
                        run.echoes_received += len(ev.data) // ECHO_SIZE
            flush(at)

    odcid = b""
    echo_buf: dict[int, bytes] = {}

    def _echo(conn: QuicConnection, ev: StreamDataReceived) -> None:
        buf = echo_buf.get(ev.stream_id, b"") + ev.data
        while len(buf) >= HEADER.size:
            length = struct.unpack_from("!I", buf, 4)[0]
            if len(buf) < length:
                break
            seq = struct.unpack_from("!Q", buf, 8)[0]
            conn.send_stream_data(ev.stream_id, encode_message(seq, ECHO_SIZE, now))
            buf = buf[length:]
        echo_buf[ev.stream_id] = buf

    def advance(until: float) -> None:
        nonlocal now
        while True:
            timers = [t for t in (cli.get_timer(), srv.get_timer() if srv else None) if t is not None]
            nxt = min([*timers, *(w[0] for w in wire)], default=None)
            if nxt is None or nxt > until:
                break
            deliver(nxt)
            for conn in (cli, srv):
                if conn is not None and (t := conn.get_timer()) is not None and t <= nxt:
                    conn.handle_timer(nxt)
            flush(nxt)
        now = until

    flush(now)
    advance(now + 0.2)  # the handshake, confirmed (migration before that fails)
    run.version = cli._version  # noqa: SLF001 - the negotiated version, for the test's ground truth
    stream = cli.get_next_available_stream_id()
    move_at = dict(moves)
    for i in range(messages):
        if i in move_at:
            if change_cid:
                cli.change_connection_id()
            here = move_at[i]
            run.migrations.append((now, here))
        if i in key_update_at:
            cli.request_key_update()
        cli.send_stream_data(stream, encode_message(i, size, now))
        run.messages_sent += 1
        flush(now)
        advance(now + interval)
    advance(now + 1.0)
    run.keylog = log.getvalue()
    run.client_frames.sort(key=lambda f: f[0])
    return run


__all__ = ["QuicRun", "quic_run"]
