"""What one pass over the captures keeps: the ``Facts`` the rules, the timeline and the report use.

Every kept packet is its first captured copy, located by ``where.Where`` (file, 1-based frame
number, capture time), so a verdict's evidence and the report's ladder cite the same frames. Bulk
SCTP DATA is reduced to per-direction TSN bookkeeping (``Flow``), bulk TCP to the bookkeeping in
``tcp_facts``, QUIC (decrypted) to that in ``quic_facts``; control messages are kept decoded.
``Facts`` gathers them all; the per-transport modules build on ``where`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from testbed.conformance.quic_facts import QuicFacts
from testbed.conformance.tcp_facts import TcpFacts
from testbed.conformance.where import Where
from testbed.decode.dhcp import DhcpMessage
from testbed.decode.dhcp6 import Dhcp6Message
from testbed.decode.dns import DNSMessage
from testbed.decode.nd import RouterAdvert, RouterSolicit
from testbed.decode.sctp import AsconfAckChunk, AsconfChunk, AuthChunk, ErrorChunk

_MAX_EXAMPLES = 20  # malformed packets described in the stats (all are counted)

Key = tuple[int, int, int]  # (sport, dport, vtag) of an SCTP header
Link = tuple[str, int, int]  # (capture file, pcapng interface, link-layer capture point)


@dataclass(slots=True)
class AsconfSeen:
    where: Where
    key: Key
    src: str
    dst: str
    chunk: AsconfChunk
    auth: AuthChunk | None
    # what ``auth`` authenticates (testbed.decode.sctp_auth.covered): its HMAC is checked
    # against this once the association key is known
    auth_covered: bytes | None = None


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
    auth_covered: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuthVectors:
    """The two endpoints' SCTP-AUTH key vectors from INIT and INIT-ACK (None: that end offered
    no AUTH), and where the handshake was captured."""

    init: bytes | None
    init_ack: bytes | None
    where: Where


@dataclass(frozen=True, slots=True)
class LeftSource:
    """A packet sent from an address of a network the MN had left (its ``lost`` event)."""

    address: str
    lost: float  # wall time of the loss
    where: Where


@dataclass(frozen=True, slots=True)
class InitSeen:
    """An INIT: who opened an association, to whom, with which initiate tag."""

    where: Where
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class AbortSeen:
    """An ABORT chunk: the association it names is over. ``refused`` names the INIT key it
    answers when it ends an association that never got its INIT-ACK."""

    where: Where
    key: Key
    src: str
    dst: str
    chunk: ErrorChunk
    refused: Key | None = None

    @property
    def causes(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.chunk.causes)


@dataclass(frozen=True, slots=True)
class HeartbeatSent:
    """A HEARTBEAT to ``address``: its sender probing that path (RFC 9260 §8.3), which stays
    unconfirmed until the ACK comes back. ``key`` is the HEARTBEAT's direction."""

    where: Where
    key: Key
    address: str


@dataclass(slots=True)
class PathConfirmed:
    """A HEARTBEAT-ACK echoing a HEARTBEAT sent to ``address``: the peer may now send DATA
    there (RFC 9260 §5.4: no DATA to an unconfirmed address). ``key`` is the HEARTBEAT's
    direction; ``first_data_back`` the first new DATA in it once the peer has shown it took the
    ACK in: after a SACK of DATA its sender sent after the ACK. ``acked_before``: the last TSN
    that sender had sent when the ACK was captured."""

    where: Where
    key: Key
    address: str
    acked_before: int | None = None
    first_data_back: DataSeen | None = None


@dataclass(frozen=True, slots=True)
class DnsSeen:
    where: Where
    client: tuple[str, int]
    server: tuple[str, int]
    transport: str
    msg: DNSMessage


@dataclass(frozen=True, slots=True)
class NdSeen:
    """A Router Solicitation or Advertisement; ``link`` is where it was captured (ND messages
    stay on their link, so this names the access link)."""

    where: Where
    src: str
    dst: str
    link: Link
    msg: RouterSolicit | RouterAdvert


@dataclass(frozen=True, slots=True)
class DhcpSeen:
    where: Where
    src: str
    dst: str
    sport: int
    dport: int
    link: Link
    msg: DhcpMessage


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


@dataclass(frozen=True, slots=True)
class CaptureSummary:
    """One capture file: ``frames`` is None when it could not be read at all."""

    name: str  # as evidence names it
    path: Path
    frames: int | None
    problems: tuple[str, ...] = ()


