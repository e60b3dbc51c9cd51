"""The client's I/O around one sans-I/O aioquic ``QuicConnection``: a UDP socket per local
address, datagrams in and out, the connection's timer, its events handed on.

Each socket is bound to one of the MN's addresses; the MN routes by source address, so what a
socket sends leaves by that address's network. The connection names each path by
``PathAddress(server host, server port, local address)`` (see ``testbed.quic.migration``), so a
datagram received on a socket is given to the connection under that socket's path, and each
datagram the connection sends goes out of the socket of its path's local address. A datagram
for a local address with no socket (the address went away) is dropped and counted: QUIC's loss
recovery resends what it carried once a path works again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent

from testbed.quic.migration import PathAddress

# (event, local address of the datagram it came with, wall time of that datagram)
EventSink = Callable[[QuicEvent, str, float], None]
# makes the datagram transport bound to a local address (default: a UDP socket)
Opener = Callable[["ClientEndpoint", str], Awaitable[asyncio.DatagramTransport]]


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, endpoint: ClientEndpoint, local: str) -> None:
        self.endpoint, self.local = endpoint, local

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.endpoint.datagram_received(data, addr, self.local)

    def error_received(self, exc: Exception) -> None:  # e.g. ENETUNREACH once an address is gone
        self.endpoint.send_errors += 1


async def _udp_socket(endpoint: ClientEndpoint, local: str) -> asyncio.DatagramTransport:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _Receiver(endpoint, local), local_addr=(local, 0))
    return transport


@dataclass
class ClientEndpoint:
    conn: QuicConnection
    host: str
    port: int
    on_event: EventSink
    sockets: dict[str, asyncio.DatagramTransport] = field(default_factory=dict)
    dropped: int = 0  # datagrams for a local address without a socket
    send_errors: int = 0
    _timer: asyncio.TimerHandle | None = None
    _timer_at: float | None = None
    _active: PathAddress | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    path_log: list[dict] = field(default_factory=list)  # each change of the active path
    opener: Opener | None = None

    def path(self, local: str) -> PathAddress:
        return PathAddress(self.host, self.port, local)

    @property
    def active(self) -> PathAddress | None:
        """The path the connection sends on now."""
        return self._active

    # -- sockets
    async def open(self, local: str) -> int:
        """A UDP socket bound to ``local`` (if not open yet); its port."""
        if local not in self.sockets:
            self.sockets[local] = await (self.opener or _udp_socket)(self, local)
        return self.sockets[local].get_extra_info("sockname")[1]

    def close(self, local: str) -> bool:
        t = self.sockets.pop(local, None)
        if t is None:
            return False
        t.close()
        return True

    # -- the connection
    def connect(self, local: str) -> None:
        self.conn.connect(self.path(local), now=asyncio.get_running_loop().time())
        self._note_active()
        self.transmit()

    def datagram_received(self, data: bytes, src: tuple, local: str) -> None:
        if (src[0], src[1]) != (self.host, self.port):
            return  # not the server (RFC 9000 §9: a client discards those)
        wall = time.time()
        self.conn.receive_datagram(data, self.path(local), now=asyncio.get_running_loop().time())
        self.pump(local, wall)

    def pump(self, local: str = "", wall: float | None = None) -> None:
        """Hand on the connection's events, then send what it has to send."""
        wall = time.time() if wall is None else wall
        while (event := self.conn.next_event()) is not None:
            self.on_event(event, local, wall)
        self._note_active()
        self.transmit()

    def transmit(self) -> None:
        loop = asyncio.get_running_loop()
        for data, addr in self.conn.datagrams_to_send(now=loop.time()):
            t = self.sockets.get(addr.local)
            if t is None:
                self.dropped += 1
            else:
                t.sendto(data, (addr.host, addr.port))
        self._arm(self.conn.get_timer())

    def _arm(self, at: float | None) -> None:
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = asyncio.get_running_loop().call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        self.conn.handle_timer(now=asyncio.get_running_loop().time())
        self.pump()

    # -- the active path
    def _note_active(self) -> None:
        now = self.conn.get_peer_address()
        if now != self._active:
            self.path_log.append({"t": time.time(), "local": now.local if now else None,
                                  "from": self._active.local if self._active else None})
            self._active = now
        self._changed.set()  # whatever waits re-checks its condition

    async def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Until ``done()`` holds, re-checked after each datagram and timer, or ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return done()
        return True

    async def wait_active(self, local: str, timeout: float) -> bool:
        """Until the connection sends on ``local``'s path (validated, migrated to), or ``timeout``."""
        return await self.wait_until(lambda: self._active is not None and self._active.local == local,
                                     timeout)
