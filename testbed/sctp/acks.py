"""The ASCONF-ACKs one association receives, read off the wire in the endpoint itself.

Linux tells an SCTP application nothing when its own ASCONF is acknowledged: after an ADD_IP
the new address silently becomes usable as a source, a SET_PRIMARY has no effect visible on the
sender at all, and no notification (RFC 6458 §6.1) reports either. TraSH (Appendix A) orders
its steps on those acknowledgements — the location update follows the SET_PRIMARY's ACK — so
the binding driver watches for them: a raw ``IPPROTO_SCTP`` socket receives a copy of every
SCTP packet the host receives while the kernel's SCTP still processes the original. The kernel
sends one ASCONF at a time, in serial order, so the n-th distinct serial acknowledged answers
the n-th ASCONF. Over UDP (RFC 6951) the packets reach raw UDP sockets instead, and the SCTP
packet starts after the UDP header.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

from testbed.decode.sctp import ASCONF_ACK, chunk_spans

IPPROTO_SCTP = 132
IPPROTO_UDP = 17


class AsconfAcks:
    """Serials of the ASCONF-ACKs arriving for the association ``local_port`` ↔ ``peer_port``."""

    def __init__(self, local_port: int, peer_port: int, udp_port: int = 0) -> None:
        """``udp_port``: the association runs over UDP to and from this port (0: over IP)."""
        self.local_port, self.peer_port, self.udp_port = local_port, peer_port, udp_port
        self.serials: list[int] = []
        self._cond = threading.Condition()
        self._socks: list[socket.socket] = []
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._read, name="asconf-acks", daemon=True)

    def start(self) -> AsconfAcks:
        """Open the raw sockets (root, in the endpoint's namespace) and read them."""
        proto = IPPROTO_UDP if self.udp_port else IPPROTO_SCTP
        self._socks = [socket.socket(fam, socket.SOCK_RAW, proto)
                       for fam in (socket.AF_INET, socket.AF_INET6)]
        self._thread.start()
        return self

    @property
    def count(self) -> int:
        with self._cond:
            return len(self.serials)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Until ``count`` distinct serials have been acknowledged; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.serials) >= count, timeout)

    def feed(self, packet: bytes, offset: int) -> None:
        """One received SCTP packet whose common header starts at ``offset``."""
        header, spans, _fault = chunk_spans(packet, offset, len(packet))
        if header is None or header[:2] != (self.peer_port, self.local_port):
            return
        new = [serial for ctype, _p, _len, serial in spans if ctype == ASCONF_ACK]
        if not new:
            return
        with self._cond:
            self.serials += [s for s in new if s not in self.serials]
            self._cond.notify_all()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([*self._socks, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for s in ready:
                try:
                    data = s.recv(65535)
                except OSError:
                    continue
                # an IPv4 raw socket hands over the IP header, an IPv6 one the payload alone
                off = (data[0] & 0x0F) * 4 if s.family == socket.AF_INET else 0
                if self.udp_port:
                    if len(data) < off + 8 or self.udp_port not in struct.unpack_from("!HH", data, off):
                        continue
                    off += 8
                self.feed(data, off)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stop_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for s in (*self._socks, self._stop_r, self._stop_w):
            s.close()
