"""The Appendix-A ladder of a run: the handover's signalling messages in time order, once each.

Built from the checker's ``Facts`` (``testbed.conformance``): the captures are read once, by the
checker, and the ladder's pcap/frame references are the same first copies the verdict's evidence
cites (copies of one packet seen on several links are already merged).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.conformance.exchange import asconf_exchanges
from testbed.conformance.extract import extract
from testbed.conformance.facts import (
    AckSeen,
    AsconfSeen,
    Dhcp6Seen,
    DhcpSeen,
    DnsSeen,
    Facts,
    NdSeen,
)
from testbed.conformance.keylog_file import keys_beside
from testbed.conformance.mptcp_rules import add_addr_forged, join_faults, tcp_break
from testbed.conformance.quic_facts import FrameSeen, QuicFacts, addr_text
from testbed.conformance.tcp_facts import MptcpSignal, TcpFacts
from testbed.conformance.where import Where
from testbed.decode.dhcp import BOOTREPLY, SERVER_PORT
from testbed.decode.dns import CLASS_ANY, CLASS_IN, CLASS_NONE, OPCODE_UPDATE, DNSMessage
from testbed.decode.mptcp import AddAddr, MpJoin, MpPrio, RemoveAddr, option_name
from testbed.decode.nd import RouterAdvert
from testbed.decode.quic_frames import NewConnectionId, PathChallenge, PathResponse, RetireConnectionId
from testbed.decode.sctp import ERROR_CAUSE_IND, SET_PRIMARY
from testbed.report.roles import DHCP, MN, NEW_AR, OTHER, RoleMap

# Message kinds (the renderer colours by kind; ``error`` overrides the colour).
KIND_RA, KIND_DHCP, KIND_ASCONF, KIND_DNS, KIND_DATA = "ra", "dhcp", "asconf", "dns", "data"
KIND_MPTCP, KIND_TCP, KIND_QUIC = "mptcp", "tcp", "quic"
KINDS = (KIND_RA, KIND_DHCP, KIND_ASCONF, KIND_DNS, KIND_DATA, KIND_MPTCP, KIND_TCP, KIND_QUIC)


@dataclass(frozen=True, slots=True)
class Arrow:
    """One message on the ladder. ``pcap``/``frame`` locate the first captured copy."""

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
    messages: list[Arrow]
    columns: list[str]  # the roles in the caller's order, plus OTHER when a message needs it
    captures: list[CaptureInfo] = field(default_factory=list)
    truncated: int = 0  # messages left out beyond ``max_messages``


class _Builder:
    """Turns decoded facts into ``Arrow``s; holds the role lookup and the role choices."""

    def __init__(self, rm: RoleMap, mn: str, router: str, dhcp: str) -> None:
        self.rm, self.mn, self.router, self.dhcp_role = rm, mn, router, dhcp
        self.out: list[Arrow] = []

    def role(self, addr: str, prefer: Sequence[str] = ()) -> str:
        return self.rm.resolve(addr, prefer) or OTHER

    def add(
        self, where: Where, ends: tuple[str, str], addrs: tuple[str, str], label: str, detail: str, kind: str,
        *, reply: bool = False, error: bool = False,
    ) -> None:  # fmt: skip
        """One arrow between the roles ``ends`` for the packet at ``where`` sent ``addrs[0]`` → ``[1]``."""
        self.out.append(
            Arrow(where.time, *ends, label, detail, where.pcap, where.frame, kind, reply, error, *addrs)
        )

    def between(
        self, where: Where, src: str, dst: str, label: str, detail: str, kind: str,
        *, reply: bool = False, error: bool = False,
    ) -> None:  # fmt: skip
        """An arrow whose ends are the roles of its addresses."""
        ends = (self.role(src), self.role(dst))
        self.add(where, ends, (src, dst), label, detail, kind, reply=reply, error=error)

    # -- RA and DHCP -------------------------------------------------------------------------
    def ra(self, s: NdSeen) -> None:
        ra = s.msg
        if not isinstance(ra, RouterAdvert):
            return  # solicitations are not drawn (Appendix A starts at the advertisement)
        src = self.rm.resolve(s.src, (self.router,))
        if src is None:  # link-local source: name the router by the prefix it advertises
            owners = [r for p in ra.prefixes for r in self.rm.hosts_in(p.prefix) if r != self.mn]
            src = self.router if self.router in owners else (owners[0] if owners else None)
        if src is None or src == self.mn:
            return  # not from a router the report knows (e.g. the old AR): not on the ladder
        dst = self.mn if s.dst.lower().startswith("ff") else self.role(s.dst)
        prefixes = ", ".join(p.prefix for p in ra.prefixes) or "no prefix"
        detail = f"from {s.src} to {s.dst}; prefixes {prefixes}; router lifetime {ra.router_lifetime} s"
        if ra.mtu:
            detail += f"; MTU {ra.mtu}"
        if ra.malformed:
            detail += f"; malformed: {ra.malformed}"
        label = "Router Advertisement " + (ra.prefixes[0].prefix if ra.prefixes else "")
        error = ra.router_lifetime == 0 or ra.malformed is not None
        self.add(s.where, (src, dst), (s.src, s.dst), label.strip(), detail, KIND_RA, error=error)

    def dhcp(self, items: list[DhcpSeen]) -> None:
        """Keep a transaction (by xid) whose server is the DHCP role's, or that nobody answered."""
        by_xid: dict[int, list[DhcpSeen]] = {}
        for s in items:
            by_xid.setdefault(s.msg.xid, []).append(s)
        for group in by_xid.values():
            servers = [s.msg.server_id for s in group if s.msg.server_id]
            servers += [s.src for s in group if s.sport == SERVER_PORT]
            if servers and self.rm.resolve(servers[0], (self.dhcp_role,)) != self.dhcp_role:
                continue
            for s in group:
                m = s.msg
                to_server = s.dport == SERVER_PORT
                ends = (self.mn, self.dhcp_role) if to_server else (self.dhcp_role, self.mn)
                addr = m.yiaddr if m.yiaddr != "0.0.0.0" else (m.requested or "")
                parts = [f"xid 0x{m.xid:08x}", f"{s.src} → {s.dst}"]
                if m.server_id:
                    parts.append(f"server {m.server_id}")
                if m.lease is not None:
                    parts.append(f"lease {m.lease} s")
                if m.router:
                    parts.append(f"router {m.router}")
                self.add(
                    s.where, ends, (s.src, s.dst), f"DHCP {m.type_name} {addr}".strip(), "; ".join(parts),
                    KIND_DHCP, reply=m.op == BOOTREPLY, error=m.type_name in ("NAK", "DECLINE"),
                )  # fmt: skip

    def dhcp6(self, items: list[Dhcp6Seen]) -> None:
        """Keep a stateful DHCPv6 exchange (by xid) whose address is on the new router's network."""
        by_xid: dict[int, list[Dhcp6Seen]] = {}
        for s in items:
            by_xid.setdefault(s.msg.xid, []).append(s)
        given = {a.address for s in items for a in s.msg.addresses}
        for group in by_xid.values():
            addrs = [a.address for s in group for a in s.msg.addresses] or sorted(given)
            if not any(self.dhcp_role in self.rm.hosts_in(f"{a}/64") for a in addrs):
                continue
            for s in group:
                m = s.msg
                ends = (self.mn, self.dhcp_role) if m.from_client else (self.dhcp_role, self.mn)
                addr = m.addresses[0].address if m.addresses else ""
                parts = [f"xid 0x{m.xid:06x}", f"{s.src} → {s.dst}"]
                parts += [f"IA_NA {a.address} valid {a.valid} s" for a in m.addresses]
                self.add(s.where, ends, (s.src, s.dst), f"DHCPv6 {m.type_name} {addr}".strip(),
                         "; ".join(parts), KIND_DHCP, reply=not m.from_client,
                         error=m.status not in (None, 0))

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
                self.between(fd.where, fd.src, fd.dst, label, detail, KIND_DATA, error=wrong)
        for ack in orphans:
            self.ack(ack, "ASCONF-ACK for no captured ASCONF", [], orphan=True)

    def asconf(self, a: AsconfSeen, names: str, *, retransmission: bool) -> None:
        auth = f"AUTH {a.auth.hmac_name} key {a.auth.shared_key_id}" if a.auth else "no AUTH"
        detail = f"serial {a.chunk.serial}; lookup address {a.chunk.address}; {auth}; {a.src} → {a.dst}"
        label = f"ASCONF {names}" + (" (retransmission)" if retransmission else "")
        self.between(a.where, a.src, a.dst, label, detail, KIND_ASCONF, error=a.auth is None)

    def ack(self, a: AckSeen, label: str, failures: list[str], *, orphan: bool = False) -> None:
        errors = [p for p in a.chunk.params if p.type == ERROR_CAUSE_IND]
        auth = f"AUTH {a.auth.hmac_name}" if a.auth else "no AUTH"
        status = "; ".join(failures) if failures else "all requests succeeded"
        detail = f"serial {a.chunk.serial}; {status}; {auth}; {a.src} → {a.dst}"
        if failures or errors:
            label += " (error)"
        error = bool(failures or errors or orphan)
        self.between(a.where, a.src, a.dst, label, detail, KIND_ASCONF, reply=True, error=error)

    # -- TCP: MPTCP signals, where a plain connection died ------------------------------------
    def mptcp(self, t: TcpFacts) -> None:
        for sf in t.subflows.values():
            if not sf.join and sf.syn is not None:
                self.add_between(sf.syn, sf.client[0], sf.server[0], "TCP SYN MP_CAPABLE",
                                 f"{sf.name}; the keys follow in the clear", KIND_MPTCP)
            if not sf.join and sf.ack is not None and sf.conn is not None:
                keys = f"{sf.conn.key_a:#018x}, {sf.conn.key_b:#018x}"
                self.add_between(sf.ack, sf.client[0], sf.server[0], "MP_CAPABLE ACK with both keys",
                                 f"{sf.name}; keys in the clear: {keys}", KIND_MPTCP)
        bad_joins = {id(sf) for sf in t.subflows.values() if sf.join and join_faults(sf)}
        for s in t.signals:
            o = s.option
            label, detail, error, reply = _signal(s, o)
            if isinstance(o, MpJoin) and id(s.subflow) in bad_joins:
                error, detail = True, detail + "; " + "; ".join(join_faults(s.subflow))  # type: ignore[arg-type]
            if isinstance(o, AddAddr) and not o.echo and add_addr_forged(s):
                error, detail = True, detail + "; HMAC does not verify"
            self.add_between(s.where, s.src[0], s.dst[0], label, detail, KIND_MPTCP, reply=reply, error=error)
        drawn: set[tuple[str, int]] = set()
        for s in t.signals:  # the other side's first new data after each MP_PRIO (once)
            if isinstance(s.option, MpPrio) and s.first_data_after is not None and s.side is not None:
                where, sf = s.first_data_after
                if (where.pcap, where.frame) in drawn:
                    continue
                drawn.add((where.pcap, where.frame))
                sender = "b" if s.side == "a" else "a"
                self.add_between(where, sf.address_of(sender) or "", sf.address_of(s.side) or "",
                                 "first data after MP_PRIO", f"new data at the data level, over {sf.name}",
                                 KIND_DATA)

    def tcp(self, t: TcpFacts) -> None:
        for c in t.plain.values():
            died = tcp_break(c)
            for sender, fl in c.flows.items():
                peer = c.server if sender == c.client else c.client
                if fl.high > fl.acked and fl.last_progress is not None:
                    self.add_between(fl.last_progress, peer[0], sender[0], "TCP: last data acknowledged",
                                     f"{c.name}: {fl.acked} of {fl.high} bytes acknowledged", KIND_TCP,
                                     reply=True)
                if fl.high > fl.acked and fl.first_unanswered is not None:
                    self.add_between(fl.first_unanswered, sender[0], peer[0],
                                     f"TCP re-sent, never acknowledged ({fl.retransmissions})",
                                     "; ".join(died), KIND_TCP, error=True)
            if c.reset is not None and c.reset_by is not None:
                other = c.server if c.reset_by == c.client else c.client
                self.add_between(c.reset, c.reset_by[0], other[0], "TCP RST", c.name, KIND_TCP, error=True)

    def add_between(self, where: Where, src: str, dst: str, label: str, detail: str, kind: str,
                    *, reply: bool = False, error: bool = False) -> None:
        self.between(where, src, dst, label, detail, kind, reply=reply, error=error)

    # -- QUIC: the decrypted migration frames -------------------------------------------------
    def quic(self, q: QuicFacts) -> None:
        """One arrow per packet and frame type (a packet may carry several NEW_CONNECTION_IDs),
        and the client's first packet from each new address."""
        for c in q.conns:
            validating = {p.validated.where for p in c.paths if p.validated is not None}
            groups: dict[tuple[str, int, str], list[FrameSeen]] = {}
            for fs in c.frames:
                groups.setdefault((fs.where.pcap, fs.where.frame, type(fs.frame).__name__), []).append(fs)
            for group in groups.values():
                label, detail, reply, error = _quic_arrow(group, validating)
                fs = group[0]
                # a NAT's address for the client is the client's column (the path it names)
                src, dst = q.alias.get(fs.src, fs.src), q.alias.get(fs.dst, fs.dst)
                self.add_between(fs.where, src[0], dst[0], label, detail, KIND_QUIC, reply=reply, error=error)
            for path in c.migrations():
                w = path.first_from_client
                assert w is not None
                dcid = path.client_dcids[0].hex() if path.client_dcids else "?"
                detail = f"{c.name}: first packet from {addr_text(path.client)}, DCID {dcid}"
                self.add_between(w, path.client[0], c.server[0], f"QUIC from new address {path.client[0]}",
                                 detail, KIND_QUIC)

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
        self.between(d.where, src[0], dst[0], label, detail, KIND_DNS, reply=m.qr, error=error)


