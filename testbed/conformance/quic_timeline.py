"""QUIC handovers reconstructed from the decrypted capture and the agent's events: connection
migration (RFC 9000 §9) as the binding update of the draft's §5.

A handover is a client address (a path, ``quic_facts``) that a connection's client sends from
after its first one. It gathers the server's PATH_CHALLENGE to that address and the client's
PATH_RESPONSE that validates it (§8.2), the client's first RETIRE_CONNECTION_ID at or after the
move, the DNS UPDATE adding the address (else the next one for the MN), and the first new
stream data carried on the new path. The agent's events are matched by address as for SCTP
(``agent_events``).

Phases, in the order the migration drives them::

    lost, link_up, detected, configured, first_packet_new_address, path_challenge_sent,
    path_validated, retire_sent, dns_sent, dns_acked, first_data_new_path

Each phase of the chain link_up → detected → configured → first packet → path validated and
first stream data has its duration beside the PATH_CHALLENGE → PATH_RESPONSE round trip on the
wire (the access link's exchange under ``detected``, the DNS UPDATE under ``dns_acked``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.conformance.agent_events import AgentEvent, match_events, parse_events, window
from testbed.conformance.exchange import DnsTransaction
from testbed.conformance.facts import Facts
from testbed.conformance.floors import Floor, dns_floor, link_floors
from testbed.conformance.quic_facts import FrameSeen, QuicConn, QuicPath
from testbed.conformance.timeline import (
    FromLinkUp,
    assign_updates,
    chain_durations,
    handover_dict,
    mark_missing,
)
from testbed.conformance.where import Where
from testbed.decode.quic_frames import PathChallenge, RetireConnectionId

QUIC_PHASES = (
    "lost", "link_up", "detected", "configured", "first_packet_new_address", "path_challenge_sent",
    "path_validated", "retire_sent", "dns_sent", "dns_acked", "first_data_new_path",
)  # fmt: skip
QUIC_FLOORS = ("rs_ra", "dhcp", "dhcpv6", "path_challenge", "dns")
CHAIN = (
    ("detected", "link_up", "link"),
    ("configured", "detected", None),
    ("first_packet_new_address", "configured", "path_challenge"),
    ("path_validated", "first_packet_new_address", "path_challenge"),
    ("first_data_new_path", "first_packet_new_address", "path_challenge"),
    ("dns_acked", "path_validated", "dns"),
)


@dataclass(slots=True)
class QuicHandover(FromLinkUp):
    conn: QuicConn
    path: QuicPath  # the new one
    old: QuicPath | None  # the client's path before it
    start: float  # the client's first packet from the new address
    challenge: FrameSeen | None = None  # the server's first PATH_CHALLENGE to the new address
    retire: FrameSeen | None = None  # the client's first RETIRE_CONNECTION_ID at or after the move
    dns: DnsTransaction | None = None
    events: dict[str, AgentEvent] = field(default_factory=dict)
    floors: dict[str, Floor] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.path.client[0]

    @property
    def old_address(self) -> str | None:
        return self.old.client[0] if self.old is not None else None

    @property
    def ports(self) -> tuple[int, int]:
        return self.path.client[1], self.conn.server[1]

    @property
    def where(self) -> Where:
        return self.path.first_from_client or self.path.first

    def phases(self) -> dict[str, float]:
        p: dict[str, float] = {k: e.wall for k, e in self.events.items()}
        p["first_packet_new_address"] = self.start
        if self.challenge is not None:
            p["path_challenge_sent"] = self.challenge.where.time
        if self.path.validated is not None:
            p["path_validated"] = self.path.validated.where.time
        if self.retire is not None:
            p["retire_sent"] = self.retire.where.time
        if self.dns is not None:
            p["dns_sent"] = self.dns.request.where.time
            if self.dns.response is not None:
                p["dns_acked"] = self.dns.response.where.time
        if self.path.first_stream_data is not None:
            p["first_data_new_path"] = self.path.first_stream_data.time
        return {k: p[k] for k in QUIC_PHASES if k in p}

    def durations(self) -> dict[str, dict[str, Any]]:
        return chain_durations(self.phases(), CHAIN, self.floors, self.address)

    def to_dict(self, index: int) -> dict[str, Any]:
        return handover_dict(self, index, QUIC_FLOORS, transport="quic", connection=self.conn.name)


def _challenge(conn: QuicConn, path: QuicPath) -> FrameSeen | None:
    """The server's PATH_CHALLENGE that the validating PATH_RESPONSE answered, else its first
    to the path."""
    challenges = [f for f in conn.frames if not f.from_client and f.path == path.index
                  and isinstance(f.frame, PathChallenge)]
    v = path.validated
    if v is not None:
        data = getattr(v.frame, "data", None)
        answered = next((c for c in challenges if getattr(c.frame, "data", None) == data), None)
        if answered is not None:
            return answered
    return challenges[0] if challenges else None


def build_quic_handovers(facts: Facts, updates: list[DnsTransaction],
                         events: Iterable[Mapping[str, Any]] | None = None) -> list[QuicHandover]:
    """A handover per path after a connection's first that its client sent from."""
    hos: list[QuicHandover] = []
    for conn in facts.quic.conns:
        used = [p for p in conn.paths if p.first_from_client is not None]
        used.sort(key=lambda p: p.first_from_client.time if p.first_from_client else 0.0)
        for old, path in zip(used, used[1:], strict=False):
            assert path.first_from_client is not None
            h = QuicHandover(conn, path, old, path.first_from_client.time)
            h.challenge = _challenge(conn, path)
            h.retire = next((f for f in conn.frames if f.from_client and f.where.time >= h.start
                             and isinstance(f.frame, RetireConnectionId)), None)
            hos.append(h)
    hos.sort(key=lambda h: h.start)
    assign_updates(hos, updates)
    evs = parse_events(events) if events is not None else None
    starts = [h.start for h in hos]
    for i, h in enumerate(hos):
        lo, hi = window(starts, i)
        h.floors = link_floors(facts, h.address, lo, h.start, hi)
        if h.challenge is not None and h.path.validated is not None:
            sent = h.challenge.where
            h.floors["path_challenge"] = Floor("PATH_CHALLENGE → PATH_RESPONSE", sent,
                                               facts.seen_at(h.path.validated.where, sent.pcap))
        dns = dns_floor(h.dns, facts)
        if dns is not None:
            h.floors["dns"] = dns
        if evs is not None:
            h.events = match_events(evs, h.address, h.old_address, h.start, lo, hi)
        mark_missing(h, given=evs is not None)
    return hos


__all__ = ["QUIC_PHASES", "QuicHandover", "build_quic_handovers"]
