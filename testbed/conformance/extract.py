"""One streaming pass over the captures that keeps only what the rules need (the ``Facts``).

The pass is a demultiplexer: each frame is located down to its IP payload, copies of one packet
captured at several points count once (``testbed.conformance.dedup``), packets from addresses
of a network the MN had left are noted, and the packet goes to the handler of its protocol:
SCTP to ``sctp_track`` (DATA as TSN counters, control chunks decoded), TCP (but DNS over TCP)
to ``tcp_track`` (MPTCP subflows, signals and data-level coverage, plain TCP progress), UDP
that looks like QUIC to ``quic_track`` (decrypted with the run's TLS keys), and the rest to
``service_track`` (DNS, DHCP, DHCPv6, RS/RA; other kinds counted). Memory therefore stays flat
however many DATA packets a capture holds.

The commonest frame of a lab capture, Ethernet + IPv4 + SCTP with one chunk, is recognised
with one ``unpack_from`` (``decode.sctp.lone_chunk``'s test, written out in the loop) and goes
to ``SctpTracker.one`` already framed; every other frame takes ``link.ip_span`` and
``chunk_spans``, which frame the same bytes the same way.
"""

from __future__ import annotations

import heapq
import ipaddress
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.conformance.dedup import CopyFilter, Point, transport_key
from testbed.conformance.facts import CaptureSummary, Facts, LeftSource
from testbed.conformance.sctp_track import SctpTracker
from testbed.conformance.service_track import ServiceTracker
from testbed.conformance.tcp_track import TcpTracker
from testbed.conformance.where import Where
from testbed.decode.keylog import Keylog
from testbed.decode.link import PROTO_SCTP, PROTO_TCP, PROTO_UDP, FragmentSeen, NotIP, ip_span, ntop
from testbed.decode.packet import DNS_PORT
from testbed.decode.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
    PcapReader,
    PcapRecord,
    UnusableCapture,
)
from testbed.decode.reassembly import Defragmenter
from testbed.decode.sctp import LONE_FRAME, SCTP_UDP_PORT
from testbed.decode.tcp import tcp_header

if TYPE_CHECKING:
    from testbed.conformance.quic_track import QuicTracker

_PORTS = struct.Struct("!HH").unpack_from
# UDP ports of what ``service_track`` decodes (DNS, DHCP, DHCPv6, mDNS): never QUIC
_NOT_QUIC = frozenset({53, 67, 68, 546, 547, 5353})
_NO_CAPTURE_POINTS = frozenset({LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6})


def _merged(readers: dict[int, PcapReader]) -> Iterator[PcapRecord]:
    """Yield ``(time, pcap index, frame number, linktype, data, interface)`` in time order."""
    streams = [r.numbered(i) for i, r in readers.items()]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda rec: rec[0])


