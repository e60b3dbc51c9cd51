"""What the pass over the captures keeps of TCP: Multipath TCP connections with their subflows,
signals and data-level sequence space, and plain TCP connections with where their data stopped.

An MPTCP connection is named by its two keys (sides ``a``, the MP_CAPABLE initiator, and ``b``);
a subflow by the addresses and ports of its SYN (initiator first). Every MPTCP option but DSS is
kept as an ``MptcpSignal``; DSS mappings and data ACKs are reduced to per-side bookkeeping
(``DsnFlow``), as SCTP DATA is to TSN counters. Plain TCP (no MPTCP option, not DNS) keeps,
per direction, how far data went and how far it was acknowledged (``TcpFlow``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.conformance.where import Where
from testbed.decode.mptcp import MptcpOption, idsn_of, token_of

Endpoint = tuple[str, int]  # (address, port)
FourTuple = tuple[str, int, str, int]  # (src, sport, dst, dport) as a packet carries them


@dataclass(slots=True)
class DsnFlow:
    """The data-level sequence space one side sent: covered up to ``high`` except ``holes``
    (``[lo, hi)`` ranges never mapped), and how far the other side's DATA_ACKs reached."""

    high: int | None = None
    holes: list[list[int]] = field(default_factory=list)
    hole_where: dict[int, Where] = field(default_factory=dict)
    mapped: int = 0  # mappings seen
    duplicate_bytes: int = 0  # mapped again (reinjection on another subflow, retransmission)
    data_ack: int | None = None  # the highest DATA_ACK the other side sent
    data_ack_where: Where | None = None
    data_fin: Where | None = None

    def cover(self, lo: int, hi: int, where: Where) -> None:
        """Account the mapping ``[lo, hi)``."""
        self.mapped += 1
        if hi <= lo:
            return
        if self.high is None:
            self.high = hi
            return
        if lo >= self.high:
            if lo > self.high:
                self.holes.append([self.high, lo])
                self.hole_where[self.high] = where
            self.high = hi
            return
        top = min(hi, self.high)  # [lo, top) is below the highest mapping: a hole filled, or sent again
        filled = 0
        for h in list(self.holes):
            a, b = max(h[0], lo), min(h[1], top)
            if a >= b:
                continue
            filled += b - a
            self.holes.remove(h)
            if h[0] < a:
                self.holes.append([h[0], a])
            if b < h[1]:
                self.holes.append([b, h[1]])
        self.duplicate_bytes += (top - lo) - filled
        self.high = max(self.high, hi)

    def acked(self, value: int, where: Where) -> None:
        if self.data_ack is None or value > self.data_ack:
            self.data_ack, self.data_ack_where = value, where


@dataclass(slots=True)
class Subflow:
    """One TCP subflow of an MPTCP connection, as its handshake and end were captured."""

    client: Endpoint  # the SYN's sender
    server: Endpoint
    first: Where
    join: bool = False  # an MP_JOIN subflow (False: the MP_CAPABLE one)
    backup: bool = False  # the B flag of the joiner's SYN
    addr_id: int | None = None  # the joiner's address id (SYN); None for MP_CAPABLE
    token: int | None = None  # MP_JOIN SYN: the receiver's token
    nonce_client: int | None = None
    nonce_server: int | None = None
    thmac_server: bytes = b""  # SYN/ACK's truncated HMAC
    hmac_client: bytes = b""  # third ACK's HMAC
    server_addr_id: int | None = None  # SYN/ACK's address id
    syn: Where | None = None
    synack: Where | None = None
    ack: Where | None = None  # third ACK (MP_JOIN's HMAC or MP_CAPABLE's keys)
    established: Where | None = None  # the server's first ACK after the third ACK
    reset: Where | None = None  # RST seen on it
    fin: Where | None = None  # first FIN seen on it
    conn: MptcpConn | None = None
    client_side: str | None = None  # "a" or "b": which end of the connection opened it
    data_packets: int = 0
    last_data: Where | None = None

    @property
    def name(self) -> str:
        return f"{self.client[0]}:{self.client[1]} → {self.server[0]}:{self.server[1]}"

    def side_of(self, src: str, sport: int) -> str | None:
        """The connection side that sent a packet with this source on this subflow."""
        if self.client_side is None:
            return None
        other = "b" if self.client_side == "a" else "a"
        return self.client_side if (src, sport) == self.client else other

    def address_of(self, side: str) -> str | None:
        """The address ``side`` uses on this subflow."""
        if self.client_side is None:
            return None
        return self.client[0] if side == self.client_side else self.server[0]