@dataclass(slots=True)
class Facts:
    """Everything the rules, the timeline and the report look at, in capture order."""

    pcaps: list[str]
    asconfs: list[AsconfSeen] = field(default_factory=list)
    acks: list[AckSeen] = field(default_factory=list)
    left_sources: list[LeftSource] = field(default_factory=list)  # first per loss, when watched
    left_watched: int = 0  # addresses watched for that (of networks the MN left)
    dns: list[DnsSeen] = field(default_factory=list)
    nd: list[NdSeen] = field(default_factory=list)
    dhcp: list[DhcpSeen] = field(default_factory=list)
    dhcp6: list[Dhcp6Seen] = field(default_factory=list)
    flows: dict[Key, Flow] = field(default_factory=dict)
    tcp: TcpFacts = field(default_factory=TcpFacts)  # MPTCP connections, plain TCP
    quic: QuicFacts = field(default_factory=QuicFacts)  # QUIC connections, decrypted
    sender_itsn: dict[Key, int] = field(default_factory=dict)  # ASCONF sender key → initial TSN
    init_addresses: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    # association set-up: each INIT by (sport, dport, initiate tag), the keys answered by an
    # INIT-ACK, and every ABORT
    inits: dict[Key, InitSeen] = field(default_factory=dict)
    answered_inits: set[Key] = field(default_factory=set)
    aborts: list[AbortSeen] = field(default_factory=list)
    heartbeats: list[HeartbeatSent] = field(default_factory=list)
    confirmations: list[PathConfirmed] = field(default_factory=list)
    # SCTP header key of either direction → the association's AUTH key vectors
    auth_vectors: dict[Key, AuthVectors] = field(default_factory=dict)
    captures: list[CaptureSummary] = field(default_factory=list)
    # later copies of a kept (non-DATA) message at other capture points, by the first copy's
    # (pcap, frame): an answer's time where its request was captured
    copies: dict[tuple[str, int], list[Where]] = field(default_factory=dict)
    # address -> capture files where control packets (not DATA/SACK) from it were first seen:
    # the capture points next to its host, where what is sent to it must arrive
    origins: dict[str, set[str]] = field(default_factory=dict)
    packets: int = 0
    duplicates_removed: int = 0
    sctp_packets: int = 0
    data_chunks: int = 0
    dns_messages: int = 0
    unknown: int = 0
    malformed: int = 0
    malformed_examples: list[dict[str, object]] = field(default_factory=list)
    unknown_kinds: dict[str, int] = field(default_factory=dict)
    first_time: float | None = None
    last_time: float | None = None

    def note_malformed(self, where: Where, reason: str) -> None:
        """A packet that could not be decoded: counted, and the first few described."""
        self.malformed += 1
        if len(self.malformed_examples) < _MAX_EXAMPLES:
            self.malformed_examples.append(
                {"pcap": where.pcap, "frame": where.frame, "time": where.time, "reason": reason}
            )

    def note_unknown(self, kind: str) -> None:
        """A well-formed packet of a kind the checker does not follow, counted by kind."""
        self.unknown += 1
        self.unknown_kinds[kind] = self.unknown_kinds.get(kind, 0) + 1

    def seen_at(self, where: Where, pcap: str) -> Where:
        """The packet first captured at ``where`` as captured in ``pcap``, if a copy was seen
        there; else ``where`` itself."""
        if where.pcap == pcap:
            return where
        return next((w for w in self.copies.get((where.pcap, where.frame), ()) if w.pcap == pcap), where)

    @property
    def capture_problems(self) -> list[str]:
        return [f"{c.name}: {p}" for c in self.captures for p in c.problems]

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
            "nd_messages": len(self.nd),
            "dhcp_messages": len(self.dhcp),
            "dhcp6_messages": len(self.dhcp6),
            "tcp_packets": self.tcp.packets,
            "mptcp_packets": self.tcp.mptcp_packets,
            "mptcp_connections": len(self.tcp.mptcp),
            "mptcp_signals": len(self.tcp.signals),
            "tcp_connections": len(self.tcp.plain),
            **self.quic.stats(),
            "unknown": self.unknown,
            "unknown_kinds": dict(sorted(self.unknown_kinds.items(), key=lambda kv: -kv[1])[:10]),
            "malformed": self.malformed,
            "malformed_examples": list(self.malformed_examples),
            "capture_problems": self.capture_problems,
            "first_time": self.first_time,
            "last_time": self.last_time,
        }


@dataclass(frozen=True, slots=True)
class DataSeen:
    """One DATA chunk as the continuity rules need it."""

    where: Where
    src: str
    dst: str
    tsn: int


@dataclass(frozen=True, slots=True)
class Dhcp6Seen:
    """A DHCPv6 message (client or server) on the link ``link`` names."""

    where: Where
    src: str
    dst: str
    link: Link
    msg: Dhcp6Message
