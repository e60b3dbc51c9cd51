"""TraSH binding-update driver: the binding-driver protocol's commands as kernel SCTP ASCONF
calls on one association.

It must run in the process that owns the association (socket options act on that socket), so
the traffic client serves it on its command socket (``testbed.mobility.driver.serve``)::

    add A      -> sctp_bindx ADD   (ASCONF ADD_IP)
    primary A  -> SET_PEER_PRIMARY (ASCONF SET_PRIMARY), and our own primary destination
                  follows to a peer address of A's family when it is of the other one
    delete A   -> sctp_bindx REM   (ASCONF DELETE_IP)
    status     -> addresses, primary, state

Mode ``trash`` (default) issues the calls and answers each once the peer has acknowledged the
ASCONF it caused (``acked`` true, seen on the wire by ``acks.AsconfAcks``), or after
``ack_timeout`` without one (``acked`` false): the binding process orders its next step on
that answer. Mode ``auto_asconf`` issues none and relies on the kernel's
net.sctp.default_auto_asconf=1 (wildcard-bound socket) instead.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.mobility.protocol import ActionOp, Done, State
from testbed.sctp import sockapi
from testbed.sctp.acks import AsconfAcks

MODES = ("trash", "auto_asconf")


@dataclass
class SctpDriver:
    """Binding updates on one association (``sock`` is connected, one-to-one style); a
    ``testbed.mobility.driver.BindingDriver``."""

    sock: socket.socket
    local_port: int
    peer_port: int
    mode: str = "trash"
    families: tuple[int, ...] = (4,)  # of the association's addresses (the binding adds these)
    acks: AsconfAcks | None = None  # the association's ASCONF-ACKs; None: answer at once
    ack_timeout: float = 4.0
    log: list[Done] = field(default_factory=list)  # what was done, with times
    issued: int = 0  # ASCONFs this driver caused (the kernel sends them one at a time, in order)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"driver mode {self.mode!r}: expected one of {', '.join(MODES)}")

    def _record(self, op: ActionOp, addr: str, fn: Callable[[], dict[str, Any]]) -> Done:
        """``fn`` (the socket calls; it returns any further fields of the answer), timed and,
        with ``acks``, answered once the peer acknowledged the ASCONF it caused."""
        t = time.time()
        if self.mode == "auto_asconf":
            done = Done(op, addr, t, skipped="auto_asconf")
        else:
            extra = fn()
            dt = time.time() - t
            self.issued += 1
            if self.acks is not None:
                extra["acked"] = self.acks.wait_for(self.issued, self.ack_timeout)
                extra["ack_s"] = round(time.time() - t, 6)
            done = Done(op, addr, t, dt, **extra)
        self.log.append(done)
        return done

    def add(self, address: str, ifname: str = "") -> Done:
        """A new address is usable: add it to the association (ASCONF ADD_IP). The kernel
        finds its interface itself: ``ifname`` is not needed."""

        def do() -> dict[str, Any]:
            sockapi.bindx(self.sock, [address], self.local_port)
            return {}

        return self._record("add", address, do)

    def primary(self, address: str) -> Done:
        """Ask the peer to send to ``address`` (ASCONF SET_PRIMARY). When our own primary
        destination is of the other family than ``address``, one of the peer's addresses of
        ``address``'s family becomes it: after a move to a network of one family only (IPv4
        to IPv6) the old destination cannot be reached from the new address."""

        def do() -> dict[str, Any]:
            sockapi.set_peer_primary(self.sock, address, self.local_port)
            peer = self._peer_to_follow(address)
            if peer:
                sockapi.set_primary(self.sock, peer, self.peer_port)
                return {"peer": peer}
            return {}

        return self._record("primary", address, do)

    def _peer_to_follow(self, addr: str) -> str | None:
        fam = ipaddress.ip_address(addr).version
        current = sockapi.normalise(sockapi.status(self.sock).primary[0])
        if ipaddress.ip_address(current).version == fam:
            return None
        peers = [sockapi.normalise(a) for a, _ in sockapi.peer_addrs(self.sock)]
        return next((p for p in peers if ipaddress.ip_address(p).version == fam), None)

    def delete(self, address: str) -> Done:
        """An address is gone: delete it from the association (ASCONF DELETE_IP)."""

        def do() -> dict[str, Any]:
            sockapi.bindx(self.sock, [address], self.local_port, add=False)
            return {}

        return self._record("delete", address, do)

    def status(self) -> State:
        st = sockapi.status(self.sock)
        return State(
            state=st.state,
            local=tuple(sorted(sockapi.normalise(a) for a, _ in sockapi.local_addrs(self.sock))),
            peer=tuple(sorted(sockapi.normalise(a) for a, _ in sockapi.peer_addrs(self.sock))),
            primary=sockapi.normalise(st.primary[0]),
            families=tuple(self.families),
            mode=self.mode,
            detail={"srtt_ms": st.primary_srtt_ms},
        )
