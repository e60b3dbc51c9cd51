"""The Appendix-A ladder of a run: the handover's signalling messages in time order, once each.

SCTP and DNS come from the checker's own pass (``testbed.conformance.extract``), so the ladder's
pcap/frame references are the same first copies the verdict's evidence cites and copies of one
packet seen on several links are already merged. Router Advertisements and DHCP, which the
checker ignores, come from a second light pass here that decodes only ICMPv6 and UDP 67/68 and
merges copies the same way (same addresses, IP id and transport bytes at another capture point
within ``window`` seconds).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.conformance.exchange import asconf_exchanges
from testbed.conformance.extract import extract
from testbed.conformance.facts import AckSeen, AsconfSeen, DnsSeen, Facts
from testbed.decode.dhcp import BOOTREPLY, CLIENT_PORT, SERVER_PORT, DhcpMessage, decode_dhcp
from testbed.decode.dns import CLASS_ANY, CLASS_IN, CLASS_NONE, OPCODE_UPDATE, DNSMessage
from testbed.decode.link import PROTO_UDP, NotIP, locate_ip, ntop, parse_ip
from testbed.decode.nd import ICMPV6, ND_ROUTER_ADVERT, RouterAdvert, decode_ra
from testbed.decode.pcap import PcapReader, UnusableCapture
from testbed.decode.sctp import ERROR_CAUSE_IND, SET_PRIMARY
from testbed.report.roles import DHCP, MN, NEW_AR, OTHER, RoleMap

# Message kinds (the renderer colours by kind; ``error`` overrides the colour).
KIND_RA, KIND_DHCP, KIND_ASCONF, KIND_DNS, KIND_DATA = "ra", "dhcp", "asconf", "dns", "data"
KINDS = (KIND_RA, KIND_DHCP, KIND_ASCONF, KIND_DNS, KIND_DATA)


@dataclass(frozen=True, slots=True)
class Message:
    """One arrow of the ladder. ``pcap``/``frame`` locate the first captured copy."""

    time: float  # capture time, seconds since the epoch
    src_role: str
    dst_role: str
    label: str  # short text drawn on the arrow
    detail: str  # the rest (tooltip and table)
    pcap: str
    frame: int
    kind: str = KIND_ASCONF
    reply: bool = False  # answers (ACKs, OFFER/ACK, DNS responses) are drawn dashed
    error: bool = False  # an error answer or a step going the wrong way: drawn red
    src: str = ""
    dst: str = ""


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    """One capture file of the run, for the report's list of links."""

    name: str
    path: Path
    size: int
    frames: int | None  # None when the file could not be read
    problems: tuple[str, ...] = ()


@dataclass(slots=True)
class Ladder:
    messages: list[Message]
    columns: list[str]  # the roles in the caller's order, plus OTHER when a message needs it
    captures: list[CaptureInfo] = field(default_factory=list)
    truncated: int = 0  # messages left out beyond ``max_messages``


@dataclass(frozen=True, slots=True)
class _Seen:
    """An RA or DHCP message found by the light pass (first copy only)."""

    time: float
    pcap: str
    frame: int
    src: str
    dst: str
    sport: int
    dport: int
    ra: RouterAdvert | None = None
    dhcp: DhcpMessage | None = None


def _names(paths: Sequence[Path]) -> list[str]:
    """Evidence names as ``extract`` makes them: file names, full paths when names clash."""
    names = [p.name for p in paths]
    return [str(p) for p in paths] if len(set(names)) != len(names) else names


def _light_pass(
    paths: Sequence[Path], names: Sequence[str], window: float
) -> tuple[list[_Seen], list[int], list[list[str]]]:
    """RA and DHCP messages of every file (deduplicated), frame counts and reader problems."""
    found: list[tuple[float, tuple[object, ...], int, _Seen]] = []
    counts: list[int] = []
    problems: list[list[str]] = []
    for pidx, (path, name) in enumerate(zip(paths, names, strict=True)):
        n = 0
        with PcapReader(path) as reader:
            for ts, _idx, fno, lt, data, iface in reader.numbered(pidx):
                n = fno
                # Cheap skip of the bulk (SCTP/TCP over Ethernet) before any parsing.
                if lt == 1 and len(data) > 23:
                    et = data[12:14]
                    if (et == b"\x08\x00" and data[23] != PROTO_UDP) or (
                        et == b"\x86\xdd" and data[20] not in (ICMPV6, PROTO_UDP, 0)
                    ):
                        continue
                try:
                    off, cp = locate_ip(lt, data)
                    _v, proto, src, dst, l4, end, ipid = parse_ip(data, off)
                except (NotIP, ValueError, struct.error, IndexError):
                    continue  # the checker counts these; the ladder just skips them
                seen = _classify(proto, data, l4, end, ts, name, fno, ntop(src), ntop(dst))
                if seen is not None:
                    key = (src, dst, proto, ipid, data[l4:end])
                    found.append((ts, key, hash((pidx, iface, cp)), seen))
            problems.append(list(reader.problems))
        counts.append(n)
    found.sort(key=lambda f: f[0])
    out: list[_Seen] = []
    first: dict[tuple[object, ...], tuple[float, set[int]]] = {}
    for ts, key, point, seen in found:
        ent = first.get(key)
        if ent is not None and ts - ent[0] <= window and point not in ent[1]:
            ent[1].add(point)  # the same packet at another capture point
            continue
        first[key] = (ts, {point})
        out.append(seen)
    return out, counts, problems


