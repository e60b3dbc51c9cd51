"""One streaming pass over the captures that keeps only what the rules need (the ``Facts``).

Bulk traffic (SCTP DATA and SACK) is handled inline with ``struct.unpack_from`` and per-direction
TSN counters; only the rare control chunks (ASCONF, AUTH, INIT...) and DNS messages become
decoded dataclasses. Memory therefore stays flat however many DATA packets a capture holds.

Directions are keyed by the SCTP header triple ``(sport, dport, verification tag)``: IP
addresses change during a handover, ports and tags do not, and the tag also separates the two
directions when both ends use the same port.

De-duplication: when one packet was captured at several points (one pcap per link, or
``tcpdump -i any`` seeing it on two interfaces), only its first copy counts. Copies are
recognised by identical IP addresses, protocol, IPv4 id and transport bytes (TTL and IP
checksum change hop by hop, the rest does not) seen at a *different* capture point within
``window`` seconds. The same bytes seen again at the *same* capture point are a genuine
retransmission and are kept, so retransmitted DATA still counts as a duplicate TSN.
"""

from __future__ import annotations

import heapq
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testbed.decode.dns import DNSMessage, decode_dns
from testbed.decode.link import PROTO_SCTP, PROTO_TCP, PROTO_UDP, NotIP, locate_ip, ntop, parse_ip
from testbed.decode.packet import DNS_PORT, dns_payload
from testbed.decode.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
    PcapReader,
    PcapRecord,
)
from testbed.decode.sctp import (
    ASCONF,
    ASCONF_ACK,
    AUTH,
    INIT,
    INIT_ACK,
    AsconfAckChunk,
    AsconfChunk,
    AuthChunk,
    InitChunk,
    MalformedChunk,
    decode_chunk,
)

_MASK = 0xFFFFFFFF
_HALF = 1 << 31
_MAX_GAP = 1 << 20  # a forward TSN jump larger than this is reported, not enumerated
_MAX_EXAMPLES = 20
_NO_CAPTURE_POINTS = frozenset({LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6})

_IP4 = struct.Struct("!HHHxB2x4s4s")  # from offset 16: total, id, frag, proto, src, dst
_SCTP_HDR = struct.Struct("!HHI")
_CHUNK8 = struct.Struct("!BBHI")  # chunk header + first word (the TSN of DATA)
_CHUNK4 = struct.Struct("!BBH")
Key = tuple[int, int, int]  # (sport, dport, vtag) of an SCTP header


@dataclass(frozen=True, slots=True)
class Where:
    """Evidence location: file name, 1-based frame number, capture time (epoch seconds)."""

    pcap: str
    frame: int
    time: float


@dataclass(frozen=True, slots=True)
class DataSeen:
    where: Where
    src: str
    dst: str
    tsn: int


@dataclass(slots=True)
class AsconfSeen:
    where: Where
    key: Key
    src: str
    dst: str
    chunk: AsconfChunk
    auth: AuthChunk | None


@dataclass(slots=True)
class AckSeen:
    where: Where
    key: Key
    src: str
    dst: str
    chunk: AsconfAckChunk
    auth: AuthChunk | None
    # first new DATA after this ACK in the ACK's own direction (peer → ASCONF sender)
    first_data_back: DataSeen | None = None


@dataclass(frozen=True, slots=True)
class DnsSeen:
    where: Where
    client: tuple[str, int]
    server: tuple[str, int]
    transport: str
    msg: DNSMessage


@dataclass(slots=True)
class Flow:
    """DATA TSN bookkeeping for one direction. ``high`` is unwrapped (grows past 2**32)."""

    high: int
    last: int  # high & 0xFFFFFFFF, kept to save a mask on the hot path
    chunks: int = 1
    duplicates: int = 0
    filled: int = 0
    missing: set[int] = field(default_factory=set)
    gap_where: dict[int, Where] = field(default_factory=dict)  # first missing TSN → where seen
    huge_gaps: list[tuple[int, int, Where]] = field(default_factory=list)
    src: str = ""
    dst: str = ""


@dataclass(slots=True)
class Facts:
    """Everything the rules and the timeline look at, in capture order."""

    pcaps: list[str]
    asconfs: list[AsconfSeen] = field(default_factory=list)
    acks: list[AckSeen] = field(default_factory=list)
    dns: list[DnsSeen] = field(default_factory=list)
    flows: dict[Key, Flow] = field(default_factory=dict)
    sender_itsn: dict[Key, int] = field(default_factory=dict)  # ASCONF sender key → initial TSN
    init_addresses: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    packets: int = 0
    duplicates_removed: int = 0
    sctp_packets: int = 0
    data_chunks: int = 0
    dns_messages: int = 0
    unknown: int = 0
    malformed: int = 0
    malformed_examples: list[dict[str, object]] = field(default_factory=list)
    unknown_kinds: dict[str, int] = field(default_factory=dict)
    capture_problems: list[str] = field(default_factory=list)
    first_time: float | None = None
    last_time: float | None = None

    def stats(self) -> dict[str, object]:
        return {
            "pcaps": list(self.pcaps),
            "packets": self.packets,
            "duplicates_removed": self.duplicates_removed,
            "sctp_packets": self.sctp_packets,
            "data_chunks": self.data_chunks,
            "asconf": len(self.asconfs),
            "asconf_ack": len(self.acks),
            "dns_messages": self.dns_messages,
            "unknown": self.unknown,
            "unknown_kinds": dict(sorted(self.unknown_kinds.items(), key=lambda kv: -kv[1])[:10]),
            "malformed": self.malformed,
            "malformed_examples": list(self.malformed_examples),
            "capture_problems": list(self.capture_problems),
            "first_time": self.first_time,
            "last_time": self.last_time,
        }


