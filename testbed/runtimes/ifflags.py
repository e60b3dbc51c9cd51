"""An interface's administrative state by ioctl (SIOCGIFFLAGS / SIOCSIFFLAGS), in the caller's
network namespace. Standard library only, and no ``ip`` process: used on a kernel node's carrier
path, by the guest agent (a process start costs tens of ms under UML) and by the UML relay for
the host-side end of the node's links."""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1
_IFREQ = "16sH14x"  # struct ifreq: name, then ifr_flags in the union


def _flags(s: socket.socket, name: bytes) -> int:
    return struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack(_IFREQ, name, 0))[:18])[1]


def set_admin(ifname: str, up: bool, cycle: bool = False) -> bool:
    """Set ``ifname`` up or down; returns whether it was up. ``cycle`` (with ``up``): when it is
    already up, take it down first, so its driver opens afresh and the stack sees a new
    link-up (addrconf restarts DAD and Router Solicitation)."""
    name = ifname.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = _flags(s, name)
        was_up = bool(flags & IFF_UP)

        def put(f: int) -> None:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(_IFREQ, name, f))

        if up:
            if was_up and cycle:
                put(flags & ~IFF_UP)
            if not was_up or cycle:
                put(flags | IFF_UP)
        elif was_up:
            put(flags & ~IFF_UP)
    return was_up


def is_up(ifname: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return bool(_flags(s, ifname.encode()) & IFF_UP)