def _signal(s: MptcpSignal, o: object) -> tuple[str, str, bool, bool]:
    """(label, detail, error, reply) of an MPTCP signal's arrow."""
    where = f"{s.src[0]}:{s.src[1]} → {s.dst[0]}:{s.dst[1]}"
    if isinstance(o, MpJoin):
        if o.step == "syn":
            return (f"MP_JOIN SYN id {o.addr_id}{' backup' if o.backup else ''}",
                    f"token {o.token:#010x}, nonce {o.nonce:#010x}; {where}", False, False)
        if o.step == "synack":
            return "MP_JOIN SYN/ACK", f"truncated HMAC {o.hmac.hex()}; {where}", False, True
        return "MP_JOIN ACK", f"HMAC {o.hmac.hex()}; {where}", False, False
    if isinstance(o, AddAddr):
        text = f"ADD_ADDR id {o.addr_id} {o.address}" + (f" port {o.port}" if o.port else "")
        if o.echo:
            return f"{text} (echo)", where, False, True
        return text, f"HMAC {o.hmac.hex()}; {where}", False, False
    if isinstance(o, RemoveAddr):
        return f"REMOVE_ADDR id {', '.join(map(str, o.addr_ids))}", where, False, False
    if isinstance(o, MpPrio):
        sub = s.subflow.name if s.subflow else "?"
        return (f"MP_PRIO {'backup' if o.backup else 'active'}", f"subflow {sub}; {where}", False, False)
    name = option_name(o)  # type: ignore[arg-type]
    return name, where, name in ("MP_FASTCLOSE", "MP_TCPRST", "MP_FAIL"), False


