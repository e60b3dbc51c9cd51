"""One streaming pass over the captures that keeps only what the rules need (the ``Facts``).

Bulk traffic (SCTP DATA and SACK) is handled in the loop from ``decode.sctp.chunk_spans`` and
per-direction TSN counters; only the rare control chunks (ASCONF, AUTH, INIT...), DNS, DHCP and
Router Solicitations/Advertisements become decoded dataclasses. TCP (but DNS over TCP) goes to
``tcp_track``: MPTCP subflows, signals and data-level coverage, plain TCP progress; UDP that looks
like QUIC goes to ``quic_track``, which decrypts it with the run's TLS keys. Memory
therefore stays flat however many DATA packets a capture holds.

Directions are keyed by the SCTP header triple ``(sport, dport, verification tag)``: IP
addresses change during a handover, ports and tags do not, and the tag also separates the two
directions when both ends use the same port. Copies of one packet captured at several points
count once (``testbed.conformance.dedup``).
"""

from __future__ import annotations

import heapq
import ipaddress
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.conformance.dedup import CopyFilter, Point, transport_key
from testbed.conformance.facts import (
    AbortSeen,
    AckSeen,
    AsconfSeen,
    AuthVectors,
    CaptureSummary,
    DataSeen,
    Dhcp6Seen,
    DhcpSeen,
    DnsSeen,
    Facts,
    Flow,
    HeartbeatSent,
    InitSeen,
    Key,
    LeftSource,
    Link,
    NdSeen,
    PathConfirmed,
)
from testbed.conformance.tcp_track import TcpTracker
from testbed.conformance.where import Where
from testbed.decode import sctp_auth
from testbed.decode.dhcp import DhcpMessage
from testbed.decode.dhcp6 import Dhcp6Message
from testbed.decode.dns import HEADER_TRUNCATED, DNSMessage, decode_dns
from testbed.decode.keylog import Keylog
from testbed.decode.link import PROTO_SCTP, PROTO_TCP, PROTO_UDP, FragmentSeen, NotIP, ip_span, ntop
from testbed.decode.nd import RouterAdvert, RouterSolicit
from testbed.decode.packet import DNS_PORT, decode_transport
from testbed.decode.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
    PcapReader,
    PcapRecord,
    UnusableCapture,
)
from testbed.decode.reassembly import Defragmenter, DnsOverTcp
from testbed.decode.sctp import (
    ABORT,
    AUTH,
    DATA,
    HEARTBEAT,
    HEARTBEAT_ACK,
    INIT,
    INIT_ACK,
    LONE_FRAME,
    SACK,
    SCTP_UDP_PORT,
    AsconfAckChunk,
    AsconfChunk,
    AuthChunk,
    ErrorChunk,
    GenericChunk,
    InitChunk,
    MalformedChunk,
    chunk_spans,
    decode_chunk,
)
from testbed.decode.tcp import tcp_header

if TYPE_CHECKING:
    from testbed.conformance.quic_track import QuicTracker

_PORTS = struct.Struct("!HH").unpack_from
_MASK = 0xFFFFFFFF
_HALF = 1 << 31
_MAX_GAP = 1 << 20  # a forward TSN jump larger than this is reported, not enumerated
_MAX_EXAMPLES = 20
_MAX_HEARTBEATS = 4096  # unanswered HEARTBEATs remembered (oldest dropped)
_DATA_MIN = 16  # a DATA chunk shorter than this is malformed (decode_chunk says why)
# UDP ports of what ``upper`` decodes (DNS, DHCP, DHCPv6, mDNS): never QUIC
_NOT_QUIC = frozenset({53, 67, 68, 546, 547, 5353})
_NO_CAPTURE_POINTS = frozenset({LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6})
_LABELS: dict[type, str] = {
    DNSMessage: "DNS", DhcpMessage: "DHCP", Dhcp6Message: "DHCPv6", RouterSolicit: "ICMPv6",
    RouterAdvert: "ICMPv6",
}  # fmt: skip


