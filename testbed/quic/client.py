"""The mobile node's aioquic client: one connection, migrated by the binding process.

- ``MessageStream`` (ALPN ``testbed-messages``, an aioquic server): the numbered messages, paced,
  on one bidirectional stream; the server's echoes are counted as they come back.
- ``Requests`` (ALPN ``h3``, ``gtlsserver``): one GET per message, of the small numbered file
  ``/m/<seq>`` in the server's htdocs, paced; each response body is the numbered message, and
  the responses are the stream whose continuity is recorded here (arrival time, the local
  address of the datagram that completed it, its stream id).

Both carry the embedded QUIC binding driver behind the control socket once the handshake is
confirmed (migration needs that, RFC 9000 §9).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

from testbed.traffic.messages import SeqTracker, ServerStats, encode_message, note_arrival, split_messages

HTDOCS_PREFIX = "m"  # request paths /m/<seq>


def request_path(seq: int) -> str:
    return f"/{HTDOCS_PREFIX}/{seq}"


@dataclass
class Termination:
    """How the connection ended, if it did."""

    ended: bool = False
    error: str = ""
    at: float | None = None

    def feed(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated) and not self.ended:
            self.ended, self.at = True, time.time()
            if event.error_code != 0:
                self.error = f"closed with error 0x{event.error_code:x}: {event.reason_phrase}"


@dataclass
class MessageStream:
    """Numbered messages out on one stream, echoes back."""

    conn: QuicConnection
    size: int
    stream_id: int = -1
    sent: int = 0
    echoes: SeqTracker = field(default_factory=SeqTracker)
    echo_locals: dict[str, int] = field(default_factory=dict)  # local address -> echoes received there
    eof: bool = False
    _buf: bytearray = field(default_factory=bytearray)
    end: Termination = field(default_factory=Termination)

    def send_next(self) -> None:
        if self.stream_id < 0:
            self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_stream_data(self.stream_id, encode_message(self.sent, self.size, time.time()))
        self.sent += 1

    def finish(self) -> None:
        if self.stream_id >= 0:
            self.conn.send_stream_data(self.stream_id, b"", end_stream=True)
        else:
            self.eof = True  # nothing was sent: nothing to wait for

    @property
    def done(self) -> bool:
        return self.eof or self.end.ended

    def on_event(self, event: QuicEvent, local: str, wall: float) -> None:
        self.end.feed(event)
        if isinstance(event, StreamDataReceived) and event.stream_id == self.stream_id:
            self._buf += event.data
            for msg in split_messages(self._buf):
                self.echoes.feed(msg.seq)
                self.echo_locals[local] = self.echo_locals.get(local, 0) + 1
            if event.end_stream:
                self.eof = True

    def snapshot(self) -> dict[str, Any]:
        return {"sent": self.sent, "echo_received": self.echoes.received, "echo_missing": self.echoes.missing,
                "echo_duplicates": list(self.echoes.duplicates), "echo_locals": dict(self.echo_locals),
                "error": self.end.error, "error_at": self.end.at}


@dataclass
class Requests:
    """A numbered GET per message; the responses' bodies are the stream recorded."""

    conn: QuicConnection
    authority: str
    count: int  # files the server holds: no request beyond them
    h3: H3Connection | None = None
    sent: int = 0
    pending: dict[int, int] = field(default_factory=dict)  # stream id -> seq requested
    bodies: dict[int, bytearray] = field(default_factory=dict)
    status: dict[int, int] = field(default_factory=dict)
    stats: ServerStats = field(default_factory=lambda: ServerStats(role="client"))
    tracker: SeqTracker = field(default_factory=SeqTracker)
    failed: list[dict[str, Any]] = field(default_factory=list)  # a response that was not the message
    end: Termination = field(default_factory=Termination)

    def __post_init__(self) -> None:
        if self.h3 is None:
            self.h3 = H3Connection(self.conn)

    @property
    def exhausted(self) -> bool:
        return self.sent >= self.count

    def send_next(self) -> None:
        if self.exhausted:
            return
        assert self.h3 is not None
        sid = self.conn.get_next_available_stream_id()
        self.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                   (b":authority", self.authority.encode()),
                                   (b":path", request_path(self.sent).encode()),
                                   (b"user-agent", b"testbed")], end_stream=True)
        self.pending[sid] = self.sent
        self.sent += 1

    def finish(self) -> None:
        """Nothing to end: every request ended its own stream."""

    @property
    def done(self) -> bool:
        return not self.pending or self.end.ended

    def on_event(self, event: QuicEvent, local: str, wall: float) -> None:
        self.end.feed(event)
        assert self.h3 is not None
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived) and ev.stream_id in self.pending:
                self.status[ev.stream_id] = int(dict(ev.headers).get(b":status", b"0") or 0)
                if ev.stream_ended:
                    self._complete(ev.stream_id, local, wall)
            elif isinstance(ev, DataReceived) and ev.stream_id in self.pending:
                self.bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                if ev.stream_ended:
                    self._complete(ev.stream_id, local, wall)

    def _complete(self, sid: int, local: str, wall: float) -> None:
        seq = self.pending.pop(sid)
        body = self.bodies.pop(sid, bytearray())
        status = self.status.pop(sid, 0)
        try:
            msgs = split_messages(body) if status == 200 else []
        except ValueError:
            msgs = []
        if len(msgs) != 1 or body or msgs[0].seq != seq:
            self.failed.append({"seq": seq, "stream": sid, "status": status, "t": wall})
            return
        note_arrival(self.stats, self.tracker, msgs[0], wall, local, sid)

    def snapshot(self) -> dict[str, Any]:
        return {"requests": self.sent, "unanswered": len(self.pending), "failed": self.failed,
                "responses": asdict(self.stats), "error": self.end.error, "error_at": self.end.at}