@dataclass(slots=True)
class MptcpConn:
    """One MPTCP connection: keys from MP_CAPABLE (``key_a`` the initiator's)."""

    key_a: int
    key_b: int
    first: Where
    subflows: list[Subflow] = field(default_factory=list)
    flows: dict[str, DsnFlow] = field(default_factory=lambda: {"a": DsnFlow(), "b": DsnFlow()})
    fastclose: Where | None = None

    @property
    def token_a(self) -> int:
        return token_of(self.key_a)

    @property
    def token_b(self) -> int:
        return token_of(self.key_b)

    def idsn(self, side: str) -> int:
        return idsn_of(self.key_a if side == "a" else self.key_b)

    def key(self, side: str) -> int:
        return self.key_a if side == "a" else self.key_b

    @property
    def initial(self) -> Subflow | None:
        return next((s for s in self.subflows if not s.join), None)

    @property
    def name(self) -> str:
        sf = self.initial or (self.subflows[0] if self.subflows else None)
        return f"MPTCP token {self.token_b:#010x}" + (f" ({sf.name})" if sf else "")


@dataclass(slots=True)
class MptcpSignal:
    """An MPTCP option other than DSS, where it was captured and on which subflow."""

    where: Where
    src: Endpoint
    dst: Endpoint
    tcp_flags: int
    option: MptcpOption
    subflow: Subflow | None
    # MP_PRIO: the first data the other side sent after it, and on which subflow
    first_data_after: tuple[Where, Subflow] | None = None

    @property
    def conn(self) -> MptcpConn | None:
        return self.subflow.conn if self.subflow else None

    @property
    def side(self) -> str | None:
        return self.subflow.side_of(*self.src) if self.subflow else None


@dataclass(slots=True)
class TcpFlow:
    """Data one end of a plain TCP connection sent: sequence numbers relative to the first seen."""

    base: int
    high: int = 0  # end of the highest data sent
    acked: int = 0  # the highest ACK the other end sent
    last_progress: Where | None = None  # where ``acked`` last grew (or the first data)
    retransmissions: int = 0
    first_unanswered: Where | None = None  # first re-send after the last progress
    last_sent: Where | None = None
    longest_stall: float = 0.0  # seconds with data outstanding and no ACK progress
    stall_from: Where | None = None
    packets: int = 0


@dataclass(slots=True)
class TcpConn:
    """A plain TCP connection (no MPTCP option seen on it)."""

    client: Endpoint
    server: Endpoint
    first: Where
    flows: dict[Endpoint, TcpFlow] = field(default_factory=dict)  # by sender
    syn: bool = False  # its SYN was captured
    fins: dict[Endpoint, Where] = field(default_factory=dict)
    reset: Where | None = None
    reset_by: Endpoint | None = None
    last: Where | None = None

    @property
    def name(self) -> str:
        return f"{self.client[0]}:{self.client[1]} → {self.server[0]}:{self.server[1]}"


@dataclass(slots=True)
class TcpFacts:
    """Everything TCP the checker keeps."""

    mptcp: list[MptcpConn] = field(default_factory=list)
    subflows: dict[FourTuple, Subflow] = field(default_factory=dict)  # by the SYN's direction
    signals: list[MptcpSignal] = field(default_factory=list)
    plain: dict[FourTuple, TcpConn] = field(default_factory=dict)  # by the first packet's direction
    packets: int = 0
    mptcp_packets: int = 0