def _merged(readers: dict[int, PcapReader]) -> Iterator[PcapRecord]:
    """Yield ``(time, pcap index, frame number, linktype, data, interface)`` in time order."""
    streams = [r.numbered(i) for i, r in readers.items()]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda rec: rec[0])


class _Extractor:
    """The pass itself; a class only to share state between the hot loop and the slow paths."""

    def __init__(self, names: list[str], window: float, left: Left | None = None,
                 keylog: Keylog | None = None) -> None:
        self.f = Facts(pcaps=names)
        # packed address -> [(from, until, lost)]: times when it belonged to a network left
        self.left = {ipaddress.ip_address(a).packed: list(spans) for a, spans in (left or {}).items()}
        self.f.left_watched = len(self.left)
        self.copies = CopyFilter(window)
        # ASCONF-ACKs and path confirmations waiting for the first new DATA in their direction
        self.watch: dict[Key, list[AckSeen | PathConfirmed]] = {}
        self.heartbeats: dict[bytes, tuple[Key, str]] = {}  # HEARTBEAT info → (its key, its dst)
        self.inits: dict[Key, int] = {}  # (sport, dport, own tag) of an INIT → its initial TSN
        self.init_vectors: dict[Key, bytes | None] = {}  # the same key → its AUTH key vector
        self.defrag = Defragmenter()
        self.tcp_dns = DnsOverTcp()
        self.tcp = TcpTracker()
        self.f.tcp = self.tcp.f
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

    # -- bookkeeping ---------------------------------------------------------------------------
    def bad(self, where: Where, reason: str) -> None:
        f = self.f
        f.malformed += 1
        if len(f.malformed_examples) < _MAX_EXAMPLES:
            f.malformed_examples.append(
                {"pcap": where.pcap, "frame": where.frame, "time": where.time, "reason": reason}
            )

    def copy_of(self, first: Where, copy: Where) -> None:
        """A kept message seen again at another capture point: noted, so an exchange can be timed
        where its request was captured (see ``Facts.copies``)."""
        self.f.copies.setdefault((first.pcap, first.frame), []).append(copy)

    def other(self, kind: str) -> None:
        self.f.unknown += 1
        self.f.unknown_kinds[kind] = self.f.unknown_kinds.get(kind, 0) + 1

    # -- the pass ------------------------------------------------------------------------------
    def run(self, readers: dict[int, PcapReader]) -> Facts:
        f = self.f
        dedup = len(readers) > 1
        is_copy = self.copies.is_copy
        kept: dict[object, Where] = {}  # dedup key → first copy, for control packets
        flows = f.flows
        watch = self.watch
        ts = 0.0
        npk = nsctp = ndata = 0
        lone_frame = LONE_FRAME
        for ts, pidx, fno, lt, data, iface in _merged(readers):
            npk += 1
            if npk == 1:
                f.first_time = ts
            # the common frame, read at once: decode.sctp.lone_chunk's test, written out here
            # because a call per packet costs this loop a tenth of its time
            lone = False
            if lt == LINKTYPE_ETHERNET and len(data) >= 54:
                (etype, vihl, total, ipid, frag, proto, src, dst,
                 sport, dport, vtag, ctype, _fl, clen, word) = lone_frame(data, 0)
                end = 14 + total
                lone = not (etype != 0x0800 or vihl != 0x45 or proto != 132 or frag & 0x3FFF
                            or end > len(data) or clen < 4 or 46 + ((clen + 3) & ~3) != end)
            if lone:
                hdr = (sport, dport, vtag)
                proto, l4, cp = PROTO_SCTP, 34, 0
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
                    self.other(str(e).split(" 0x")[0])
                    continue
                except (ValueError, struct.error, IndexError) as e:
                    reason = str(e) if isinstance(e, ValueError) else "truncated frame"
                    self.bad(Where(f.pcaps[pidx], fno, ts), reason)
                    continue
                if proto == PROTO_UDP and end - l4 >= 20:
                    ports = _PORTS(data, l4)
                    if SCTP_UDP_PORT in ports:
                        proto, l4 = PROTO_SCTP, l4 + 8  # SCTP over UDP: judged as SCTP
                    elif (data[l4 + 8] & 0xC0 or (self._quic is not None and self._quic.cids)) \
                            and not _NOT_QUIC.intersection(ports):
                        # a long header or the fixed bit (RFC 9000 §17), or any datagram once a
                        # QUIC connection is known: a peer may grease the fixed bit (RFC 9287)
                        if self.left and src in self.left:
                            self.left_source(src, ts, pidx, fno)
                        dedup = dedup or bool(iface) or lt not in _NO_CAPTURE_POINTS
                        self.quic_datagram(Where(f.pcaps[pidx], fno, ts), (pidx, iface, cp), dedup,
                                           kept, src, dst, ports, data, l4, end)
                        continue
            if self.left and src in self.left:
                self.left_source(src, ts, pidx, fno)
            key = None
            if dedup or iface or lt not in _NO_CAPTURE_POINTS:
                dedup = True
                key = (src, dst, proto, ipid, transport_key(proto, data, l4, end))
                if is_copy(ts, key, (pidx, iface, cp)):
                    if kept and key in kept:
                        self.copy_of(kept[key], Where(f.pcaps[pidx], fno, ts))
                    continue
            if proto == PROTO_TCP:
                where = Where(f.pcaps[pidx], fno, ts)
                try:
                    hdr6 = tcp_header(data, l4, end)
                except ValueError as e:
                    self.bad(where, str(e))
                    continue
                if DNS_PORT not in (hdr6[0], hdr6[1]):  # DNS over TCP goes with the other DNS
                    if self.tcp.segment(where, src, dst, data, l4, end, hdr6) and key:
                        kept[key] = where
                    continue
            if proto != PROTO_SCTP:
                where = Where(f.pcaps[pidx], fno, ts)
                if self.upper(proto, data, l4, end, src, dst, (where.pcap, iface, cp), where) and key:
                    kept[key] = where
                continue
            nsctp += 1
            if lone:
                spans, fault = ((ctype, 46, clen, word),), None
            else:
                hdr, spans, fault = chunk_spans(data, l4, end)  # type: ignore[assignment]
                if hdr is None:
                    self.bad(Where(f.pcaps[pidx], fno, ts), str(fault))
                    continue
            auth = None
            covered = None
            for ctype, p, clen, tsn in spans:
                if ctype == DATA and clen >= _DATA_MIN:  # the hot path
                    ndata += 1
                    fl = flows.get(hdr)
                    if fl is None:
                        flows[hdr] = Flow(tsn, tsn, src=ntop(src), dst=ntop(dst))
                        new = True
                    elif (tsn - fl.last) & _MASK == 1:
                        fl.high += 1
                        fl.last = tsn
                        fl.chunks += 1
                        new = True
                    else:
                        new = self.tsn_slow(fl, tsn, pidx, fno, ts)
                    if new and watch and hdr in watch:
                        seen_data = DataSeen(Where(f.pcaps[pidx], fno, ts), ntop(src), ntop(dst), tsn)
                        for waiting in watch.pop(hdr):
                            waiting.first_data_back = seen_data
                elif ctype != SACK:  # SACK needs nothing; the rest are rare
                    ch = decode_chunk(data, p, clen)
                    if isinstance(ch, MalformedChunk):
                        fault = fault or f"SCTP chunk type {ch.type}: {ch.reason}"
                        break
                    where = Where(f.pcaps[pidx], fno, ts)
                    if ctype == AUTH:
                        covered = sctp_auth.covered(data, p, clen, end)
                    auth = self.control(ch, hdr, src, dst, auth, where, covered)
                    if key is not None:
                        kept[key] = where
            if fault:
                self.bad(Where(f.pcaps[pidx], fno, ts), fault)
        f.packets = npk
        f.last_time = ts if npk else None
        f.duplicates_removed = self.copies.removed
        f.sctp_packets = nsctp
        f.data_chunks = ndata
        return f

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
            self.other("UDP")
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

    def tsn_slow(self, fl: Flow, tsn: int, pidx: int, fno: int, ts: float) -> bool:
        """Anything but the next TSN: a jump forward (gap) or an old TSN (fill or duplicate)."""
        d = (tsn - fl.last) & _MASK
        fl.chunks += 1
        if d == 0:
            fl.duplicates += 1
            return False
        if d < _HALF:  # forward: TSNs high+1 .. high+d-1 are missing for now
            where = Where(self.f.pcaps[pidx], fno, ts)
            if d - 1 > _MAX_GAP:
                fl.huge_gaps.append((fl.high + 1, fl.high + d - 1, where))
            else:
                fl.missing.update(range(fl.high + 1, fl.high + d))
                fl.gap_where[fl.high + 1] = where
            fl.high += d
            fl.last = tsn
            return True
        u = fl.high - ((fl.last - tsn) & _MASK)
        if u in fl.missing:
            fl.missing.discard(u)
            fl.filled += 1
        else:
            fl.duplicates += 1
        return False

    def control(
        self, ch: object, hdr: Key, src: bytes, dst: bytes, auth: AuthChunk | None, where: Where,
        covered: bytes | None = None,
    ) -> AuthChunk | None:
        """Keep a decoded non-DATA/SACK chunk; return the AUTH chunk covering what follows."""
        f = self.f
        f.origins.setdefault(ntop(src), set()).add(where.pcap)
        if isinstance(ch, AuthChunk):
            return ch
        if isinstance(ch, AsconfChunk):
            f.asconfs.append(AsconfSeen(where, hdr, ntop(src), ntop(dst), ch, auth,
                                        covered if auth else None))
        elif isinstance(ch, AsconfAckChunk):
            ack = AckSeen(where, hdr, ntop(src), ntop(dst), ch, auth,
                          auth_covered=covered if auth else None)
            f.acks.append(ack)
            self.watch.setdefault(hdr, []).append(ack)
        elif isinstance(ch, InitChunk):
            sport, dport, vtag = hdr
            ports = (min(sport, dport), max(sport, dport))
            f.init_addresses.setdefault(ports, set()).update(ch.addresses)
            f.init_addresses[ports].add(ntop(src))
            if ch.type == INIT:
                self.inits[(sport, dport, ch.initiate_tag)] = ch.initial_tsn
                f.inits.setdefault((sport, dport, ch.initiate_tag), InitSeen(where, ntop(src), ntop(dst)))
                self.init_vectors[(sport, dport, ch.initiate_tag)] = sctp_auth.key_vector(ch.params)
            elif ch.type == INIT_ACK:
                # INIT-ACK from B to A carries A's tag in its header and B's in its body.
                f.sender_itsn[(sport, dport, vtag)] = ch.initial_tsn
                a_itsn = self.inits.get((dport, sport, vtag))
                if a_itsn is not None:
                    f.sender_itsn[(dport, sport, ch.initiate_tag)] = a_itsn
                if (dport, sport, vtag) in self.init_vectors:  # both halves of the handshake
                    vec = AuthVectors(self.init_vectors[(dport, sport, vtag)],
                                      sctp_auth.key_vector(ch.params), where)
                    f.auth_vectors[(sport, dport, vtag)] = vec  # B → A carries A's tag
                    f.auth_vectors[(dport, sport, ch.initiate_tag)] = vec  # A → B, B's tag
                f.answered_inits.add((dport, sport, vtag))
        elif isinstance(ch, GenericChunk) and ch.type == HEARTBEAT:
            if len(self.heartbeats) >= _MAX_HEARTBEATS:
                del self.heartbeats[next(iter(self.heartbeats))]
            self.heartbeats[ch.value] = (hdr, ntop(dst))
            f.heartbeats.append(HeartbeatSent(where, hdr, ntop(dst)))
        elif isinstance(ch, GenericChunk) and ch.type == HEARTBEAT_ACK:
            sent = self.heartbeats.pop(ch.value, None)  # the ACK echoes the HEARTBEAT's info
            if sent is not None:
                conf = PathConfirmed(where, sent[0], sent[1])
                f.confirmations.append(conf)
                self.watch.setdefault(sent[0], []).append(conf)
        elif isinstance(ch, ErrorChunk) and ch.type == ABORT:
            sport, dport, vtag = hdr
            # an ABORT answering an INIT carries that INIT's initiate tag (RFC 9260 §8.4)
            init = (dport, sport, vtag)
            refused = init if init in f.inits and init not in f.answered_inits else None
            f.aborts.append(AbortSeen(where, hdr, ntop(src), ntop(dst), ch, refused))
        return auth

    def upper(
        self, proto: int, data: bytes, l4: int, end: int, src: bytes, dst: bytes, link: Link,
        where: Where,
    ) -> bool:  # fmt: skip
        """Everything but SCTP: DNS, DHCP and RS/RA are kept (True), the rest counted by kind."""
        if proto == PROTO_TCP and end - l4 >= 20:
            sport, dport, seq = struct.unpack_from("!HHI", data, l4)
            doff = (data[l4 + 12] >> 4) * 4
            if DNS_PORT in (sport, dport) and 20 <= doff <= end - l4:
                flow = (src, sport, dst, dport)
                payloads = self.tcp_dns.add(flow, seq, data[l4 + 13], data[l4 + doff:end], where.time)
                for payload in payloads:
                    self.dns(decode_dns(payload), src, sport, dst, dport, "tcp", where)
                return bool(payloads)
        pk = decode_transport(proto, data, l4, end)
        if pk.unknown is not None:
            # "UDP port 40000": one kind per transport, not per ephemeral port
            self.other(pk.unknown.partition(" port ")[0])
            return False
        msg = pk.dns or pk.dhcp or pk.dhcp6 or pk.nd
        if pk.malformed is not None:
            self.bad(where, pk.malformed if msg is None else f"{_LABELS[type(msg)]}: {pk.malformed}")
        f = self.f
        if pk.dns is not None:
            return self.dns(pk.dns, src, pk.sport, dst, pk.dport, "udp" if proto == PROTO_UDP else "tcp",
                            where, counted_bad=True)
        if pk.dhcp is not None:
            f.dhcp.append(DhcpSeen(where, ntop(src), ntop(dst), pk.sport, pk.dport, link, pk.dhcp))
        elif pk.dhcp6 is not None:
            f.dhcp6.append(Dhcp6Seen(where, ntop(src), ntop(dst), link, pk.dhcp6))
        elif pk.nd is not None:
            f.nd.append(NdSeen(where, ntop(src), ntop(dst), link, pk.nd))
        return msg is not None

    def dns(self, msg: DNSMessage, src: bytes, sport: int, dst: bytes, dport: int, transport: str,
            where: Where, counted_bad: bool = False) -> bool:
        """Keep one DNS message (True) unless it has no header to pair it by."""
        f = self.f
        f.dns_messages += 1
        if msg.malformed is not None and not counted_bad:
            self.bad(where, f"DNS: {msg.malformed}")
        if msg.malformed == HEADER_TRUNCATED:
            return False  # nothing to pair
        a, b = (ntop(src), sport), (ntop(dst), dport)
        client, server = (b, a) if msg.qr else (a, b)
        f.dns.append(DnsSeen(where, client, server, transport, msg))
        return True


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