def _classify(
    proto: int, data: bytes, l4: int, end: int, ts: float, name: str, fno: int, src: str, dst: str
) -> _Seen | None:
    if proto == ICMPV6 and end - l4 >= 16 and data[l4] == ND_ROUTER_ADVERT:
        ra = decode_ra(data[l4:end])
        return _Seen(ts, name, fno, src, dst, 0, 0, ra=ra) if ra else None
    if proto == PROTO_UDP and end - l4 >= 8:
        sport, dport = struct.unpack_from("!HH", data, l4)
        if {sport, dport} <= {SERVER_PORT, CLIENT_PORT}:
            msg = decode_dhcp(data[l4 + 8 : end])
            return _Seen(ts, name, fno, src, dst, sport, dport, dhcp=msg) if msg else None
    return None


class _Builder:
    """Turns decoded facts into ``Message``s; holds the role lookup and the role choices."""

    def __init__(self, rm: RoleMap, mn: str, router: str, dhcp: str) -> None:
        self.rm, self.mn, self.router, self.dhcp_role = rm, mn, router, dhcp
        self.out: list[Message] = []

    def role(self, addr: str, prefer: Sequence[str] = ()) -> str:
        return self.rm.resolve(addr, prefer) or OTHER

    # -- RA and DHCP -------------------------------------------------------------------------
    def ra(self, s: _Seen) -> None:
        assert s.ra is not None
        src = self.rm.resolve(s.src, (self.router,))
        if src is None:  # link-local source: name the router by the prefix it advertises
            owners = [r for p in s.ra.prefixes for r in self.rm.hosts_in(p.prefix) if r != self.mn]
            src = self.router if self.router in owners else (owners[0] if owners else None)
        if src is None or src == self.mn:
            return  # not from a router the report knows (e.g. the old AR): not on the ladder
        dst = self.mn if s.dst.lower().startswith("ff") else self.role(s.dst)
        prefixes = ", ".join(p.prefix for p in s.ra.prefixes) or "no prefix"
        life = s.ra.router_lifetime
        detail = f"from {s.src} to {s.dst}; prefixes {prefixes}; router lifetime {life} s"
        if s.ra.mtu:
            detail += f"; MTU {s.ra.mtu}"
        label = "Router Advertisement " + (s.ra.prefixes[0].prefix if s.ra.prefixes else "")
        self.add(s, src, dst, label.strip(), detail, KIND_RA, error=s.ra.router_lifetime == 0)

    def dhcp(self, items: list[_Seen]) -> None:
        """Keep a transaction (by xid) whose server is the DHCP role's, or that nobody answered."""
        by_xid: dict[int, list[_Seen]] = {}
        for s in items:
            assert s.dhcp is not None
            by_xid.setdefault(s.dhcp.xid, []).append(s)
        for group in by_xid.values():
            servers = [s.dhcp.server_id for s in group if s.dhcp and s.dhcp.server_id]
            servers += [s.src for s in group if s.sport == SERVER_PORT]
            if servers and self.rm.resolve(servers[0], (self.dhcp_role,)) != self.dhcp_role:
                continue
            for s in group:
                m = s.dhcp
                assert m is not None
                to_server = s.dport == SERVER_PORT
                src, dst = (self.mn, self.dhcp_role) if to_server else (self.dhcp_role, self.mn)
                addr = m.yiaddr if m.yiaddr != "0.0.0.0" else (m.requested or "")
                label = f"DHCP {m.type_name} {addr}".strip()
                parts = [f"xid 0x{m.xid:08x}", f"{s.src} → {s.dst}"]
                if m.server_id:
                    parts.append(f"server {m.server_id}")
                if m.lease is not None:
                    parts.append(f"lease {m.lease} s")
                if m.router:
                    parts.append(f"router {m.router}")
                self.add(
                    s,
                    src,
                    dst,
                    label,
                    "; ".join(parts),
                    KIND_DHCP,
                    reply=m.op == BOOTREPLY,
                    error=m.type_name in ("NAK", "DECLINE"),
                )

    def add(
        self,
        s: _Seen,
        src: str,
        dst: str,
        label: str,
        detail: str,
        kind: str,
        *,
        reply: bool = False,
        error: bool = False,
    ) -> None:
        self.out.append(
            Message(s.time, src, dst, label, detail, s.pcap, s.frame, kind, reply, error, s.src, s.dst)
        )

    # -- SCTP ---------------------------------------------------------------------------------
    def sctp(self, facts: Facts) -> None:
        exchanges, orphans = asconf_exchanges(facts)
        data_done: set[tuple[str, int]] = set()
        for ex in exchanges:
            names = " + ".join(f"{p.name} {p.address or ''}".strip() for p in ex.first.chunk.params)
            for n, send in enumerate(ex.sends):
                self.asconf(send, names, retransmission=n > 0)
            failures = [why for _i, _p, why in ex.outcomes() if why]
            short = " + ".join(p.name for p in ex.first.chunk.params) or "ASCONF"
            for ack in ex.acks:
                self.ack(ack, f"{short} ACK", failures)
            ack = ex.ack
            sp = [p for p in ex.first.chunk.params if p.type == SET_PRIMARY]
            fd = ack.first_data_back if ack else None
            if sp and fd is not None and (fd.where.pcap, fd.where.frame) not in data_done:
                data_done.add((fd.where.pcap, fd.where.frame))
                new = sp[0].address
                wrong = new is not None and fd.dst != new
                label = "DATA to the old address" if wrong else "first DATA on the new path"
                detail = (
                    f"TSN {fd.tsn}, {fd.src} → {fd.dst}; "
                    f"first new DATA after SET_PRIMARY {new} was acknowledged"
                )
                self.out.append(
                    Message(
                        fd.where.time,
                        self.role(fd.src),
                        self.role(fd.dst),
                        label,
                        detail,
                        fd.where.pcap,
                        fd.where.frame,
                        KIND_DATA,
                        error=wrong,
                        src=fd.src,
                        dst=fd.dst,
                    )
                )
        for ack in orphans:
            self.ack(ack, "ASCONF-ACK for no captured ASCONF", [], orphan=True)

    def asconf(self, a: AsconfSeen, names: str, *, retransmission: bool) -> None:
        auth = f"AUTH {a.auth.hmac_name} key {a.auth.shared_key_id}" if a.auth else "no AUTH"
        detail = f"serial {a.chunk.serial}; lookup address {a.chunk.address}; {auth}; {a.src} → {a.dst}"
        label = f"ASCONF {names}" + (" (retransmission)" if retransmission else "")
        self.out.append(
            Message(
                a.where.time,
                self.role(a.src),
                self.role(a.dst),
                label,
                detail,
                a.where.pcap,
                a.where.frame,
                KIND_ASCONF,
                src=a.src,
                dst=a.dst,
                error=a.auth is None,
            )
        )

    def ack(self, a: AckSeen, label: str, failures: list[str], *, orphan: bool = False) -> None:
        errors = [p for p in a.chunk.params if p.type == ERROR_CAUSE_IND]
        auth = f"AUTH {a.auth.hmac_name}" if a.auth else "no AUTH"
        status = "; ".join(failures) if failures else "all requests succeeded"
        detail = f"serial {a.chunk.serial}; {status}; {auth}; {a.src} → {a.dst}"
        if failures or errors:
            label += " (error)"
        self.out.append(
            Message(
                a.where.time,
                self.role(a.src),
                self.role(a.dst),
                label,
                detail,
                a.where.pcap,
                a.where.frame,
                KIND_ASCONF,
                reply=True,
                error=bool(failures or errors or orphan),
                src=a.src,
                dst=a.dst,
            )
        )

    # -- DNS ----------------------------------------------------------------------------------
    def dns(self, d: DnsSeen) -> None:
        m = d.msg
        if m.opcode != OPCODE_UPDATE:
            return
        src, dst = (d.server, d.client) if m.qr else (d.client, d.server)
        sig = _signature(m)
        if m.qr:
            label = f"DNS UPDATE reply {m.rcode_name}"
            detail = f"id {m.id}; rcode {m.rcode_name}; {sig}; {src[0]} → {dst[0]} ({d.transport})"
            error = m.rcode != 0
        else:
            adds, dels = _changes(m)
            owner = m.updates[0].name if m.updates else (m.zone.name if m.zone else "?")
            label = f"DNS UPDATE {owner} " + (", ".join(adds[:2]) + (" …" if len(adds) > 2 else ""))
            label = f"{label.strip()} [{sig.split(' ')[0]}]"
            zone = m.zone.name if m.zone else "?"
            detail = (
                f"id {m.id}; zone {zone}; add {', '.join(adds) or 'nothing'}; "
                f"delete {', '.join(dels) or 'nothing'}; {sig}; {src[0]} → {dst[0]} ({d.transport})"
            )
            error = sig == "unsigned"
        self.out.append(
            Message(
                d.where.time,
                self.role(src[0]),
                self.role(dst[0]),
                label,
                detail,
                d.where.pcap,
                d.where.frame,
                KIND_DNS,
                reply=m.qr,
                error=error,
                src=src[0],
                dst=dst[0],
            )
        )


