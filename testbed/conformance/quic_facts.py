"""What the pass keeps of QUIC (``quic_track`` fills it): connections, their connection IDs and
paths, the decrypted control frames, stream coverage and the numbered messages on the streams.

A path is a client address as the server's side of the connection knows it: where a NAT
rewrote the address between two capture points, both forms are one path (``QuicFacts.alias``).
Every location is the first captured copy (``Where``), as for the other transports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.conformance.where import Where
from testbed.decode.quic_frames import NewConnectionId, PathChallenge, PathResponse, RetireConnectionId

Addr = tuple[str, int]
ControlFrame = NewConnectionId | RetireConnectionId | PathChallenge | PathResponse


def addr_text(a: Addr) -> str:
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"


@dataclass(frozen=True, slots=True)
class FrameSeen:
    """A decrypted control frame: its packet's location, ends (as captured) and direction."""

    where: Where
    src: Addr
    dst: Addr
    from_client: bool
    frame: ControlFrame
    path: int  # index of the client path the packet travelled (``QuicConn.paths``)


@dataclass(slots=True)
class CidInfo:
    """A connection ID one end issued (sequence 0: its handshake Source Connection ID) for the
    other end to send with; ``retired`` is the other end's RETIRE_CONNECTION_ID for it."""

    cid: bytes
    sequence: int
    issued: Where | None
    retired: Where | None = None
    first_used: Where | None = None
    paths: set[int] = field(default_factory=set)  # paths the other end sent with it on


@dataclass(slots=True)
class QuicPath:
    """One client address of a connection (its index is its order of appearance)."""

    index: int
    client: Addr  # canonical form (the first captured)
    first: Where  # the first packet on this path, either way
    first_from_client: Where | None = None
    # anti-amplification (RFC 9000 §8, §9.3): UDP payload bytes each way until validated
    received: int = 0
    sent: int = 0
    over_limit: Where | None = None  # the server's first datagram past 3x what it received
    over_limit_bytes: tuple[int, int] = (0, 0)  # (sent, received) at that datagram
    validated: FrameSeen | None = None  # the client's PATH_RESPONSE to a server challenge
    handshake_validated: Where | None = None  # the first path: the client's Handshake packet
    client_dcids: list[bytes] = field(default_factory=list)  # in first use order
    first_stream_data: Where | None = None  # first new stream data carried on this path
    first_stream_from_client: bool | None = None
    # the last stream data each way on this path (by sender is client): what went to an old
    # address after its network was lost
    last_stream_data: dict[bool, Where] = field(default_factory=dict)


@dataclass(slots=True)
class StreamFlow:
    """One direction of one stream: offsets seen, holes, and the numbered messages read from
    its in-order bytes (``testbed.traffic.messages``'s framing); ``quic_streams`` keeps it."""

    high: int = 0  # one past the highest offset seen
    first: Where | None = None  # its first frame
    high_pn: int = -1  # the packet number that brought it
    fin: int | None = None
    frames: int = 0
    resent: int = 0  # bytes seen again (retransmissions)
    filled: int = 0  # holes later filled
    holes: dict[int, int] = field(default_factory=dict)  # start → end of each missing range
    hole_where: dict[int, Where] = field(default_factory=dict)
    # a hole's start → the sender's packet numbers not captured where it appeared (inclusive)
    hole_pns: dict[int, tuple[int, int]] = field(default_factory=dict)
    uncaptured: dict[int, int] = field(default_factory=dict)  # holes whose packets were acknowledged
    # message framing over the contiguous prefix
    delivered: int = 0  # bytes in order so far
    pending: dict[int, bytes] = field(default_factory=dict)  # out-of-order pieces by offset
    partial: bytes = b""
    messages: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    seq_faults: list[tuple[str, Where]] = field(default_factory=list)
    unframed: bool = False  # its bytes are not numbered messages
    resync: bool = False  # after an uncaptured hole: looking for the next message header
    after_gap: bool = False  # the next message follows uncaptured bytes
    uncaptured_messages: int = 0  # messages in uncaptured bytes (not judged)
    # HTTP/3 (RFC 9114): None until the first bytes say; then the current frame's state
    h3: bool | None = None
    h3_head: bytes = b""  # a frame header split across pieces
    h3_left: int = 0  # payload bytes of the current frame still to come
    h3_data: bool = False  # the current frame is DATA


