"""The TCP part of the pass over the captures: each kept TCP segment (DNS aside) updates the
``TcpFacts`` — MPTCP subflows and connections, signals, data-level coverage — or the
bookkeeping of a plain TCP connection.

A segment is MPTCP when its subflow is known (its SYN carried MP_CAPABLE or MP_JOIN) or when it
carries an MPTCP option itself (a capture that began mid-connection). Data-level sequence
numbers come from DSS mappings; the first data of the MP_CAPABLE initiator may instead carry
MP_CAPABLE with a data length, whose first byte is the initiator's IDSN + 1 (RFC 8684 §3.1).
A 32-bit DSN is expanded with the high bits of the highest one seen on that side.
"""

from __future__ import annotations

import struct

from testbed.conformance.tcp_facts import (
    FourTuple,
    MptcpConn,
    MptcpSignal,
    Subflow,
    TcpConn,
    TcpFacts,
    TcpFlow,
)
from testbed.conformance.where import Where
from testbed.decode.fault import DecodeFault
from testbed.decode.link import ntop
from testbed.decode.mptcp import (
    DSS,
    DSS_ACK64,
    DSS_DATA_FIN,
    DSS_DSN64,
    Dss,
    DssFields,
    MpCapable,
    MpJoin,
    MpOther,
    MpPrio,
    decode_mptcp,
    dss_fields,
)
from testbed.decode.tcp import ACK, FIN, RST, SYN, mptcp_spans

_MASK32 = 0xFFFFFFFF
_FASTCLOSE = 7


def _expand(value: int, wide: bool, near: int | None) -> int:
    """A 64-bit data sequence number from a 32-bit one, next to ``near``."""
    if wide or near is None:
        return value
    cand = (near & ~_MASK32) | value
    if cand - near > 1 << 31:
        cand -= 1 << 32
    elif near - cand > 1 << 31:
        cand += 1 << 32
    return cand


def prio_grace(sf: Subflow | None) -> float:
    """Two round trips of the subflow (its handshake, SYN → SYN/ACK), and at least 1 ms."""
    rtt = sf.synack.time - sf.syn.time if sf and sf.syn and sf.synack else 0.0
    return max(0.001, 2 * rtt)


