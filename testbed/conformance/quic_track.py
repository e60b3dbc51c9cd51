"""The QUIC part of the pass over the captures: each UDP datagram that is not DNS, DHCP or SCTP
and looks like QUIC is decrypted and its frames update the ``QuicFacts``.

Any UDP flow whose datagrams carry QUIC long headers is a candidate: a client's Initial to a
Destination Connection ID not seen before opens a connection. Its Initial keys come from that
DCID (RFC 9001 §5.2; from the Retry's Source Connection ID after a Retry, RFC 9000 §17.2.5;
for the version each packet names, RFC 9368 lets the server switch to v2). The ClientHello's
random names the connection in the keylog, whose secrets give the Handshake and 1-RTT keys;
the ServerHello's cipher suite fixes their AEAD. Short headers are matched against the
connection IDs each end issued (its handshake Source Connection ID, NEW_CONNECTION_ID), which
also tells the direction: a packet goes to the end that issued its DCID.

Copies of a datagram captured at several points (both sides of a NAT) are recognised by the
extractor from the UDP payload alone; ``copy_seen`` records the other addresses as aliases of
the first ones, so the server's view of a path and the client's are one path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from testbed.conformance import quic_streams
from testbed.conformance.quic_facts import (
    Addr,
    CidInfo,
    FrameSeen,
    QuicConn,
    QuicFacts,
    QuicPath,
    StreamFlow,
)
from testbed.conformance.where import Where
from testbed.decode.keylog import CLIENT_1RTT, CLIENT_HANDSHAKE, SERVER_1RTT, SERVER_HANDSHAKE, Keylog
from testbed.decode.quic_crypto import (
    TAG_LEN,
    TLS_AES_128_GCM_SHA256,
    TLS_AES_256_GCM_SHA384,
    TLS_CHACHA20_POLY1305_SHA256,
    VERSIONS,
    Protection,
    initial_protection,
    next_generation,
    protection,
    retry_tag_valid,
)
from testbed.decode.quic_frames import (
    AckFrame,
    ConnectionClose,
    CryptoFrame,
    HandshakeDone,
    NewConnectionId,
    PathChallenge,
    PathResponse,
    RetireConnectionId,
    StreamFrame,
    parse_frames,
)
from testbed.decode.quic_packet import (
    HANDSHAKE,
    INITIAL,
    KEY_PHASE,
    ONE_RTT,
    RETRY,
    SPIN_BIT,
    VERSION_NEGOTIATION,
    ZERO_RTT,
    PacketFault,
    decode_packet_number,
    long_header,
    remove_header_protection,
)
from testbed.decode.tls import client_hello_random, server_hello_suite

_MAX_EXAMPLES = 20
_MAX_GAPS = 256  # recent uncaptured packet number ranges kept per sender
_MAX_DATAGRAM = 1500  # larger ones on Ethernet are several datagrams' UDP GSO buffer
_SPACES = {INITIAL: 0, HANDSHAKE: 1, ZERO_RTT: 2, ONE_RTT: 2}  # packet number spaces (RFC 9000 §12.3)
# of each side's Initial CRYPTO stream: enough for the ClientHello's random, the ServerHello's suite
_HELLO_BYTES = 128


@dataclass(slots=True)
class _Keys:
    """One sender's 1-RTT keys: the current generation, the one before it (packets reordered
    across a key update) and the next, derived when first needed (RFC 9001 §6.3, §6.5)."""

    current: Protection
    previous: Protection | None = None
    following: Protection | None = None

    def next(self) -> Protection:
        if self.following is None:
            self.following = next_generation(self.current)
        return self.following


@dataclass(slots=True)
class _State:
    """A connection's decryption state (not part of the facts)."""

    conn: QuicConn
    initial_dcid: bytes
    initial: dict[int, tuple[Protection, Protection]] = field(default_factory=dict)  # by version
    handshake: dict[bool, Protection] = field(default_factory=dict)  # by sender is client
    app: dict[bool, _Keys] = field(default_factory=dict)
    largest: dict[tuple[bool, int], int] = field(default_factory=dict)
    hello: dict[bool, bytes] = field(default_factory=dict)  # start of each side's Initial CRYPTO stream
    spin: dict[bool, int] = field(default_factory=dict)
    client_initial: Where | None = None
    negotiated: int | None = None  # the version of the server's Initial (RFC 9368 may switch it)
    # 1-RTT packet numbers each end acknowledged (by the acknowledger is client)
    acked: dict[bool, quic_streams.Acked] = field(default_factory=dict)
    gaps: dict[bool, list[tuple[int, int]]] = field(default_factory=dict)  # 1-RTT numbers not captured

    def initial_keys(self, version: int, from_client: bool) -> Protection:
        pair = self.initial.get(version)
        if pair is None:
            pair = self.initial[version] = initial_protection(self.initial_dcid, version)
        return pair[0] if from_client else pair[1]