@dataclass(slots=True)
class QuicConn:
    """A QUIC connection: found by its client's first Initial (``odcid`` its Destination
    Connection ID), then followed by connection ID across addresses and captures."""

    odcid: bytes
    client: Addr
    server: Addr
    first: Where
    version: int
    versions: set[int] = field(default_factory=set)
    client_random: bytes | None = None
    suite: int | None = None
    keys: str = "none"  # "none", "found", "missing" (the keylog lacks this ClientHello)
    retry: Where | None = None
    handshake_rtt: float | None = None  # client Initial → server Initial, where the first was captured
    confirmed: Where | None = None  # HANDSHAKE_DONE
    closed: Where | None = None
    client_cids: dict[int, CidInfo] = field(default_factory=dict)  # issued by the client
    server_cids: dict[int, CidInfo] = field(default_factory=dict)  # issued by the server
    frames: list[FrameSeen] = field(default_factory=list)
    paths: list[QuicPath] = field(default_factory=list)
    streams: dict[tuple[bool, int], StreamFlow] = field(default_factory=dict)  # (from client, id)
    packets: int = 0
    decrypted: int = 0
    spin_flips: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})  # per sender
    key_updates: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})

    @property
    def name(self) -> str:
        return f"{addr_text(self.client)} → {addr_text(self.server)} (DCID {self.odcid.hex()})"

    @property
    def pto(self) -> float:
        """The probe timeout a sender starts from (RFC 9002 §6.2.1 with its first RTT sample,
        §5.3: smoothed_rtt = sample, rttvar = sample / 2) plus the default max_ack_delay of
        25 ms (RFC 9000 §18.2); 333 ms (the initial RTT, §6.2.2) when no sample was captured."""
        rtt = self.handshake_rtt if self.handshake_rtt is not None else 0.333
        return 3 * rtt + 0.025

    def migrations(self) -> list[QuicPath]:
        """The paths after the first that the client sent on."""
        return [p for p in self.paths[1:] if p.first_from_client is not None]


@dataclass(slots=True)
class QuicFacts:
    conns: list[QuicConn] = field(default_factory=list)
    keylog: str | None = None  # the keylog file as given or found; None: none
    keylog_looked: tuple[str, ...] = ()  # where one was looked for, when none was given
    keylog_lines: int = 0
    keylog_problem: str | None = None  # why it could not be used
    datagrams: int = 0
    packets: int = 0  # QUIC packets (coalesced ones counted apiece)
    decrypted: int = 0
    failed: int = 0  # packets whose keys were at hand but that did not decrypt (AEAD, truncated)
    no_keys: int = 0  # packets of connections without keys
    failures: dict[str, int] = field(default_factory=dict)  # reason → packets
    failure_examples: list[dict[str, object]] = field(default_factory=list)
    other_versions: dict[int, int] = field(default_factory=dict)  # version → packets not judged
    unknown_cid: int = 0  # short headers matching no connection ID seen
    # a client address as a NAT rewrote it → the form first captured
    alias: dict[Addr, Addr] = field(default_factory=dict)

    def stats(self) -> dict[str, object]:
        return {
            "quic_datagrams": self.datagrams,
            "quic_packets": self.packets,
            "quic_decrypted": self.decrypted,
            "quic_failed": self.failed,
            "quic_no_keys": self.no_keys,
            "quic_failures": dict(self.failures),
            "quic_failure_examples": list(self.failure_examples),
            "quic_other_versions": {f"{v:#010x}": n for v, n in self.other_versions.items()},
            "quic_unknown_cid": self.unknown_cid,
            "quic_connections": len(self.conns),
            "quic_keylog": self.keylog,
        }