def _signature(m: DNSMessage) -> str:
    if m.sig0 is not None:
        return f"SIG(0) by {m.sig0.signer} (algorithm {m.sig0.algorithm}, key tag {m.sig0.key_tag})"
    if m.tsig is not None:
        return f"TSIG key {m.additional[-1].name} ({m.tsig.algorithm})"
    return "unsigned"


def _changes(m: DNSMessage) -> tuple[list[str], list[str]]:
    """Additions ("A 198.51.100.10") and deletions ("AAAA *", "A 192.0.2.10") of an UPDATE."""
    adds, dels = [], []
    for r in m.updates:
        if r.rclass == CLASS_IN:
            adds.append(f"{r.type_name} {r.value or '…'}")
        elif r.rclass == CLASS_ANY:
            dels.append(f"{r.name} {r.type_name if r.type != 255 else 'all'} *")
        elif r.rclass == CLASS_NONE:
            dels.append(f"{r.type_name} {r.value or '…'}")
    return adds, dels


def extract_ladder(
    pcaps: Iterable[Path],
    roles: Mapping[str, Sequence[str]],
    *,
    window: float = 0.5,
    max_messages: int = 400,
    mn_role: str = MN,
    router_role: str = NEW_AR,
    dhcp_role: str = DHCP,
) -> Ladder:
    """Read the captures and return the ladder; unreadable files are listed, not raised.

    ``roles`` maps column name → addresses/prefixes (see ``testbed.report.roles``); ``mn_role``,
    ``router_role`` and ``dhcp_role`` name the columns that RA and DHCP messages go between.
    """
    paths = [Path(p) for p in pcaps]
    rm = RoleMap.build(roles)
    infos: dict[Path, CaptureInfo] = {}
    readable: list[Path] = []
    for p in paths:
        size = p.stat().st_size if p.exists() else 0
        try:
            PcapReader(p).close()
        except UnusableCapture as e:
            infos[p] = CaptureInfo(p.name, p, size, None, (str(e),))
            continue
        readable.append(p)
        infos[p] = CaptureInfo(p.name, p, size, 0)
    b = _Builder(rm, mn_role, router_role, dhcp_role)
    if readable:
        names = _names(readable)
        seen, counts, problems = _light_pass(readable, names, window)
        for p, n, probs in zip(readable, counts, problems, strict=True):
            infos[p] = CaptureInfo(p.name, p, infos[p].size, n, tuple(probs))
        if mn_role in roles:
            for s in seen:
                if s.ra is not None:
                    b.ra(s)
            if dhcp_role in roles:
                b.dhcp([s for s in seen if s.dhcp is not None])
        facts = extract(readable, window=window)
        b.sctp(facts)
        for d in facts.dns:
            b.dns(d)
    msgs = sorted(b.out, key=lambda m: m.time)  # stable: ties keep request-before-answer order
    truncated = max(0, len(msgs) - max_messages)
    msgs = msgs[:max_messages]
    columns = list(roles)
    if any(OTHER in (m.src_role, m.dst_role) for m in msgs) and OTHER not in columns:
        columns.append(OTHER)
    return Ladder(msgs, columns, [infos[p] for p in paths], truncated)


def ladder_messages(pcaps: Iterable[Path], roles: Mapping[str, Sequence[str]], **kw: object) -> list[Message]:
    """Just the messages of ``extract_ladder`` (same arguments)."""
    return extract_ladder(pcaps, roles, **kw).messages  # type: ignore[arg-type]