_GUESS = {48: TLS_AES_256_GCM_SHA384, 32: TLS_AES_128_GCM_SHA256}


class QuicTracker:
    """Feeds ``QuicFacts`` one datagram at a time (input in capture order)."""

    def __init__(self, keylog: Keylog | None, window: float = 0.5) -> None:
        self.f = QuicFacts()
        self.keylog = keylog
        self.cids: dict[bytes, tuple[_State, bool]] = {}  # DCID → (connection, receiver is client)
        self.lengths: tuple[int, ...] = ()  # the lengths of the connection IDs seen, for short headers
        self.window = window
        self._recent: dict[bytes, tuple[Addr, Addr]] = {}  # payload → (src, dst) of its first copy
        self._order: deque[tuple[float, bytes]] = deque()

    # -- bookkeeping -----------------------------------------------------------------------------
    def fail(self, where: Where, reason: str, *, no_keys: bool = False) -> None:
        f = self.f
        if no_keys:
            f.no_keys += 1
        else:
            f.failed += 1
        f.failures[reason] = f.failures.get(reason, 0) + 1
        if not no_keys and len(f.failure_examples) < _MAX_EXAMPLES:
            f.failure_examples.append({"pcap": where.pcap, "frame": where.frame, "time": where.time,
                                       "reason": reason})

    def _register(self, cid: bytes, st: _State, receiver_is_client: bool) -> None:
        if not cid:
            return
        self.cids[cid] = (st, receiver_is_client)
        if len(cid) not in self.lengths:
            self.lengths = tuple(sorted({*self.lengths, len(cid)}))

    def canonical(self, a: Addr) -> Addr:
        return self.f.alias.get(a, a)

    # -- copies (the extractor's dedup) ----------------------------------------------------------
    def remember(self, ts: float, payload: bytes, src: Addr, dst: Addr) -> None:
        """A kept datagram's addresses, for its copies captured elsewhere within the window."""
        self._recent[payload] = (src, dst)
        order = self._order
        order.append((ts, payload))
        while order and ts - order[0][0] > self.window:
            _t, old = order.popleft()
            self._recent.pop(old, None)

    def copy_seen(self, payload: bytes, src: Addr, dst: Addr) -> None:
        """A copy of a kept datagram with other addresses: a NAT between the capture points."""
        first = self._recent.get(payload)
        if first is None:
            return
        alias = self.f.alias
        for mine, theirs in ((first[0], src), (first[1], dst)):
            canon = alias.get(mine, mine)
            if canon != theirs and theirs not in alias:
                alias[theirs] = canon

    # -- the datagram ----------------------------------------------------------------------------
    def datagram(self, where: Where, src: Addr, dst: Addr, data: bytes, p: int, end: int) -> bool | None:
        """Account one UDP payload ``data[p:end]``; None when it is not QUIC (no long header
        and no known connection ID), else True when it carried a frame worth citing (kept as a
        control packet: its copies are noted for timing), False otherwise."""
        first = data[p]
        if not first & 0x80:
            hit = self._short_lookup(data, p, end)
            if hit is None:
                if self.cids:
                    self.f.unknown_cid += 1
                return None
            self.f.datagrams += 1
            st, to_client, n = hit
            return self._short(st, not to_client, n, where, src, dst, data, p, end)
        self.f.datagrams += 1
        keep = False
        size = end - p
        seen: set[int] = set()
        while p < end:
            if not data[p] & 0x80:  # a short header ends the datagram (RFC 9000 §12.2)
                hit = self._short_lookup(data, p, end)
                if hit is None:
                    if data[p] & 0x40:  # else padding after the last packet (zeros), not a packet
                        self.fail(where, "1-RTT packet after a long header matches no connection ID")
                    break
                keep |= self._short(hit[0], not hit[1], hit[2], where, src, dst, data, p, end,
                                    counted=id(hit[0]) in seen)
                break
            try:
                h = long_header(data, p, end)
            except PacketFault as e:
                self.f.packets += 1
                self.fail(where, str(e))
                break
            self.f.packets += 1
            if h.kind is None:
                self.f.other_versions[h.version] = self.f.other_versions.get(h.version, 0) + 1
                break
            if h.kind == VERSION_NEGOTIATION:
                break
            st, from_client = self._long_conn(h, where, src, dst)
            if st is None:
                self.fail(where, f"{h.kind} packet to DCID {h.dcid.hex()} of no captured connection",
                          no_keys=True)
                p = h.end
                continue
            if id(st) not in seen:  # paths and amplification count datagrams, once each
                seen.add(id(st))
                self._path_bytes(st, from_client, where, src, dst, size)
            if h.kind == RETRY:
                self._retry(st, h, data, where)
                keep = True
                break
            keep |= self._open_long(st, h, from_client, where, src, dst, data)
            p = h.end
        return keep

    def _short_lookup(self, data: bytes, p: int, end: int) -> tuple[_State, bool, int] | None:
        """(connection, receiver is client, DCID length) of a short header: the first prefix
        of a known length that is a known connection ID (RFC 9000 §17.3: the receiver chose the
        length, the header does not carry it)."""
        cids = self.cids
        for n in self.lengths:
            if p + 1 + n <= end:
                hit = cids.get(bytes(data[p + 1:p + 1 + n]))
                if hit is not None:
                    return hit[0], hit[1], n
        return None

    def _long_conn(self, h, where: Where, src: Addr, dst: Addr) -> tuple[_State | None, bool]:
        """The connection of a long-header packet and whether the client sent it."""
        hit = self.cids.get(h.dcid) if h.dcid else None
        if hit is not None:
            st, to_client = hit
            return st, not to_client
        if h.kind != INITIAL:
            return None, False
        # a client's first Initial: a new connection, keyed by its DCID
        conn = QuicConn(h.dcid, src, dst, where, h.version)
        st = _State(conn, h.dcid)
        self.f.conns.append(conn)
        self._register(h.dcid, st, False)
        if h.scid:
            self._register(h.scid, st, True)
        conn.client_cids[0] = CidInfo(h.scid, 0, where)
        conn.paths.append(QuicPath(0, src, where))
        st.client_initial = where
        return st, True

    def _retry(self, st: _State, h, data: bytes, where: Where) -> None:
        conn = st.conn
        if not retry_tag_valid(bytes(data[h.start:h.end]), conn.odcid, h.version):
            self.fail(where, "Retry integrity tag does not verify for the client's first DCID")
            return
        conn.retry = where
        self.f.decrypted += 1  # not encrypted, but authenticated by its AEAD tag
        st.initial_dcid = h.scid  # the client's next Initial keys (RFC 9001 §5.2)
        st.initial.clear()
        st.largest.clear()
        # the handshake starts again: RFC 9000 §17.2.5.2 asks for the same ClientHello, but a
        # client that builds a new one (aioquic 1.7.2 does) names the connection by that one
        st.hello.pop(True, None)
        conn.client_random = None
        self._register(h.scid, st, False)

    # -- paths -----------------------------------------------------------------------------------
    def _path(self, st: _State, client: Addr, where: Where) -> QuicPath:
        conn = st.conn
        client = self.canonical(client)
        for path in conn.paths:
            if path.client == client:
                return path
        path = QuicPath(len(conn.paths), client, where)
        conn.paths.append(path)
        return path

    def _path_bytes(self, st: _State, from_client: bool, where: Where, src: Addr, dst: Addr,
                    size: int) -> None:
        path = self._path(st, src if from_client else dst, where)
        validated = path.validated is not None or path.handshake_validated is not None or (
            path.index == 0 and st.conn.retry is not None)
        if from_client:
            if path.first_from_client is None:
                path.first_from_client = where
            if not validated:
                path.received += size
        elif not validated:
            path.sent += size
            if path.over_limit is None and path.sent > 3 * path.received:
                path.over_limit = where
                path.over_limit_bytes = (path.sent, path.received)

    # -- decryption ------------------------------------------------------------------------------
    def _open_long(self, st: _State, h, from_client: bool, where: Where, src: Addr, dst: Addr,
                   data: bytes) -> bool:
        conn = st.conn
        conn.packets += 1
        conn.versions.add(h.version)
        if h.kind == INITIAL:
            prot = st.initial_keys(h.version, from_client)
            if not from_client:
                st.negotiated = h.version
            if not from_client and h.scid and 0 not in conn.server_cids:
                conn.server_cids[0] = CidInfo(h.scid, 0, where)
                self._register(h.scid, st, False)
                if st.client_initial is not None and conn.handshake_rtt is None:
                    conn.handshake_rtt = where.time - st.client_initial.time
        elif h.kind == HANDSHAKE:
            prot = st.handshake.get(from_client)
            if from_client:
                path = self._path(st, src, where)
                if path.index == 0 and path.handshake_validated is None:
                    path.handshake_validated = where  # RFC 9000 §8.1: a Handshake packet validates
        elif h.kind == ZERO_RTT:
            prot = None
        else:
            prot = None
        if prot is None:
            self._no_keys(st, h.kind, where)
            return False
        try:
            header, pn_len, tpn = remove_header_protection(data, h.start, h.pn_offset, h.end, prot, True)
        except PacketFault as e:
            self.fail(where, f"{h.kind}: {e}")
            return False
        space = (from_client, _SPACES[h.kind])
        pn = decode_packet_number(st.largest.get(space, -1), tpn, pn_len)
        plain = prot.open(pn, header, bytes(data[h.pn_offset + pn_len:h.end]))
        if plain is None:
            self.fail(where, f"{h.kind} packet does not decrypt (AEAD tag)")
            return False
        if pn > st.largest.get(space, -1):
            st.largest[space] = pn
        self.f.decrypted += 1
        conn.decrypted += 1
        return self._frames(st, from_client, h.kind, plain, where, src, dst)

    def _no_keys(self, st: _State, kind: str, where: Where) -> None:
        conn = st.conn
        if conn.keys == "found" and kind == ZERO_RTT:
            self.fail(where, "0-RTT packet: the keylog has no CLIENT_EARLY_TRAFFIC_SECRET", no_keys=True)
        elif conn.client_random is None:
            self.fail(where, f"{kind} packet of a connection whose ClientHello was not captured",
                      no_keys=True)
        else:
            self.fail(where, f"{kind} packet: the keylog has no secrets for this ClientHello", no_keys=True)

    def _short(self, st: _State, from_client: bool, dcid_len: int, where: Where, src: Addr, dst: Addr,
               data: bytes, p: int, end: int, *, counted: bool = False) -> bool:
        conn = st.conn
        self.f.packets += 1
        conn.packets += 1
        if not counted:
            self._path_bytes(st, from_client, where, src, dst, end - p)
        keys = st.app.get(from_client)
        if keys is None:
            self._no_keys(st, ONE_RTT, where)
            return False
        try:
            header, pn_len, tpn = remove_header_protection(data, p, p + 1 + dcid_len, end, keys.current,
                                                           False)
        except PacketFault as e:
            self.fail(where, f"1-RTT: {e}")
            return False
        first = header[0]
        spin = first & SPIN_BIT
        last = st.spin.get(from_client)
        if last is not None and last != spin:
            conn.spin_flips[from_client] += 1
        st.spin[from_client] = spin
        space = (from_client, 2)
        pn = decode_packet_number(st.largest.get(space, -1), tpn, pn_len)
        body = bytes(data[p + 1 + dcid_len + pn_len:end])
        if len(body) < TAG_LEN:
            self.fail(where, "1-RTT packet shorter than its AEAD tag (truncated capture?)")
            return False
        phase = 1 if first & KEY_PHASE else 0
        largest = st.largest.get(space, -1)
        plain = self._open_1rtt(keys, phase, pn, largest, header, body)
        if plain is None:
            # more packets lost (or not captured) than the truncated number spans: the nearest
            # candidate is wrong, a later window's is right (RFC 9000 §17.1)
            win = 1 << (8 * pn_len)
            for cand in (pn + win, pn + 2 * win, pn + 3 * win):
                plain = self._open_1rtt(keys, phase, cand, largest, header, body)
                if plain is not None:
                    pn = cand
                    break
        if plain is None:
            hint = ""
            if end - p > _MAX_DATAGRAM:
                hint = (f"; a {end - p}-byte datagram: a UDP GSO buffer of several, captured before "
                        "segmentation? (capture with tx-udp-segmentation off on the sender)")
            self.fail(where, f"1-RTT packet does not decrypt (AEAD tag, key phase {phase}){hint}")
            return False
        if keys.current.generation & 1 != phase and pn > largest:
            keys.previous, keys.current, keys.following = keys.current, keys.next(), None
            conn.key_updates[from_client] += 1
        if largest >= 0 and pn > largest + 1:  # packets not captured (or lost) before this one
            gaps = st.gaps.setdefault(from_client, [])
            gaps.append((largest + 1, pn - 1))
            del gaps[:-_MAX_GAPS]
        if pn > largest:
            st.largest[space] = pn
        self.f.decrypted += 1
        conn.decrypted += 1
        self._dcid_used(st, bytes(data[p + 1:p + 1 + dcid_len]), from_client, src, where)
        return self._frames(st, from_client, ONE_RTT, plain, where, src, dst, pn)

    @staticmethod
    def _open_1rtt(keys: _Keys, phase: int, pn: int, largest: int, header: bytes,
                   body: bytes) -> bytes | None:
        """The plaintext under the keys the key phase bit names (RFC 9001 §6): the current
        generation's, else the next one's (a key update), or the previous one's for a packet
        sent before the update and reordered (older than the largest seen)."""
        if phase == keys.current.generation & 1:
            return keys.current.open(pn, header, body)
        plain = keys.next().open(pn, header, body)
        if plain is None and keys.previous is not None and pn < largest:
            plain = keys.previous.open(pn, header, body)
        return plain

    def _dcid_used(self, st: _State, dcid: bytes, from_client: bool, src: Addr, where: Where) -> None:
        if not from_client:
            return
        path = self._path(st, src, where)
        if dcid not in path.client_dcids:
            path.client_dcids.append(dcid)
            info = next((c for c in st.conn.server_cids.values() if c.cid == dcid), None)
            if info is not None:
                info.paths.add(path.index)
                if info.first_used is None:
                    info.first_used = where

    # -- keys from the handshake -----------------------------------------------------------------
    def _hello(self, st: _State, from_client: bool, frame: CryptoFrame) -> None:
        have = st.hello.get(from_client, b"")
        if frame.offset > len(have) or len(have) >= _HELLO_BYTES:
            return
        have = have[:frame.offset] + frame.data
        st.hello[from_client] = have[:_HELLO_BYTES]
        conn = st.conn
        if from_client and conn.client_random is None:
            conn.client_random = client_hello_random(have)
        elif not from_client and conn.suite is None:
            conn.suite = server_hello_suite(have)
        if conn.keys == "none" and conn.client_random is not None and conn.suite is not None:
            self._load_keys(st)

    def _load_keys(self, st: _State) -> None:
        conn = st.conn
        secrets = self.keylog.of(conn.client_random or b"") if self.keylog is not None else {}
        if not secrets:
            conn.keys = "missing"
            return
        suite = conn.suite if conn.suite in (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
                                             TLS_CHACHA20_POLY1305_SHA256) else None
        version = st.negotiated if st.negotiated in VERSIONS else conn.version
        try:
            for label, from_client, target in (
                    (CLIENT_HANDSHAKE, True, "hs"), (SERVER_HANDSHAKE, False, "hs"),
                    (CLIENT_1RTT, True, "app"), (SERVER_1RTT, False, "app")):
                secret = secrets.get(label)
                if secret is None:
                    continue
                s = suite if suite is not None else _GUESS.get(len(secret), TLS_AES_128_GCM_SHA256)
                prot = protection(secret, s, version)
                if target == "hs":
                    st.handshake[from_client] = prot
                else:
                    st.app[from_client] = _Keys(prot)
        except KeyError:
            conn.keys = "missing"
            return
        conn.keys = "found" if st.handshake or st.app else "missing"

    # -- frames ----------------------------------------------------------------------------------
    def _frames(self, st: _State, from_client: bool, kind: str, plain: bytes, where: Where, src: Addr,
                dst: Addr, pn: int = -1) -> bool:
        """Account a decrypted packet's frames (``pn``: its packet number, 1-RTT)."""
        parsed = parse_frames(plain)
        conn = st.conn
        if parsed.malformed is not None:
            self.fail(where, f"{kind} frames: {parsed.malformed}")
        keep = False
        path = None
        for fr in parsed.frames:
            if isinstance(fr, StreamFrame):
                if path is None:
                    path = self._path(st, src if from_client else dst, where)
                self._stream(conn, from_client, fr, where, path, pn, st.gaps.get(from_client, ()),
                             st.acked.setdefault(not from_client, []))
            elif isinstance(fr, AckFrame) and kind == ONE_RTT:
                acked = st.acked.setdefault(from_client, [])
                quic_streams.acked_add(acked, fr.ranges)
                for (sender_is_client, _sid), fl in conn.streams.items():
                    if sender_is_client != from_client and fl.hole_pns:
                        quic_streams.acknowledged(fl, acked, where)
            elif isinstance(fr, CryptoFrame):
                if kind == INITIAL and len(st.hello.get(from_client, b"")) < _HELLO_BYTES:
                    self._hello(st, from_client, fr)
                keep = True
            elif isinstance(fr, NewConnectionId | RetireConnectionId | PathChallenge | PathResponse):
                if path is None:
                    path = self._path(st, src if from_client else dst, where)
                self._control(st, from_client, fr, where, src, dst, path)
                keep = True
            elif isinstance(fr, HandshakeDone):
                conn.confirmed = conn.confirmed or where
                keep = True
            elif isinstance(fr, ConnectionClose):
                conn.closed = conn.closed or where
                keep = True
        return keep

    @staticmethod
    def _stream(conn: QuicConn, from_client: bool, fr: StreamFrame, where: Where, path: QuicPath, pn: int,
                gaps: Sequence[tuple[int, int]], acked: quic_streams.Acked) -> None:
        fl = conn.streams.get((from_client, fr.stream_id))
        if fl is None:
            fl = conn.streams[(from_client, fr.stream_id)] = StreamFlow()
        if fr.end > fr.offset:
            path.last_stream_data[from_client] = where
        if quic_streams.add(fl, fr, where, pn, gaps, acked) and path.first_stream_data is None:
            path.first_stream_data = where
            path.first_stream_from_client = from_client

    def _control(self, st: _State, from_client: bool, fr, where: Where, src: Addr, dst: Addr,
                 path: QuicPath) -> None:
        conn = st.conn
        seen = FrameSeen(where, src, dst, from_client, fr, path.index)
        conn.frames.append(seen)
        if isinstance(fr, NewConnectionId):
            issued = conn.client_cids if from_client else conn.server_cids
            if fr.sequence not in issued:
                issued[fr.sequence] = CidInfo(bytes(fr.cid), fr.sequence, where)
            self._register(bytes(fr.cid), st, from_client)
        elif isinstance(fr, RetireConnectionId):
            issued = conn.server_cids if from_client else conn.client_cids
            info = issued.get(fr.sequence)
            if info is None:
                info = issued[fr.sequence] = CidInfo(b"", fr.sequence, None)
            info.retired = info.retired or where
        elif isinstance(fr, PathResponse) and from_client:
            for earlier in conn.frames:
                if (not earlier.from_client and isinstance(earlier.frame, PathChallenge)
                        and earlier.frame.data == fr.data):
                    target = conn.paths[earlier.path]
                    if target.validated is None:
                        target.validated = seen
                    break


__all__ = ["QuicTracker"]