def _quic_arrow(group: list[FrameSeen], validating: set[Where]) -> tuple[str, str, bool, bool]:
    """(label, detail, reply, error) of the arrow for one packet's frames of one type."""
    fs = group[0]
    ends = f"{addr_text(fs.src)} → {addr_text(fs.dst)}"
    f = fs.frame
    if isinstance(f, NewConnectionId):
        seqs = ", ".join(str(g.frame.sequence) for g in group)  # type: ignore[union-attr]
        cids = ", ".join(g.frame.cid.hex() for g in group)  # type: ignore[union-attr]
        return (f"NEW_CONNECTION_ID seq {seqs}", f"CIDs {cids}; retire prior to {f.retire_prior_to}; {ends}",
                False, False)
    if isinstance(f, RetireConnectionId):
        seqs = ", ".join(str(g.frame.sequence) for g in group)  # type: ignore[union-attr]
        return f"RETIRE_CONNECTION_ID seq {seqs}", ends, False, False
    if isinstance(f, PathChallenge):
        return f"PATH_CHALLENGE {f.data.hex()}", f"path validation (RFC 9000 §8.2); {ends}", False, False
    assert isinstance(f, PathResponse)
    note = "validates the path" if fs.where in validating else "echoes a challenge"
    return f"PATH_RESPONSE {f.data.hex()}", f"{note}; {ends}", True, False


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


