"""Pairing requests with answers: ASCONF with ASCONF-ACK, DNS UPDATE with its response."""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.conformance.facts import AckSeen, AsconfSeen, DnsSeen, Facts, Key
from testbed.decode.dns import CLASS_IN, OPCODE_UPDATE, TYPE_A, TYPE_AAAA, DNSMessage
from testbed.decode.sctp import ERROR_CAUSE_IND, SUCCESS_IND, AsconfParam


@dataclass(slots=True)
class AsconfExchange:
    """One ASCONF serial from one sender: its transmissions and the ACKs that answered it."""

    sender: Key
    serial: int
    sends: list[AsconfSeen]
    acks: list[AckSeen] = field(default_factory=list)

    @property
    def first(self) -> AsconfSeen:
        return self.sends[0]

    @property
    def ack(self) -> AckSeen | None:
        return self.acks[0] if self.acks else None

    @property
    def answered_send(self) -> AsconfSeen:
        """The transmission the ACK answers: the last one sent before it (retransmissions
        after a lost ASCONF count from the copy that got through)."""
        if self.ack is None:
            return self.first
        t = self.ack.where.time
        return ([s for s in self.sends if s.where.time <= t] or [self.first])[-1]

    def outcomes(self) -> list[tuple[int, AsconfParam, str | None]]:
        """``(index, request parameter, failure reason or None)`` per request parameter.

        RFC 5061 §5.3: a parameter without a response is implicitly successful (Linux sends an
        empty ASCONF-ACK on success) unless it follows one reported as failed: the peer stops
        at the first error, so later parameters without an explicit success were not applied.
        """
        ack = self.ack
        if ack is None:
            return []
        resp = {p.correlation_id: p for p in ack.chunk.params if p.type in (SUCCESS_IND, ERROR_CAUSE_IND)}
        out: list[tuple[int, AsconfParam, str | None]] = []
        failed = False
        for i, param in enumerate(self.first.chunk.params):
            r = resp.get(param.correlation_id)
            if r is not None and r.type == ERROR_CAUSE_IND:
                causes = ", ".join(c.name for c in r.causes) or "no cause given"
                out.append((i, param, f"error cause: {causes}"))
                failed = True
            elif r is None and failed:
                out.append((i, param, "not processed: follows a failed parameter"))
            else:
                out.append((i, param, None))
        return out


def asconf_exchanges(facts: Facts) -> tuple[list[AsconfExchange], list[AckSeen]]:
    """Group ASCONFs by (sender, serial) and attach each ACK; return also ACKs matching nothing.

    An ACK answers the latest earlier ASCONF with the same serial sent on the reversed port
    pair (addresses change in a handover, ports do not). With equal ports on both ends the
    verification tags must differ, which tells the two directions apart.
    """
    by_id: dict[tuple[Key, int], AsconfExchange] = {}
    for a in facts.asconfs:
        ex = by_id.get((a.key, a.chunk.serial))
        if ex is None:
            by_id[(a.key, a.chunk.serial)] = AsconfExchange(a.key, a.chunk.serial, [a])
        else:
            ex.sends.append(a)
    by_serial: dict[tuple[int, int, int], list[AsconfExchange]] = {}
    for ex in by_id.values():
        by_serial.setdefault((ex.sender[0], ex.sender[1], ex.serial), []).append(ex)
    orphans: list[AckSeen] = []
    for ack in facts.acks:
        sport, dport, vtag = ack.key
        cands = [
            ex
            for ex in by_serial.get((dport, sport, ack.chunk.serial), [])
            if ex.first.where.time <= ack.where.time and (sport != dport or ex.sender[2] != vtag)
        ]
        if cands:
            max(cands, key=lambda ex: ex.first.where.time).acks.append(ack)
        else:
            orphans.append(ack)
    exchanges = sorted(by_id.values(), key=lambda ex: (ex.first.where.time, ex.serial))
    return exchanges, orphans


@dataclass(slots=True)
class DnsTransaction:
    """A DNS request (first copy), its retransmissions and the first response."""

    request: DnsSeen
    resends: list[DnsSeen] = field(default_factory=list)  # retransmissions before the response
    response: DnsSeen | None = None

    @property
    def msg(self) -> DNSMessage:
        return self.request.msg

    @property
    def retries(self) -> int:
        return len(self.resends)

    @property
    def answered_send(self) -> DnsSeen:
        """The transmission the response answers: the last one sent before it."""
        if self.response is None:
            return self.request
        t = self.response.where.time
        return ([s for s in (self.request, *self.resends) if s.where.time <= t] or [self.request])[-1]


def dns_transactions(facts: Facts, opcode: int = OPCODE_UPDATE) -> list[DnsTransaction]:
    """Pair requests of ``opcode`` with responses by (client address+port, server, id)."""
    open_tx: dict[tuple[object, ...], DnsTransaction] = {}
    out: list[DnsTransaction] = []
    for d in facts.dns:
        if d.msg.opcode != opcode:
            continue
        k = (d.client, d.server[0], d.msg.id)
        tx = open_tx.get(k)
        if not d.msg.qr:
            if tx is not None and tx.response is None:
                tx.resends.append(d)
                continue
            tx = DnsTransaction(d)
            open_tx[k] = tx
            out.append(tx)
        elif tx is not None and tx.response is None:
            tx.response = d
    return out


def norm_name(name: str) -> str:
    """Lower-case, fully qualified form used to compare DNS names."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def update_owners(msg: DNSMessage) -> set[str]:
    """Owner names an UPDATE touches (prerequisites and updates)."""
    return {norm_name(r.name) for r in (*msg.prerequisites, *msg.updates)}


def added_addresses(msg: DNSMessage) -> set[str]:
    """Addresses an UPDATE adds (class IN A/AAAA records in the update section)."""
    return {
        r.value
        for r in msg.updates
        if r.rclass == CLASS_IN and r.type in (TYPE_A, TYPE_AAAA) and r.value is not None
    }
