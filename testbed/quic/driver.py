"""QUIC binding-update driver: the binding-driver protocol's commands as connection migration
(RFC 9000 §9) of the traffic client's connection, served on its command socket as the SCTP and
MPTCP ones are::

    add A        a UDP socket bound to A (the MN routes by source address, so it leaves by
                 A's network); nothing on the wire yet
    primary A    active migration to A (§9.2): a PATH_CHALLENGE from A on a connection ID of
                 the server's never used before (§9.5), sent again each PTO while unanswered;
                 once the PATH_RESPONSE validates the path (§8.2.3) the client sends
                 everything from A and retires the old path's connection ID
                 (RETIRE_CONNECTION_ID, §5.1.2). Answered then (``acked``: the path was
                 validated; ``ack_s``), or after ``validate_timeout`` (``acked: false``)
    delete A     A's socket closed, its path forgotten (nothing more is sent from A; a path
                 still active keeps its place until a migration replaces it)
    status       the connection's local addresses, active path, connection IDs

``QuicDriver`` does the work as coroutines in the client's event loop, which owns the
connection; ``QuicBindingDriver`` is the protocol's ``BindingDriver`` in front of it, called
from the command server's threads.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from testbed.mobility.protocol import Done, State
from testbed.quic import migration
from testbed.quic.endpoint import ClientEndpoint

VALIDATE_TIMEOUT = 3.0  # seconds a migration waits for the new path's PATH_RESPONSE
REPLY_MARGIN = 2.0  # a command's reply may take this much longer than the action itself
T = TypeVar("T")


@dataclass
class QuicDriver:
    """Migrations of one client connection (``endpoint``'s)."""

    endpoint: ClientEndpoint
    validate_timeout: float = VALIDATE_TIMEOUT
    log: list[Done] = field(default_factory=list)

    @property
    def conn(self):
        return self.endpoint.conn

    def _done(self, done: Done) -> Done:
        self.log.append(done)
        return done

    async def add(self, address: str, ifname: str = "") -> Done:
        t = time.time()
        if address in self.endpoint.sockets:
            return self._done(Done("add", address, t, skipped="already open"))
        port = await self.endpoint.open(address)
        return self._done(Done("add", address, t, time.time() - t, detail={"port": port}))

    async def primary(self, address: str) -> Done:
        t = time.time()
        active = self.endpoint.active
        if active is not None and active.local == address:
            return self._done(Done("primary", address, t, skipped="already the active path"))
        port = await self.endpoint.open(address)
        path = self.endpoint.path(address)
        old = migration.peer_cid(self.conn)
        if not migration.probe(self.conn, path):
            why = ("the handshake is not confirmed" if not migration.handshake_confirmed(self.conn)
                   else "no unused connection ID of the peer (RFC 9000 §9.5)")
            raise ValueError(f"no migration: {why}")
        self.endpoint.pump()
        probes, loop = 1, asyncio.get_running_loop()
        deadline = loop.time() + self.validate_timeout
        validated = False
        while not validated and loop.time() < deadline:
            # another challenge each PTO while unanswered (§8.2.1; the first may be lost)
            wait = min(max(migration.probe_timeout(self.conn), 0.05), deadline - loop.time())
            validated = await self.endpoint.wait_active(address, wait)
            if not validated and loop.time() < deadline and migration.probe_again(self.conn, path):
                probes += 1
                self.endpoint.pump()
        dt = time.time() - t
        return self._done(Done("primary", address, t, dt, acked=validated, ack_s=round(dt, 6),
                               detail={"port": port, "probes": probes, "dcid_old": old,
                                       "dcid_new": migration.peer_cid(self.conn)}))

    async def delete(self, address: str) -> Done:
        t = time.time()
        active = self.endpoint.active
        detail: dict[str, Any] = {"forgotten": migration.forget(self.conn, self.endpoint.path(address)),
                                  "was_active": active is not None and active.local == address}
        closed = self.endpoint.close(address)
        self.endpoint.pump()
        return self._done(Done("delete", address, t, time.time() - t,
                               skipped="" if closed else "no socket", detail=detail))

    async def status(self) -> State:
        active = self.endpoint.active
        local = tuple(sorted(self.endpoint.sockets))
        families = tuple(sorted({ipaddress.ip_address(a).version for a in local}))
        detail = {"dcid": migration.peer_cid(self.conn), "spare_cids": migration.spare_peer_cids(self.conn),
                  "paths": migration.paths(self.conn)}
        return State("connected", local=local, peer=(self.endpoint.host,),
                     primary=active.local if active else "", families=families, mode="trash", detail=detail)


@dataclass
class QuicBindingDriver:
    """The binding-driver interface (``testbed.mobility.driver.BindingDriver``) of a
    ``QuicDriver``: each call is carried out in the event loop that owns the connection and
    answered from the command server's thread."""

    driver: QuicDriver
    loop: asyncio.AbstractEventLoop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(self.driver.validate_timeout + REPLY_MARGIN)

    def add(self, address: str, ifname: str = "") -> Done:
        return self._run(self.driver.add(address, ifname))

    def primary(self, address: str) -> Done:
        return self._run(self.driver.primary(address))

    def delete(self, address: str) -> Done:
        return self._run(self.driver.delete(address))

    def status(self) -> State:
        return self._run(self.driver.status())
