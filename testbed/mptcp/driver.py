"""MPTCP binding-update driver: the binding process's actions as path-manager commands on one
connection (the traffic client's), behind the same JSON-lines command channel as the SCTP one::

    {"op": "add", "addr": A,      trash: SUBFLOW_CREATE from A as a backup (MP_JOIN), then, once
     "ifname": I}
                                  the subflow is established, ANNOUNCE A (ADD_ADDR)
                                  auto:  an endpoint A (signal, subflow): the kernel joins and
                                  announces by itself
    {"op": "primary", "addr": A}  trash: SET_FLAGS: A's subflow active, every other backup
                                  (MP_PRIO each); auto: nothing (the in-kernel manager has no
                                  notion of a preferred network)
    {"op": "del", "addr": A}      trash: REMOVE A's id (REMOVE_ADDR; the kernel closes its
                                  subflows); auto: the endpoint goes, which does the same
    {"op": "status"}              the token, local addresses and their ids, the mode

Mode ``trash`` needs the userspace path manager in the node's namespace
(``net.mptcp.pm_type=1``), mode ``auto`` the in-kernel one (0); the traffic app's caller sets it.
A join is awaited on the path manager's own event (``sub_established``), not polled. Commands
go through one netlink socket, made and used by one worker thread (pyroute2's synchronous
sockets belong to the thread that made them; opening one per command cost ~10 ms each).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from testbed.mptcp import pm

MODES = ("trash", "auto")
JOIN_TIMEOUT = 5.0


def ifindex_of(address: str) -> int | None:
    """The interface holding ``address`` in this namespace (a subflow is bound to it)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.get_addr(address=address)
        return found[0]["index"] if found else None


@dataclass
class MptcpDriver:
    """Binding updates on one connection whose local token is ``token`` (``local`` is the
    address it began on, id 0)."""

    token: int
    local: str
    peer: str
    peer_port: int
    mode: str = "trash"
    local_port: int | None = None  # the first subflow's
    manager: Callable[[], pm.PathManager] = pm.PathManager
    ifindex: Callable[[str], int | None] = ifindex_of
    log: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # local address -> address id
    ports: dict[str, int] = field(default_factory=dict)  # local address -> its subflow's local port
    _joined: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "mptcp-pm"))
    _pm: pm.PathManager | None = None

    def _call(self, fn: Callable[[pm.PathManager], Any]) -> Any:
        """``fn(path manager)`` in the worker thread, which owns the netlink socket."""

        def run() -> Any:
            if self._pm is None:
                self._pm = self.manager()
            return fn(self._pm)

        return self._worker.submit(run).result()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"driver mode {self.mode!r}: expected one of {', '.join(MODES)}")
        self.ids.setdefault(self.local, 0)
        if self.local_port:
            self.ports[self.local] = self.local_port

    # -- events (the caller's event reader feeds them) ----------------------------------------
    def on_event(self, e: pm.PmEvent) -> None:
        if e.token == self.token and e.kind == "sub_established" and e.local:
            with self._lock:
                if e.sport:
                    self.ports[e.local] = e.sport
                self._joined.setdefault(e.local, threading.Event()).set()

    def _joined_event(self, addr: str) -> threading.Event:
        with self._lock:
            return self._joined.setdefault(addr, threading.Event())

    # -- the actions ---------------------------------------------------------------------------
    def _next_id(self) -> int:
        return max(self.ids.values(), default=0) + 1

    def on_configured(self, addr: str, ifname: str = "") -> dict[str, Any]:
        t = time.time()
        entry: dict[str, Any] = {"op": "add", "addr": addr, "t": t}
        if addr in self.ids:
            entry["skipped"] = "already in the connection"
        else:
            addr_id = self._next_id()
            index = socket.if_nametoindex(ifname) if ifname else self.ifindex(addr)
            if self.mode == "auto":
                self._call(lambda m: m.endpoint_add(addr, addr_id=addr_id, ifindex=index,
                                                    flags=pm.FLAG_SIGNAL | pm.FLAG_SUBFLOW))
            else:
                joined = self._joined_event(addr)
                joined.clear()  # a return to an address joined before waits for the new join
                self._call(lambda m: m.subflow_create(self.token, addr, addr_id, self.peer, self.peer_port,
                                                      ifindex=index, backup=True))
                if not joined.wait(JOIN_TIMEOUT):
                    raise TimeoutError(f"subflow from {addr} not established in {JOIN_TIMEOUT:g} s")
                entry["joined"] = time.time()
                self._call(lambda m: m.announce(self.token, addr, addr_id))
            self.ids[addr] = addr_id
            entry["id"] = addr_id
        entry["dt"] = time.time() - t
        self.log.append(entry)
        return entry

    def make_primary(self, addr: str) -> dict[str, Any]:
        t = time.time()
        entry: dict[str, Any] = {"op": "primary", "addr": addr, "t": t}
        if self.mode == "auto":
            entry["skipped"] = "auto"
        else:
            others = [a for a in self.ids if a != addr]

            def switch(m: pm.PathManager) -> None:
                m.set_backup(self.token, addr, self.peer, self.peer_port, False, self.ports.get(addr))
                for other in others:
                    m.set_backup(self.token, other, self.peer, self.peer_port, True, self.ports.get(other))

            self._call(switch)
            entry["dt"] = time.time() - t
        self.log.append(entry)
        return entry

    def on_lost(self, addr: str) -> dict[str, Any]:
        t = time.time()
        entry: dict[str, Any] = {"op": "del", "addr": addr, "t": t}
        addr_id = self.ids.pop(addr, None)
        self.ports.pop(addr, None)
        if addr_id is None:
            entry["skipped"] = "not in the connection"
        elif self.mode == "auto":
            self._call(lambda m: m.endpoint_del(addr, addr_id))
            entry.update(id=addr_id, dt=time.time() - t)
        else:
            self._call(lambda m: m.remove(self.token, addr_id))
            entry.update(id=addr_id, dt=time.time() - t)
        self.log.append(entry)
        return entry

    def close(self) -> None:
        """Auto mode: remove the endpoints this driver added (they outlive the connection)."""

        def clean(m: pm.PathManager) -> None:
            for addr, addr_id in list(self.ids.items()):
                if addr_id and self.mode == "auto":
                    try:
                        m.endpoint_del(addr, addr_id)
                    except NetlinkError:  # gone already (the address was lost and deleted)
                        pass
            m.close()

        if self._pm is not None or self.mode == "auto":
            self._call(clean)
        self._worker.shutdown()

    def status(self) -> dict[str, Any]:
        return {"state": "connected", "token": self.token, "local": sorted(self.ids),
                "ids": dict(self.ids), "peer": [self.peer], "mode": self.mode}

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """One command-channel request → reply (never raises)."""
        try:
            op = cmd.get("op")
            if op == "add":
                res = self.on_configured(cmd["addr"], cmd.get("ifname", ""))
            elif op == "primary":
                res = self.make_primary(cmd["addr"])
            elif op == "del":
                res = self.on_lost(cmd["addr"])
            elif op == "status":
                res = self.status()
            else:
                return {"ok": False, "error": f"unknown op {op!r}"}
            return {"ok": True, **res}
        except (OSError, KeyError, ValueError, NetlinkError) as e:  # TimeoutError is an OSError
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def follow_events(sink: Callable[[pm.PmEvent], None], ready: threading.Event) -> None:
    """Feed the path manager's events to ``sink`` forever (run in a daemon thread: the
    netlink socket is made and read in that thread)."""
    events = pm.PmEvents()
    ready.set()
    while True:
        for e in events.next():
            sink(e)