class TcpTracker:
    """Feeds ``TcpFacts`` one segment at a time (input in capture order)."""

    def __init__(self) -> None:
        self.f = TcpFacts()
        self._by_keys: dict[tuple[int, int], MptcpConn] = {}
        self._by_token: dict[int, tuple[MptcpConn, str]] = {}  # token → connection, its side
        self._prio_watch: list[MptcpSignal] = []
        self._names: dict[bytes, str] = {}  # packed address → text, once per address

    def name(self, raw: bytes) -> str:
        text = self._names.get(raw)
        if text is None:
            text = self._names[raw] = ntop(raw)
        return text

    # -- lookup ------------------------------------------------------------------------------
    def _subflow(self, t: FourTuple) -> Subflow | None:
        sf = self.f.subflows.get(t)
        return sf if sf is not None else self.f.subflows.get((t[2], t[3], t[0], t[1]))

    def _plain(self, t: FourTuple) -> TcpConn | None:
        c = self.f.plain.get(t)
        return c if c is not None else self.f.plain.get((t[2], t[3], t[0], t[1]))

    def _conn(self, key_a: int, key_b: int, where: Where) -> MptcpConn:
        c = self._by_keys.get((key_a, key_b))
        if c is None:
            c = MptcpConn(key_a, key_b, where)
            self._by_keys[(key_a, key_b)] = c
            self._by_token[c.token_a] = (c, "a")
            self._by_token[c.token_b] = (c, "b")
            self.f.mptcp.append(c)
        return c

    @staticmethod
    def _attach(sf: Subflow, conn: MptcpConn, client_side: str) -> None:
        if sf.conn is None:
            sf.conn, sf.client_side = conn, client_side
            conn.subflows.append(sf)

    # -- the segment -------------------------------------------------------------------------
    def segment(self, where: Where, src_raw: bytes, dst_raw: bytes, buf: bytes, l4: int, end: int,
                header: tuple[int, int, int, int, int, int]) -> bool:
        """Account one segment (addresses packed); True when it is worth keeping as a control
        packet (a handshake, an end, an MPTCP signal), False for plain data and ACKs."""
        sport, dport, seq, ack, flags, hlen = header
        self.f.packets += 1
        src, dst = self.name(src_raw), self.name(dst_raw)
        t = (src, sport, dst, dport)
        payload = end - l4 - hlen
        opts: list[object] = []
        dss: list[DssFields] = []
        if hlen > 20:
            spans, _fault = mptcp_spans(buf, l4 + 20, l4 + hlen)
            syn, has_ack = bool(flags & SYN), bool(flags & ACK)
            for p, n in spans:
                if n >= 4 and buf[p + 2] >> 4 == DSS:  # every data packet's: no dataclass
                    try:
                        dss.append(dss_fields(buf, p, n))
                        continue
                    except (DecodeFault, struct.error, IndexError):
                        pass  # decoded below, as a MalformedOption
                opts.append(decode_mptcp(buf, p, n, syn=syn, ack=has_ack, data=payload > 0))
        sf = self._subflow(t)
        control = bool(flags & (SYN | FIN | RST))
        if sf is None and not opts and not dss:
            self._plain_segment(where, t, seq, ack, flags, payload)
            return control
        self.f.mptcp_packets += 1
        if sf is None:
            if self._plain(t) is not None:  # an option on a connection begun as plain TCP
                self._plain_segment(where, t, seq, ack, flags, payload)
                return control
            sf = Subflow((src, sport), (dst, dport), where)
            self.f.subflows[t] = sf
        if control or (sf.established is None and sf.ack is not None):
            self._handshake(sf, where, t, flags)
        for fields in dss:
            self._dss(sf, where, t, fields)
        for o in opts:
            control |= self._option(sf, where, t, flags, payload, o)
        if payload > 0:
            sf.data_packets += 1
            sf.last_data = where
        return control

    def _handshake(self, sf: Subflow, where: Where, t: FourTuple, flags: int) -> None:
        from_client = (t[0], t[1]) == sf.client
        if flags & RST and sf.reset is None:
            sf.reset = where
        if flags & FIN and sf.fin is None:
            sf.fin = where
        if flags & SYN:
            if flags & ACK:
                sf.synack = sf.synack or where
            else:
                sf.syn = sf.syn or where
        elif (not from_client and flags & ACK and sf.ack is not None and sf.established is None
              and where.time >= sf.ack.time):
            sf.established = where

    def _option(self, sf: Subflow, where: Where, t: FourTuple, flags: int, payload: int, o: object) -> bool:
        if isinstance(o, Dss):  # (a DSS that failed the fast read: malformed, kept as such)
            return False
        if isinstance(o, MpCapable):
            self._capable(sf, where, t, flags, payload, o)
            return True
        if isinstance(o, MpJoin):
            self._join(sf, where, o)
        sig = MptcpSignal(where, (t[0], t[1]), (t[2], t[3]), flags, o, sf)  # type: ignore[arg-type]
        self.f.signals.append(sig)
        if isinstance(o, MpPrio):
            self._prio_watch.append(sig)
        elif isinstance(o, MpOther) and o.subtype == _FASTCLOSE and sf.conn is not None:
            sf.conn.fastclose = sf.conn.fastclose or where
        return True

    def _capable(self, sf: Subflow, where: Where, t: FourTuple, flags: int, payload: int,
                 o: MpCapable) -> None:
        if flags & SYN and not flags & ACK:
            sf.syn = sf.syn or where
            return
        if flags & SYN or o.sender_key is None or o.receiver_key is None:
            return
        # third ACK (or the first data): the sender is the initiator, side "a"
        conn = self._conn(o.sender_key, o.receiver_key, sf.first)
        self._attach(sf, conn, "a" if (t[0], t[1]) == sf.client else "b")
        if sf.ack is None and (t[0], t[1]) == sf.client:
            sf.ack = where
        if o.data_len and payload > 0:
            lo = conn.idsn("a") + 1
            conn.flows["a"].cover(lo, lo + o.data_len, where)

    def _join(self, sf: Subflow, where: Where, o: MpJoin) -> None:
        sf.join = True
        if o.step == "syn":
            sf.backup, sf.addr_id, sf.token, sf.nonce_client = o.backup, o.addr_id, o.token, o.nonce
            found = self._by_token.get(o.token or 0)
            if found is not None:  # the token names the receiver: the joiner is the other side
                conn, receiver = found
                self._attach(sf, conn, "b" if receiver == "a" else "a")
        elif o.step == "synack":
            sf.nonce_server, sf.thmac_server, sf.server_addr_id = o.nonce, o.hmac, o.addr_id
        else:
            sf.hmac_client = o.hmac
            sf.ack = sf.ack or where

    def _dss(self, sf: Subflow, where: Where, t: FourTuple, fields: DssFields) -> None:
        conn = sf.conn
        if conn is None:
            return
        side = sf.side_of(t[0], t[1])
        if side is None:
            return
        flags, data_ack, dsn, _ssn, data_len = fields
        fin = bool(flags & DSS_DATA_FIN)
        mine, theirs = conn.flows[side], conn.flows["b" if side == "a" else "a"]
        if dsn is not None and data_len is not None:
            lo = _expand(dsn, bool(flags & DSS_DSN64), mine.high)
            length = data_len - (1 if fin and data_len else 0)
            new = length > 0 and (mine.high is None or lo + length > mine.high)
            mine.cover(lo, lo + length, where)
            if new and self._prio_watch:
                self._first_data(sf, where, side)
        if data_ack is not None:
            theirs.acked(_expand(data_ack, bool(flags & DSS_ACK64), theirs.high), where)
        if fin and mine.data_fin is None:
            mine.data_fin = where

    def _first_data(self, sf: Subflow, where: Where, side: str) -> None:
        """The first new data (at the data level) each pending MP_PRIO's other side sent once
        it can have known of it: later than ``prio_grace`` after the MP_PRIO was captured
        (data scheduled while the MP_PRIO was in flight may still take the old subflow)."""
        keep = []
        for sig in self._prio_watch:
            if sig.conn is sf.conn and sig.side not in (None, side) \
                    and where.time >= sig.where.time + prio_grace(sig.subflow):
                sig.first_data_after = (where, sf)
            else:
                keep.append(sig)
        self._prio_watch = keep

    # -- plain TCP ---------------------------------------------------------------------------
    def _plain_segment(self, where: Where, t: FourTuple, seq: int, ack: int, flags: int,
                       payload: int) -> None:
        c = self._plain(t)
        if c is None:
            if flags & SYN and flags & ACK:  # the SYN/ACK is the first we see: the server sent it
                c = TcpConn((t[2], t[3]), (t[0], t[1]), where)
            else:
                c = TcpConn((t[0], t[1]), (t[2], t[3]), where, syn=bool(flags & SYN))
            self.f.plain[t] = c
        c.last = where
        me, peer = (t[0], t[1]), (t[2], t[3])
        if flags & RST and c.reset is None:
            c.reset, c.reset_by = where, me
        if flags & FIN and me not in c.fins:
            c.fins[me] = where
        syn = 1 if flags & SYN else 0
        mine = c.flows.get(me)
        if mine is None:
            mine = c.flows[me] = TcpFlow(seq + syn)
        end = (seq - mine.base + syn + payload + (1 if flags & FIN else 0)) & _MASK32
        if payload > 0 or flags & FIN:
            mine.packets += 1
            if end <= mine.high:
                mine.retransmissions += 1
                mine.first_unanswered = mine.first_unanswered or where
            else:
                mine.high = end
            mine.last_sent = where
            if mine.last_progress is None:
                mine.last_progress = where
        theirs = c.flows.get(peer)
        if flags & ACK and theirs is not None:
            rel = (ack - theirs.base) & _MASK32
            if rel > theirs.acked:
                if theirs.last_progress is not None and theirs.high > theirs.acked:
                    stalled = where.time - theirs.last_progress.time
                    if stalled > theirs.longest_stall:
                        theirs.longest_stall, theirs.stall_from = stalled, theirs.last_progress
                theirs.acked, theirs.last_progress, theirs.first_unanswered = rel, where, None


__all__ = ["TcpTracker", "prio_grace"]
