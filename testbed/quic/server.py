"""The correspondent's aioquic server: one record per connection.

Two kinds of connection, by ALPN:

- ``testbed-messages``: the client's numbered messages on one bidirectional stream, framed by
  their length field as on a TCP stream. Each message is recorded with its arrival time, the
  source address of the datagram that carried its last byte and its stream offset (``messages``
  rows: seq, time, source, offset); with ``echo`` each is answered on the same stream.
- ``h3`` (a ``gtlsclient`` mobile node): every GET is answered with a body of numbered messages,
  one every 1/rate s until the server is told to stop (SIGTERM), then the stream ends; each
  sent message is recorded with the address it was sent to.

Whatever the kind, the source address of every datagram is followed: ``datagram_sources``
lists each change of the client's address, which is what a client's migration looks like
from here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent, StreamDataReceived

from testbed.traffic.messages import (
    ECHO_SIZE,
    SeqTracker,
    ServerStats,
    encode_message,
    note_arrival,
    split_messages,
)

ALPN_MESSAGES = "testbed-messages"
ALPN_H3 = "h3"
MAX_SENT_RECORDS = 200_000


@dataclass
class ConnRecord:
    """What the server saw of one connection."""

    stats: ServerStats = field(default_factory=ServerStats)
    tracker: SeqTracker = field(default_factory=SeqTracker)
    alpn: str = ""
    datagrams: int = 0
    datagram_sources: list[dict[str, Any]] = field(default_factory=list)  # {t, from, to}
    requests: list[dict[str, Any]] = field(default_factory=list)  # h3: {t, stream, path}
    sent: list[tuple[int, float, str, int]] = field(default_factory=list)  # h3: seq, time, to, offset
    source: str = ""
    ended: bool = False

    def saw(self, src: str, t: float) -> None:
        self.datagrams += 1
        if src != self.source:
            if self.source:
                self.datagram_sources.append({"t": t, "from": self.source, "to": src})
            else:
                self.stats.peer = src
            self.source = src

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.stats), "alpn": self.alpn, "datagrams": self.datagrams,
                "source": self.source, "datagram_sources": self.datagram_sources, "requests": self.requests,
                "sent": self.sent, "ended": self.ended}


@dataclass
class ServerApp:
    echo: bool = True
    rate: float = 50.0  # h3 bodies: messages per second
    size: int = 200
    conns: list[ConnRecord] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # a connection came or ended

    def snapshot(self) -> dict[str, Any]:
        return {"role": "server", "transport": "quic", "connections": [c.to_dict() for c in self.conns]}

    def protocol(self, *args: Any, **kwargs: Any) -> QuicConnectionProtocol:
        """``create_protocol`` for ``aioquic.asyncio.serve``: one per connection."""
        rec = ConnRecord()
        self.conns.append(rec)
        self.changed.set()
        return ServerConnection(*args, app=self, rec=rec, **kwargs)


class ServerConnection(QuicConnectionProtocol):
    def __init__(self, *args: Any, app: ServerApp, rec: ConnRecord, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app, self.rec = app, rec
        self.arrival = 0.0  # wall time of the datagram being handled
        self.buffers: dict[int, bytearray] = {}
        self.offsets: dict[int, int] = {}  # stream -> bytes taken out of its buffer so far
        self.h3: H3Connection | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.arrival = time.time()
        self.rec.saw(addr[0], self.arrival)
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.rec.alpn = event.alpn_protocol or ""
        if isinstance(event, ConnectionTerminated):
            self.rec.ended = True
            self.rec.stats.error = "" if event.error_code == 0 else \
                f"closed with error 0x{event.error_code:x}: {event.reason_phrase}"
            self.app.changed.set()
            return
        if self.rec.alpn == ALPN_H3:
            self._h3_event(event)
        elif isinstance(event, StreamDataReceived):
            self._messages(event)

    # -- testbed-messages
    def _messages(self, event: StreamDataReceived) -> None:
        sid = event.stream_id
        buf = self.buffers.setdefault(sid, bytearray())
        buf += event.data
        st = self.rec.stats
        try:
            msgs = split_messages(buf)
        except ValueError as e:
            st.error = f"stream {sid}: {e}"
            self._quic.close(error_code=0x1, reason_phrase="stream out of step")
            return
        for msg in msgs:
            offset = self.offsets.get(sid, 0)
            self.offsets[sid] = offset + msg.length
            note_arrival(st, self.rec.tracker, msg, self.arrival, self.rec.source, offset)
            if self.app.echo:
                self._quic.send_stream_data(sid, encode_message(msg.seq, ECHO_SIZE, self.arrival))
                st.echoed += 1
        if event.end_stream:
            st.closed = True
            self._quic.send_stream_data(sid, b"", end_stream=True)

    # -- h3: numbered messages as a GET's body
    def _h3_event(self, event: QuicEvent) -> None:
        if self.h3 is None:
            self.h3 = H3Connection(self._quic)
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                headers = dict(ev.headers)
                self.rec.requests.append({"t": self.arrival, "stream": ev.stream_id,
                                          "method": headers.get(b":method", b"").decode(),
                                          "path": headers.get(b":path", b"").decode()})
                self.app.changed.set()
                self.h3.send_headers(ev.stream_id, [(b":status", b"200"),
                                                    (b"content-type", b"application/octet-stream")])
                task = asyncio.get_running_loop().create_task(self._body(ev.stream_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _body(self, sid: int) -> None:
        assert self.h3 is not None
        loop = asyncio.get_running_loop()
        t0, seq, offset = loop.time(), 0, 0
        while not self.app.stopping.is_set() and not self.rec.ended:
            now = time.time()
            msg = encode_message(seq, self.app.size, now)
            self.h3.send_data(sid, msg, end_stream=False)
            self.transmit()
            peer = self._quic.get_peer_address()
            if len(self.rec.sent) < MAX_SENT_RECORDS:
                self.rec.sent.append((seq, now, peer[0] if peer else "", offset))
            seq, offset = seq + 1, offset + len(msg)
            delay = t0 + seq / self.app.rate - loop.time()
            if delay > 0:
                try:  # pacing; the stop event cuts it short
                    await asyncio.wait_for(self.app.stopping.wait(), delay)
                except TimeoutError:
                    pass
        if not self.rec.ended:
            self.h3.send_data(sid, b"", end_stream=True)
            self.transmit()
