"""MPTCP binding-update driver: the binding-driver protocol's commands as path-manager commands
on one connection (the traffic client's), served on its command socket as the SCTP one is::

    add A (on I)  trash: SUBFLOW_CREATE from A as a backup (MP_JOIN), then, once the subflow is
                  established, ANNOUNCE A (ADD_ADDR)
                  auto:  an endpoint A (signal, subflow): the kernel joins and announces by
                  itself
    primary A     trash: SET_FLAGS: A's subflow active, every other backup (MP_PRIO each);
                  auto: nothing (the in-kernel manager has no notion of a preferred network)
    delete A      trash: REMOVE A's id (REMOVE_ADDR; the kernel closes its subflows); auto: the
                  endpoint goes, which does the same
    status        the token, local addresses and their ids, the mode

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

from testbed.mobility.protocol import Done, State
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
    log: list[Done] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # local address -> address id
    ports: dict[str, int] = field(default_factory=dict)  # local address -> its subflow's local port
    _joined: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "mptcp-pm"))
    _pm: pm.PathManager | None = None

    def _call(self, fn: Callable[[pm.PathManager], Any]) -> Any:
        """``fn(path manager)`` in the worker thread, which owns the netlink socket. The
        kernel's refusal is an OSError with its errno, as the driver interface has it."""

        def run() -> Any:
            if self._pm is None:
                self._pm = self.manager()
            try:
                return fn(self._pm)
            except NetlinkError as e:
                raise OSError(e.code, f"netlink: {e}") from e

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

    def add(self, address: str, ifname: str = "") -> Done:
        t = time.time()
        if address in self.ids:
            return self._log(Done("add", address, t, skipped="already in the connection"))
        addr_id = self._next_id()
        index = socket.if_nametoindex(ifname) if ifname else self.ifindex(address)
        detail: dict[str, Any] = {"id": addr_id}
        if self.mode == "auto":
            self._call(lambda m: m.endpoint_add(address, addr_id=addr_id, ifindex=index,
                                                flags=pm.FLAG_SIGNAL | pm.FLAG_SUBFLOW))
        else:
            joined = self._joined_event(address)
            joined.clear()  # a return to an address joined before waits for the new join
            self._call(lambda m: m.subflow_create(self.token, address, addr_id, self.peer, self.peer_port,
                                                  ifindex=index, backup=True))
            if not joined.wait(JOIN_TIMEOUT):
                raise TimeoutError(f"subflow from {address} not established in {JOIN_TIMEOUT:g} s")
            detail["joined"] = time.time()
            self._call(lambda m: m.announce(self.token, address, addr_id))
        self.ids[address] = addr_id
        return self._log(Done("add", address, t, time.time() - t, detail=detail))

    def primary(self, address: str) -> Done:
        t = time.time()
        if self.mode == "auto":
            return self._log(Done("primary", address, t, skipped="auto"))
        others = [a for a in self.ids if a != address]

        def switch(m: pm.PathManager) -> None:
            m.set_backup(self.token, address, self.peer, self.peer_port, False, self.ports.get(address))
            for other in others:
                m.set_backup(self.token, other, self.peer, self.peer_port, True, self.ports.get(other))

        self._call(switch)
        return self._log(Done("primary", address, t, time.time() - t))

    def delete(self, address: str) -> Done:
        t = time.time()
        addr_id = self.ids.pop(address, None)
        self.ports.pop(address, None)
        if addr_id is None:
            return self._log(Done("delete", address, t, skipped="not in the connection"))
        if self.mode == "auto":
            self._call(lambda m: m.endpoint_del(address, addr_id))
        else:
            self._call(lambda m: m.remove(self.token, addr_id))
        return self._log(Done("delete", address, t, time.time() - t, detail={"id": addr_id}))

    def _log(self, done: Done) -> Done:
        self.log.append(done)
        return done

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

    def status(self) -> State:
        return State("connected", local=tuple(sorted(self.ids)), peer=(self.peer,), mode=self.mode,
                     detail={"token": self.token, "ids": dict(self.ids)})


def follow_events(sink: Callable[[pm.PmEvent], None], ready: threading.Event) -> None:
    """Feed the path manager's events to ``sink`` forever (run in a daemon thread: the
    netlink socket is made and read in that thread)."""
    events = pm.PmEvents()
    ready.set()
    while True:
        for e in events.next():
            sink(e)
