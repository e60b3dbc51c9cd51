"""The SCTP part of the pass over the captures: each kept SCTP packet updates the SCTP facts —
per-direction TSN counters for DATA, the decoded control chunks (ASCONF, ASCONF-ACK, AUTH,
INIT, INIT-ACK, HEARTBEAT, HEARTBEAT-ACK, ABORT) — and SACK passes with nothing to keep.

Bulk traffic never becomes a dataclass: a DATA chunk is its TSN counted against its
direction's ``Flow``, straight from the framing (``decode.sctp.chunk_spans``, or the pass's
one-read test of a packet of one chunk); only the rare control chunks are decoded. Directions
are keyed by the SCTP header triple ``(sport, dport, verification tag)``: IP addresses change
during a handover, ports and tags do not, and the tag also separates the two directions when
both ends use the same port.
"""

from __future__ import annotations

from testbed.conformance.facts import (
    AbortSeen,
    AckSeen,
    AsconfSeen,
    AuthVectors,
    DataSeen,
    Facts,
    Flow,
    HeartbeatSent,
    InitSeen,
    Key,
    PathConfirmed,
)
from testbed.conformance.where import Where
from testbed.decode import sctp_auth
from testbed.decode.link import ntop
from testbed.decode.sctp import (
    ABORT,
    AUTH,
    DATA,
    HEARTBEAT,
    HEARTBEAT_ACK,
    INIT,
    INIT_ACK,
    SACK,
    AsconfAckChunk,
    AsconfChunk,
    AuthChunk,
    Chunk,
    ErrorChunk,
    GenericChunk,
    InitChunk,
    MalformedChunk,
    Span,
    chunk_spans,
    decode_chunk,
)

_MASK = 0xFFFFFFFF
_HALF = 1 << 31
_MAX_GAP = 1 << 20  # a forward TSN jump larger than this is reported, not enumerated
_MAX_HEARTBEATS = 4096  # unanswered HEARTBEATs remembered (oldest dropped)
_DATA_MIN = 16  # a DATA chunk shorter than this is malformed (decode_chunk says why)