class _Extractor:
    """The demultiplexer: frames to their protocol's handler, with the copy filter and the
    left-network watch in front of every handler."""

    def __init__(self, names: list[str], window: float, left: Left | None = None,
                 keylog: Keylog | None = None) -> None:
        self.f = Facts(pcaps=names)
        # packed address -> [(from, until, lost)]: times when it belonged to a network left
        self.left = {ipaddress.ip_address(a).packed: list(spans) for a, spans in (left or {}).items()}
        self.f.left_watched = len(self.left)
        self.copies = CopyFilter(window)
        self.defrag = Defragmenter()
        self.sctp = SctpTracker(self.f)
        self.tcp = TcpTracker()
        self.f.tcp = self.tcp.f
        self.services = ServiceTracker(self.f)
        self.keylog = keylog
        self._quic: QuicTracker | None = None
        self._names: dict[tuple[bytes, int], tuple[str, int]] = {}

    @property
    def quic(self) -> QuicTracker:
        """The QUIC tracker, made (and the AEAD code loaded) at the first QUIC candidate: a
        run without QUIC pays nothing for it."""
        if self._quic is None:
            from testbed.conformance.quic_track import QuicTracker

            self._quic = QuicTracker(self.keylog, self.copies.window)
            self.f.quic = self._quic.f
        return self._quic

    def addr(self, raw: bytes, port: int) -> tuple[str, int]:
        """(text address, port), once per pair: QUIC paths are keyed by them."""
        out = self._names.get((raw, port))
        if out is None:
            out = self._names[(raw, port)] = (ntop(raw), port)
        return out

    def copy_of(self, first: Where, copy: Where) -> None:
        """A kept message seen again at another capture point: noted, so an exchange can be timed
        where its request was captured (see ``Facts.copies``)."""
        self.f.copies.setdefault((first.pcap, first.frame), []).append(copy)

    # -- the pass ------------------------------------------------------------------------------
    def run(self, readers: dict[int, PcapReader]) -> Facts:
        f = self.f
        dedup = len(readers) > 1
        is_copy = self.copies.is_copy
        kept: dict[object, Where] = {}  # dedup key → first copy, for control packets
        left = self.left
        sctp_one, sctp_packet = self.sctp.one, self.sctp.packet
        ts = 0.0
        npk = nsctp = 0
        lone_frame = LONE_FRAME
        for ts, pidx, fno, lt, data, iface in _merged(readers):
            npk += 1
            if npk == 1:
                f.first_time = ts
            # the common frame, read at once: decode.sctp.lone_chunk's test, written out here
            # because a call per packet costs this loop a tenth of its time (the unit tests hold
            # it to lone_chunk's verdict and fields on every frame)
            lone = False
            if lt == LINKTYPE_ETHERNET and len(data) >= 54:
                (etype, vihl, total, ipid, frag, proto, src, dst,
                 sport, dport, vtag, ctype, _fl, clen, word) = lone_frame(data, 0)
                end = 14 + total
                lone = not (etype != 0x0800 or vihl != 0x45 or proto != 132 or frag & 0x3FFF
                            or end > len(data) or clen < 4 or 46 + ((clen + 3) & ~3) != end)
            if lone:
                l4, cp = 34, 0
            else:
                try:
                    _ver, proto, src, dst, l4, end, ipid, cp = ip_span(lt, data)
                except FragmentSeen as fs:  # rare: the datagram goes on once whole
                    fr = fs.fragment
                    whole = self.defrag.add(fr, ts)
                    if whole is None:
                        continue
                    data, proto, src, dst, l4, end, ipid, cp = whole, fr.proto, fr.src, fr.dst, 0, \
                        len(whole), fr.ident, 0
                except NotIP as e:
                    f.note_unknown(str(e).split(" 0x")[0])
                    continue
                except (ValueError, struct.error, IndexError) as e:
                    reason = str(e) if isinstance(e, ValueError) else "truncated frame"
                    f.note_malformed(Where(f.pcaps[pidx], fno, ts), reason)
                    continue
                if proto == PROTO_UDP and end - l4 >= 20:
                    ports = _PORTS(data, l4)
                    if SCTP_UDP_PORT in ports:
                        proto, l4 = PROTO_SCTP, l4 + 8  # SCTP over UDP: judged as SCTP
                    elif (data[l4 + 8] & 0xC0 or (self._quic is not None and self._quic.cids)) \
                            and not _NOT_QUIC.intersection(ports):
                        # a long header or the fixed bit (RFC 9000 §17), or any datagram once a
                        # QUIC connection is known: a peer may grease the fixed bit (RFC 9287)
                        if left and src in left:
                            self.left_source(src, ts, pidx, fno)
                        dedup = dedup or bool(iface) or lt not in _NO_CAPTURE_POINTS
                        self.quic_datagram(Where(f.pcaps[pidx], fno, ts), (pidx, iface, cp), dedup,
                                           kept, src, dst, ports, data, l4, end)
                        continue
            if left and src in left:
                self.left_source(src, ts, pidx, fno)
            key = None
            if dedup or iface or lt not in _NO_CAPTURE_POINTS:
                dedup = True
                key = (src, dst, proto, ipid, transport_key(proto, data, l4, end))
                if is_copy(ts, key, (pidx, iface, cp)):
                    if kept and key in kept:
                        self.copy_of(kept[key], Where(f.pcaps[pidx], fno, ts))
                    continue
            if proto == 132:  # SCTP
                nsctp += 1
                if lone:
                    at = sctp_one(data, l4, end, (sport, dport, vtag), ctype, clen, word, src, dst,
                                  pidx, fno, ts)
                else:
                    at = sctp_packet(data, l4, end, src, dst, pidx, fno, ts)
            else:
                at = self.other_ip(proto, data, l4, end, src, dst, (pidx, iface, cp), fno, ts)
            if at is not None and key is not None:
                kept[key] = at
        f.packets = npk
        f.last_time = ts if npk else None
        f.duplicates_removed = self.copies.removed
        f.sctp_packets = nsctp
        f.data_chunks = sum(fl.chunks for fl in f.flows.values())
        return f

    def other_ip(self, proto: int, data: bytes, l4: int, end: int, src: bytes, dst: bytes,
                 point: Point, fno: int, ts: float) -> Where | None:
        """A packet that is not SCTP: TCP (but DNS) to the TCP tracker, the rest (DNS over TCP
        too) to the services; where it was captured if it is kept, else None."""
        where = Where(self.f.pcaps[point[0]], fno, ts)
        if proto == PROTO_TCP:
            try:
                hdr6 = tcp_header(data, l4, end)
            except ValueError as e:
                self.f.note_malformed(where, str(e))
                return None
            if DNS_PORT not in (hdr6[0], hdr6[1]):  # DNS over TCP goes with the other DNS
                return where if self.tcp.segment(where, src, dst, data, l4, end, hdr6) else None
        link = (where.pcap, point[1], point[2])
        return where if self.services.packet(proto, data, l4, end, src, dst, link, where) else None

    def quic_datagram(self, where: Where, point: Point, dedup: bool, kept: dict[object, Where],
                      src: bytes, dst: bytes, ports: tuple[int, int], data: bytes, l4: int,
                      end: int) -> None:
        """A QUIC candidate: its copies are recognised by the UDP payload alone (a NAT between
        two capture points rewrites the addresses and ports, and no two datagrams carry the same
        protected bytes: each packet number is used once, RFC 9000 §12.3), then it goes to the
        QUIC tracker. Off the hot loop: a run without QUIC never comes here."""
        quic = self.quic
        a, b = self.addr(src, ports[0]), self.addr(dst, ports[1])
        key = None
        if dedup:
            key = data[l4 + 8:end]
            if self.copies.is_copy(where.time, key, point):
                quic.copy_seen(key, a, b)
                if key in kept:
                    self.copy_of(kept[key], where)
                return
            quic.remember(where.time, key, a, b)
        seen = quic.datagram(where, a, b, data, l4 + 8, end)
        if seen is None:
            self.f.note_unknown("UDP")
        elif seen and key is not None:
            kept[key] = where

    def left_source(self, src: bytes, ts: float, pidx: int, fno: int) -> None:
        """A packet from an address the MN had left at ``ts``: the first per loss is kept."""
        spans = self.left[src]
        for k, (start, until, lost) in enumerate(spans):
            if start <= ts < until:
                self.f.left_sources.append(LeftSource(ntop(src), lost, Where(self.f.pcaps[pidx], fno, ts)))
                del spans[k]
                return

