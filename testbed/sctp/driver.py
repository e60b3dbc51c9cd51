"""TraSH binding-update driver: turns mobility events into kernel SCTP ASCONF calls.

It must run in the process that owns the association (socket options act on that socket), so
the traffic client embeds it behind a small command channel: a unix stream socket inside the
guest carrying one JSON object per line, answered with one JSON line::

    {"op": "add", "addr": "198.51.100.10"}      -> sctp_bindx ADD   (ASCONF ADD_IP)
    {"op": "primary", "addr": "198.51.100.10"}  -> SET_PEER_PRIMARY (ASCONF SET_PRIMARY)
    {"op": "del", "addr": "192.0.2.10"}         -> sctp_bindx REM   (ASCONF DELETE_IP)
    {"op": "status"}                            -> addresses, primary, state, counters
    <- {"ok": true, "t": <guest unix time of the call>, ...} | {"ok": false, "error": "..."}

Mode ``trash`` (default) issues the calls; mode ``auto_asconf`` issues none and relies on the
kernel's net.sctp.default_auto_asconf=1 (wildcard-bound socket) instead.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.sctp import sockapi

MODES = ("trash", "auto_asconf")


@dataclass
class BindingDriver:
    """Binding updates on one association (``sock`` is connected, one-to-one style)."""

    sock: socket.socket
    local_port: int
    peer_port: int
    mode: str = "trash"
    log: list[dict[str, Any]] = field(default_factory=list)  # what was done, with times

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"driver mode {self.mode!r}: expected one of {', '.join(MODES)}")

    def _record(self, op: str, addr: str, fn: Callable[[], None]) -> dict[str, Any]:
        t = time.time()
        if self.mode == "auto_asconf":
            entry = {"op": op, "addr": addr, "t": t, "skipped": "auto_asconf"}
        else:
            fn()
            entry = {"op": op, "addr": addr, "t": t, "dt": time.time() - t}
        self.log.append(entry)
        return entry

    def on_configured(self, addr: str) -> dict[str, Any]:
        """A new address is usable: add it to the association (ASCONF ADD_IP)."""
        return self._record("add", addr, lambda: sockapi.bindx(self.sock, [addr], self.local_port))

    def make_primary(self, addr: str, peer_addr: str | None = None) -> dict[str, Any]:
        """Ask the peer to send to ``addr`` (ASCONF SET_PRIMARY); optionally pick our own
        primary destination ``peer_addr`` too (only useful when the peer is multi-homed)."""

        def do() -> None:
            sockapi.set_peer_primary(self.sock, addr, self.local_port)
            if peer_addr:
                sockapi.set_primary(self.sock, peer_addr, self.peer_port)

        return self._record("primary", addr, do)

    def on_lost(self, addr: str) -> dict[str, Any]:
        """An address is gone: delete it from the association (ASCONF DELETE_IP)."""
        return self._record("del", addr, lambda: sockapi.bindx(self.sock, [addr], self.local_port, add=False))

    def status(self) -> dict[str, Any]:
        st = sockapi.status(self.sock)
        return {
            "state": st.state,
            "primary": sockapi.normalise(st.primary[0]),
            "srtt_ms": st.primary_srtt_ms,
            "local": sorted(sockapi.normalise(a) for a, _ in sockapi.local_addrs(self.sock)),
            "peer": sorted(sockapi.normalise(a) for a, _ in sockapi.peer_addrs(self.sock)),
            "mode": self.mode,
        }

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """One command-channel request → reply (never raises)."""
        try:
            op = cmd.get("op")
            if op == "add":
                res = self.on_configured(cmd["addr"])
            elif op == "primary":
                res = self.make_primary(cmd["addr"], cmd.get("peer"))
            elif op == "del":
                res = self.on_lost(cmd["addr"])
            elif op == "status":
                res = self.status()
            else:
                return {"ok": False, "error": f"unknown op {op!r}"}
            return {"ok": True, **res}
        except (OSError, KeyError, ValueError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
