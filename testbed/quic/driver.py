"""QUIC binding-update driver: the binding process's actions as connection migration (RFC 9000
§9) of the traffic client's connection, behind the JSON-lines command channel the SCTP and
MPTCP drivers serve::

    {"op": "add", "addr": A}      a UDP socket bound to A (the MN routes by source address, so
                                  it leaves by A's network); nothing on the wire yet
    {"op": "primary", "addr": A}  active migration to A (§9.2): a PATH_CHALLENGE from A on a
                                  connection ID of the server's never used before (§9.5);
                                  once the PATH_RESPONSE validates the path (§8.2.3) the
                                  client sends everything from A and retires the old path's
                                  connection ID (RETIRE_CONNECTION_ID, §5.1.2); answered
                                  then (``validated``), or after ``validate_timeout``
    {"op": "del", "addr": A}      A's socket closed, its path forgotten (nothing more is sent
                                  from A; a path still active keeps its place until a
                                  migration replaces it)
    {"op": "status"}              the connection's local addresses, active path, connection IDs

``QuicDriver`` is the typed interface (a coroutine per action, named as the binding-driver
interface names them: add, primary, delete, status; run in the client's event loop);
``JsonCommands`` adapts the JSON lines to it from the command server's threads.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.quic import migration
from testbed.quic.endpoint import ClientEndpoint

VALIDATE_TIMEOUT = 3.0  # seconds a migration waits for the new path's PATH_RESPONSE
REPLY_MARGIN = 2.0  # a command's reply may take this much longer than the action itself


@dataclass
class QuicDriver:
    """Migrations of one client connection (``endpoint``'s)."""

    endpoint: ClientEndpoint
    validate_timeout: float = VALIDATE_TIMEOUT
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def conn(self):
        return self.endpoint.conn

    def _done(self, entry: dict[str, Any]) -> dict[str, Any]:
        """An action's record, timed from its start (``t``) and kept in the log."""
        entry["dt"] = time.time() - entry["t"]
        self.log.append(entry)
        return entry

    async def add(self, addr: str, ifname: str = "") -> dict[str, Any]:
        entry: dict[str, Any] = {"op": "add", "addr": addr, "t": time.time()}
        if addr in self.endpoint.sockets:
            entry["skipped"] = "already open"
        else:
            entry["port"] = await self.endpoint.open(addr)
        return self._done(entry)

    async def primary(self, addr: str) -> dict[str, Any]:
        t = time.time()
        entry: dict[str, Any] = {"op": "primary", "addr": addr, "t": t}
        active = self.endpoint.active
        if active is not None and active.local == addr:
            entry["skipped"] = "already the active path"
            return self._done(entry)
        entry["port"] = await self.endpoint.open(addr)
        path = self.endpoint.path(addr)
        entry["dcid_old"] = migration.peer_cid(self.conn)
        if not migration.probe(self.conn, path):
            why = ("handshake not confirmed" if not migration.handshake_confirmed(self.conn)
                   else "no unused connection ID of the peer")
            entry.update(validated=False, error=why)
            return self._done(entry)
        self.endpoint.pump()
        probes, loop = 1, asyncio.get_running_loop()
        deadline = loop.time() + self.validate_timeout
        validated = False
        while not validated and loop.time() < deadline:
            # another challenge each PTO while unanswered (§8.2.1; the first may be lost)
            wait = min(max(migration.probe_timeout(self.conn), 0.05), deadline - loop.time())
            validated = await self.endpoint.wait_active(addr, wait)
            if not validated and loop.time() < deadline and migration.probe_again(self.conn, path):
                probes += 1
                self.endpoint.pump()
        entry.update(validated=validated, probes=probes, dcid_new=migration.peer_cid(self.conn),
                     validate_s=round(time.time() - t, 6))
        return self._done(entry)

    async def delete(self, addr: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"op": "del", "addr": addr, "t": time.time()}
        active = self.endpoint.active
        entry["forgotten"] = migration.forget(self.conn, self.endpoint.path(addr))
        entry["was_active"] = active is not None and active.local == addr
        if not self.endpoint.close(addr):
            entry["skipped"] = "no socket"
        self.endpoint.pump()
        return self._done(entry)

    async def status(self) -> dict[str, Any]:
        active = self.endpoint.active
        local = sorted(self.endpoint.sockets)
        return {"state": "connected", "local": local, "active": active.local if active else None,
                "peer": [self.endpoint.host], "mode": "trash",
                "families": sorted({ipaddress.ip_address(a).version for a in local}),
                "dcid": migration.peer_cid(self.conn), "spare_cids": migration.spare_peer_cids(self.conn),
                "paths": migration.paths(self.conn)}


@dataclass
class JsonCommands:
    """``{"op": ...}`` JSON lines → ``QuicDriver`` calls, from the command server's threads into
    the event loop that owns the connection."""

    driver: QuicDriver
    loop: asyncio.AbstractEventLoop

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """One request → reply (never raises)."""
        d = self.driver
        calls: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "add": lambda: d.add(cmd["addr"], cmd.get("ifname", "")),
            "primary": lambda: d.primary(cmd["addr"]),
            "del": lambda: d.delete(cmd["addr"]),
            "status": d.status,
        }
        op = cmd.get("op")
        if op not in calls:
            return {"ok": False, "error": f"unknown op {op!r}"}
        try:
            fut = asyncio.run_coroutine_threadsafe(calls[op](), self.loop)
            return {"ok": True, **fut.result(d.validate_timeout + REPLY_MARGIN)}
        except (OSError, KeyError, ValueError, TimeoutError, RuntimeError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