# address -> [(from, until, lost)]: wall times during which the address was of a network the
# MN had left (from its ``lost`` event, plus a grace, until it holds the address again)
Left = Mapping[str, Sequence[tuple[float, float, float]]]


def extract(paths: Iterable[Path], window: float = 0.5, *, skip_unusable: bool = False,
            left: Left | None = None, keylog: Keylog | None = None) -> Facts:
    """Read every capture once (merged by time) and return the facts the rules judge.

    An unreadable file raises ``UnusableCapture``; with ``skip_unusable`` it is listed in
    ``Facts.captures`` (frames ``None``) and the others are read. ``left``: addresses whose
    packets are looked for while the MN had left their network (``Facts.left_sources``).
    ``keylog``: TLS secrets for decrypting QUIC (``Facts.quic``); without it QUIC packets are
    counted, not decrypted.
    """
    paths = [Path(p) for p in paths]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    readers: dict[int, PcapReader] = {}
    unusable: dict[int, str] = {}
    try:
        for i, p in enumerate(paths):
            try:
                readers[i] = PcapReader(p)
            except UnusableCapture as e:
                if not skip_unusable:
                    raise
                unusable[i] = str(e)
        facts = _Extractor(names, window, left, keylog).run(readers)
        for i, (name, path) in enumerate(zip(names, paths, strict=True)):
            r = readers.get(i)
            if r is None:
                facts.captures.append(CaptureSummary(name, path, None, (unusable[i],)))
            else:
                facts.captures.append(CaptureSummary(name, path, r.frame_count, tuple(r.problems)))
        return facts
    finally:
        for r in readers.values():
            r.close()


__all__ = ["extract"]