def _merged(readers: list[PcapReader]) -> Iterator[PcapRecord]:
    """Yield ``(time, pcap index, frame number, linktype, data, interface)`` in time order."""
    streams = [r.numbered(i) for i, r in enumerate(readers)]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda rec: rec[0])


class _Extractor:
    """The pass itself; a class only to share state between the hot loop and the slow paths."""

    def __init__(self, names: list[str], window: float) -> None:
        self.f = Facts(pcaps=names)
        self.window = window
        self.watch: dict[Key, list[AckSeen]] = {}  # ACKs waiting for their first DATA
        self.inits: dict[Key, int] = {}  # (sport, dport, own tag) of an INIT → its initial TSN

    # -- bookkeeping ---------------------------------------------------------------------------
    def bad(self, pidx: int, frame: int, ts: float, reason: str) -> None:
        f = self.f
        f.malformed += 1
        if len(f.malformed_examples) < _MAX_EXAMPLES:
            f.malformed_examples.append({"pcap": f.pcaps[pidx], "frame": frame, "time": ts, "reason": reason})

    def other(self, kind: str) -> None:
        self.f.unknown += 1
        self.f.unknown_kinds[kind] = self.f.unknown_kinds.get(kind, 0) + 1

    # -- the pass ------------------------------------------------------------------------------
    def run(self, readers: list[PcapReader]) -> Facts:
        f = self.f
        window = self.window
        dedup = len(readers) > 1
        seen: dict[tuple[object, ...], tuple[float, set[tuple[int, int, int]]]] = {}
        order: deque[tuple[float, tuple[object, ...]]] = deque()
        flows = f.flows
        watch = self.watch
        ip4 = _IP4.unpack_from
        sctp_hdr = _SCTP_HDR.unpack_from
        chunk8 = _CHUNK8.unpack_from
        chunk4 = _CHUNK4.unpack_from
        ts = 0.0
        npk = 0
        ndup = 0
        nsctp = 0
        ndata = 0
        for ts, pidx, fno, lt, data, iface in _merged(readers):
            npk += 1
            if npk == 1:
                f.first_time = ts
            # Inline fast path: Ethernet + IPv4 without options, unfragmented, complete.
            fast = lt == 1 and len(data) >= 34 and data[12] == 8 and data[13] == 0
            if fast and data[14] == 0x45:
                total, ipid, frag, proto, src, dst = ip4(data, 16)
                end = 14 + total
                l4 = 34
                cp = 0
                fast = not (frag & 0x3FFF or end > len(data) or total < 20)
            else:
                fast = False
            if not fast:
                try:
                    off, cp = locate_ip(lt, data)
                    _ver, proto, src, dst, l4, end, ipid = parse_ip(data, off)
                except NotIP as e:
                    self.other(str(e).split(" 0x")[0])
                    continue
                except (ValueError, struct.error, IndexError) as e:
                    reason = str(e) if isinstance(e, ValueError) else "truncated frame"
                    self.bad(pidx, fno, ts, reason)
                    continue
            if dedup or iface or lt not in _NO_CAPTURE_POINTS:
                dedup = True
                k = (src, dst, proto, ipid, data[l4:end])
                point = (pidx, iface, cp)
                ent = seen.get(k)
                if ent is not None and ts - ent[0] <= window and point not in ent[1]:
                    ent[1].add(point)
                    ndup += 1
                    continue
                seen[k] = (ts, {point})
                order.append((ts, k))
                while order and ts - order[0][0] > window:
                    old_ts, old_k = order.popleft()
                    ent = seen.get(old_k)
                    if ent is not None and ent[0] == old_ts:
                        del seen[old_k]
            if proto == PROTO_SCTP:
                nsctp += 1
                if end - l4 < 12:
                    self.bad(pidx, fno, ts, "truncated SCTP common header")
                    continue
                hdr = sctp_hdr(data, l4)
                p = l4 + 12
                auth = None
                while p + 4 <= end:
                    if p + 8 <= end:  # chunk header and, for DATA, its TSN in one call
                        ctype, _fl, clen, tsn = chunk8(data, p)
                    else:
                        ctype, _fl, clen = chunk4(data, p)
                    if clen < 4 or p + clen > end:
                        self.bad(pidx, fno, ts, f"SCTP chunk type {ctype} length {clen} overruns")
                        break
                    if ctype == 0:  # DATA: the hot path
                        if clen < 16:
                            self.bad(pidx, fno, ts, "DATA chunk shorter than 16 bytes")
                            break
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
                            for ack in watch.pop(hdr):
                                ack.first_data_back = seen_data
                    elif ctype != 3:  # SACK needs nothing; the rest are rare
                        auth = self.control(data, p, clen, hdr, src, dst, auth, pidx, fno, ts)
                    p += (clen + 3) & ~3
            elif proto in (PROTO_UDP, PROTO_TCP):
                self.dns(proto, data, l4, end, src, dst, pidx, fno, ts)
            else:
                self.other(f"IP protocol {proto}")
        f.packets = npk
        f.last_time = ts if npk else None
        f.duplicates_removed = ndup
        f.sctp_packets = nsctp
        f.data_chunks = ndata
        return f

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
        self,
        data: bytes,
        p: int,
        clen: int,
        hdr: Key,
        src: bytes,
        dst: bytes,
        auth: AuthChunk | None,
        pidx: int,
        fno: int,
        ts: float,
    ) -> AuthChunk | None:
        """Decode a non-DATA/SACK chunk; return the AUTH chunk covering what follows, if any."""
        ch = decode_chunk(data, p, clen)
        f = self.f
        if isinstance(ch, MalformedChunk):
            self.bad(pidx, fno, ts, f"SCTP chunk type {ch.type}: {ch.reason}")
            return auth
        ctype = ch.type
        if ctype == AUTH:
            assert isinstance(ch, AuthChunk)
            return ch
        if ctype == ASCONF:
            assert isinstance(ch, AsconfChunk)
            where = Where(f.pcaps[pidx], fno, ts)
            f.asconfs.append(AsconfSeen(where, hdr, ntop(src), ntop(dst), ch, auth))
        elif ctype == ASCONF_ACK:
            assert isinstance(ch, AsconfAckChunk)
            where = Where(f.pcaps[pidx], fno, ts)
            ack = AckSeen(where, hdr, ntop(src), ntop(dst), ch, auth)
            f.acks.append(ack)
            self.watch.setdefault(hdr, []).append(ack)
        elif ctype in (INIT, INIT_ACK):
            assert isinstance(ch, InitChunk)
            sport, dport, vtag = hdr
            ports = (min(sport, dport), max(sport, dport))
            f.init_addresses.setdefault(ports, set()).update(ch.addresses)
            f.init_addresses[ports].add(ntop(src))
            if ctype == INIT:
                self.inits[(sport, dport, ch.initiate_tag)] = ch.initial_tsn
            else:
                # INIT-ACK from B to A carries A's tag in its header and B's in its body.
                f.sender_itsn[(sport, dport, vtag)] = ch.initial_tsn
                a_itsn = self.inits.get((dport, sport, vtag))
                if a_itsn is not None:
                    f.sender_itsn[(dport, sport, ch.initiate_tag)] = a_itsn
        return auth

    def dns(
        self,
        proto: int,
        data: bytes,
        l4: int,
        end: int,
        src: bytes,
        dst: bytes,
        pidx: int,
        fno: int,
        ts: float,
    ) -> None:
        sport, dport, payload, bad, unknown = dns_payload(proto, data, l4, end)
        if bad is not None:
            self.bad(pidx, fno, ts, bad)
            return
        if DNS_PORT not in (sport, dport):
            self.other("UDP" if proto == PROTO_UDP else "TCP")
            return
        if payload is None:
            self.other(unknown or "DNS without payload")
            return
        msg = decode_dns(payload)
        self.f.dns_messages += 1
        if msg.malformed:
            self.bad(pidx, fno, ts, f"DNS: {msg.malformed}")
            if len(payload) < 12:
                return
        a, b = (ntop(src), sport), (ntop(dst), dport)
        client, server = (b, a) if msg.qr else (a, b)
        where = Where(self.f.pcaps[pidx], fno, ts)
        transport = "udp" if proto == PROTO_UDP else "tcp"
        self.f.dns.append(DnsSeen(where, client, server, transport, msg))


def extract(paths: Iterable[Path], window: float = 0.5) -> Facts:
    """Read every capture once (merged by time) and return the facts the rules judge."""
    paths = list(paths)
    readers = [PcapReader(p) for p in paths]
    try:
        names = [p.name for p in paths]
        if len(set(names)) != len(names):
            names = [str(p) for p in paths]
        ex = _Extractor(names, window)
        facts = ex.run(readers)
        for name, r in zip(names, readers, strict=True):
            facts.capture_problems.extend(f"{name}: {msg}" for msg in r.problems)
        return facts
    finally:
        for r in readers:
            r.close()


__all__ = ["AckSeen", "AsconfSeen", "DataSeen", "DnsSeen", "Facts", "Flow", "Where", "extract"]