def build_ladder(
    facts: Facts,
    roles: Mapping[str, Sequence[str]],
    *,
    max_messages: int = 400,
    mn_role: str = MN,
    router_role: str = NEW_AR,
    dhcp_role: str = DHCP,
) -> Ladder:
    """The ladder of what the checker extracted (``Verdict.facts``); no capture is read here.

    ``roles`` maps column name → addresses/prefixes (see ``testbed.report.roles``); ``mn_role``,
    ``router_role`` and ``dhcp_role`` name the columns that RA and DHCP messages go between.
    """
    b = _Builder(RoleMap.build(roles), mn_role, router_role, dhcp_role)
    if mn_role in roles:
        for s in facts.nd:
            b.ra(s)
        if dhcp_role in roles:
            b.dhcp(facts.dhcp)
            b.dhcp6(facts.dhcp6)
    b.sctp(facts)
    b.mptcp(facts.tcp)
    b.tcp(facts.tcp)
    b.quic(facts.quic)
    for d in facts.dns:
        b.dns(d)
    msgs = sorted(b.out, key=lambda m: m.time)  # stable: ties keep request-before-answer order
    truncated = max(0, len(msgs) - max_messages)
    msgs = msgs[:max_messages]
    columns = list(roles)
    if any(OTHER in (m.src_role, m.dst_role) for m in msgs) and OTHER not in columns:
        columns.append(OTHER)
    captures = [
        CaptureInfo(c.name, c.path, c.path.stat().st_size if c.path.exists() else 0, c.frames, c.problems)
        for c in facts.captures
    ]
    return Ladder(msgs, columns, captures, truncated)


def extract_ladder(
    pcaps: Iterable[Path], roles: Mapping[str, Sequence[str]], *, window: float = 0.5, mn_role: str = MN
) -> Ladder:
    """Read the captures (one pass, unreadable files listed rather than raised; QUIC decrypted
    with the keylog.txt beside them, if any) and build the ladder: for a run directory without
    a checker's result at hand."""
    pcaps = list(pcaps)
    facts = extract(pcaps, window, skip_unusable=True, keylog=keys_beside(pcaps))
    return build_ladder(facts, roles, mn_role=mn_role)