class SctpTracker:
    """Feeds the SCTP facts of ``f`` one packet at a time (input in capture order).

    ``one`` takes a packet of a single chunk already framed by the caller (the pass's fast
    path), ``packet`` any SCTP packet. Both return where the packet was captured when it is
    kept (it carried a control chunk: its later copies are noted against it), else None.
    """

    __slots__ = ("f", "flows", "heartbeats", "informed", "init_vectors", "inits", "pcaps", "watch")

    def __init__(self, f: Facts) -> None:
        self.f = f
        self.flows = f.flows
        self.pcaps = f.pcaps
        # ASCONF-ACKs and path confirmations waiting for the first new DATA in their direction
        self.watch: dict[Key, list[AckSeen | PathConfirmed]] = {}
        # the confirmations waiting there whose peer has shown it took them in (see first_data)
        self.informed: set[int] = set()
        self.heartbeats: dict[bytes, tuple[Key, str]] = {}  # HEARTBEAT info → (its key, its dst)
        self.inits: dict[Key, int] = {}  # (sport, dport, own tag) of an INIT → its initial TSN
        self.init_vectors: dict[Key, bytes | None] = {}  # the same key → its AUTH key vector

    # -- the hot path --------------------------------------------------------------------------
    def one(self, data: bytes, l4: int, end: int, hdr: Key, ctype: int, clen: int, word: int,
            src: bytes, dst: bytes, pidx: int, fno: int, ts: float) -> Where | None:
        """A packet whose only chunk (type ``ctype``, length ``clen``, first value word ``word``)
        starts right after the common header at ``l4``: the next TSN of a known direction is
        counted here, a SACK needs nothing, the rest goes the way ``packet`` takes."""
        if ctype == DATA and clen >= _DATA_MIN:
            fl = self.flows.get(hdr)
            if fl is not None and (word - fl.last) & _MASK == 1:
                fl.high += 1
                fl.last = word
                fl.chunks += 1
                if self.watch and hdr in self.watch:
                    self.first_data(hdr, word, src, dst, pidx, fno, ts)
            else:
                self.data(hdr, word, src, dst, pidx, fno, ts)
            return None
        if ctype == SACK:
            if self.watch and hdr in self.watch:
                self.peer_acked(hdr, word)
            return None
        return self.chunks(data, end, hdr, ((ctype, l4 + 12, clen, word),), None, src, dst, pidx, fno, ts)

    def packet(self, data: bytes, l4: int, end: int, src: bytes, dst: bytes, pidx: int, fno: int,
               ts: float) -> Where | None:
        """Any SCTP packet at ``data[l4:end]``: framed, then chunk by chunk."""
        hdr, spans, fault = chunk_spans(data, l4, end)
        if hdr is None:
            self.f.note_malformed(Where(self.pcaps[pidx], fno, ts), str(fault))
            return None
        return self.chunks(data, end, hdr, spans, fault, src, dst, pidx, fno, ts)

    def chunks(self, data: bytes, end: int, hdr: Key, spans: list[Span] | tuple[Span, ...],
               fault: str | None, src: bytes, dst: bytes, pidx: int, fno: int,
               ts: float) -> Where | None:
        """The chunks of one packet in order; ``fault`` is the framing error after the last
        span, if any. An AUTH chunk covers the chunks after it (RFC 4895 §6.2)."""
        auth = None
        covered = None
        kept = None
        for ctype, p, clen, word in spans:
            if ctype == DATA and clen >= _DATA_MIN:
                self.data(hdr, word, src, dst, pidx, fno, ts)
            elif ctype == SACK:
                if self.watch and hdr in self.watch:
                    self.peer_acked(hdr, word)
            else:  # the rest are rare
                ch = decode_chunk(data, p, clen)
                if isinstance(ch, MalformedChunk):
                    fault = fault or f"SCTP chunk type {ch.type}: {ch.reason}"
                    break
                kept = Where(self.pcaps[pidx], fno, ts)
                if ctype == AUTH:
                    covered = sctp_auth.covered(data, p, clen, end)
                auth = self.control(ch, hdr, src, dst, auth, kept, covered)
        if fault:
            self.f.note_malformed(Where(self.pcaps[pidx], fno, ts), fault)
        return kept

    # -- DATA ----------------------------------------------------------------------------------
    def data(self, hdr: Key, tsn: int, src: bytes, dst: bytes, pidx: int, fno: int, ts: float) -> None:
        """One DATA chunk's TSN in its direction."""
        fl = self.flows.get(hdr)
        if fl is None:
            self.flows[hdr] = Flow(tsn, tsn, src=ntop(src), dst=ntop(dst))
        elif (tsn - fl.last) & _MASK == 1:
            fl.high += 1
            fl.last = tsn
            fl.chunks += 1
        elif not self.tsn_slow(fl, tsn, pidx, fno, ts):
            return
        if self.watch and hdr in self.watch:
            self.first_data(hdr, tsn, src, dst, pidx, fno, ts)

    def first_data(self, hdr: Key, tsn: int, src: bytes, dst: bytes, pidx: int, fno: int, ts: float) -> None:
        """New DATA in a direction with an ASCONF-ACK or path confirmation waiting for it. A
        confirmation waits on until its peer has shown it took it in: a DATA the peer sent
        before may have been built answering a packet it took in before the confirmation (it
        processes them in turn; a SACK from the MN releasing DATA held back, say), when the
        path was not its to use yet."""
        seen = DataSeen(Where(self.pcaps[pidx], fno, ts), ntop(src), ntop(dst), tsn)
        still = []
        for waiting in self.watch.pop(hdr):
            if isinstance(waiting, PathConfirmed) and id(waiting) not in self.informed:
                still.append(waiting)
            else:
                waiting.first_data_back = seen
                self.informed.discard(id(waiting))
        if still:
            self.watch[hdr] = still

    def peer_acked(self, hdr: Key, cum: int) -> None:
        """A SACK in ``hdr``'s direction, acknowledging up to ``cum``: the peer has taken in the
        confirmations waiting there whose sender's DATA from after them it acknowledges."""
        for w in self.watch[hdr]:
            if isinstance(w, PathConfirmed) and w.acked_before is not None \
                    and 0 < (cum - w.acked_before) & _MASK < 1 << 31:  # cum after acked_before
                self.informed.add(id(w))

    def tsn_slow(self, fl: Flow, tsn: int, pidx: int, fno: int, ts: float) -> bool:
        """Anything but the next TSN: a jump forward (gap) or an old TSN (fill or duplicate).
        True when the TSN is new."""
        d = (tsn - fl.last) & _MASK
        fl.chunks += 1
        if d == 0:
            fl.duplicates += 1
            return False
        if d < _HALF:  # forward: TSNs high+1 .. high+d-1 are missing for now
            where = Where(self.pcaps[pidx], fno, ts)
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

    # -- control chunks ------------------------------------------------------------------------
    def control(
        self, ch: Chunk, hdr: Key, src: bytes, dst: bytes, auth: AuthChunk | None, where: Where,
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
            self.init(ch, hdr, src, dst, where)
        elif isinstance(ch, GenericChunk) and ch.type == HEARTBEAT:
            if len(self.heartbeats) >= _MAX_HEARTBEATS:
                del self.heartbeats[next(iter(self.heartbeats))]
            self.heartbeats[ch.value] = (hdr, ntop(dst))
            f.heartbeats.append(HeartbeatSent(where, hdr, ntop(dst)))
        elif isinstance(ch, GenericChunk) and ch.type == HEARTBEAT_ACK:
            sent = self.heartbeats.pop(ch.value, None)  # the ACK echoes the HEARTBEAT's info
            if sent is not None:
                mine = self.flows.get(hdr)  # the DATA the ACK's sender had sent up to now
                conf = PathConfirmed(where, sent[0], sent[1], mine.last if mine is not None else None)
                if conf.acked_before is None:  # no DATA of its sender's: no proof to wait for
                    self.informed.add(id(conf))
                f.confirmations.append(conf)
                self.watch.setdefault(sent[0], []).append(conf)
        elif isinstance(ch, ErrorChunk) and ch.type == ABORT:
            sport, dport, vtag = hdr
            # an ABORT answering an INIT carries that INIT's initiate tag (RFC 9260 §8.4)
            init = (dport, sport, vtag)
            refused = init if init in f.inits and init not in f.answered_inits else None
            f.aborts.append(AbortSeen(where, hdr, ntop(src), ntop(dst), ch, refused))
        return auth

    def init(self, ch: InitChunk, hdr: Key, src: bytes, dst: bytes, where: Where) -> None:
        """INIT or INIT-ACK: the addresses offered, the initial TSNs and the AUTH key vectors."""
        f = self.f
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
