"""The QUIC binding-update rules: connection migration judged on the decrypted wire.

=====================  ==========================================================================
Rule id                Passes when
=====================  ==========================================================================
quic.keys              the run's QUIC was decrypted: a keylog was given or found, it holds the
                       secrets of every captured ClientHello, and every packet whose keys were
                       at hand decrypted; packets of other versions are counted, not judged.
                       Fails without a keylog, with one that matches no captured ClientHello,
                       and names each packet that failed (AEAD tag, truncated capture)
quic.path_validation   every new client address is validated: the server's PATH_CHALLENGE to it
                       answered by a PATH_RESPONSE with the same 8 bytes (RFC 9000 §8.2); until
                       then the server sent it no more than 3x the bytes it received from it
                       (§8.1, §9.3; the first address until the client's first Handshake packet)
quic.new_cid           after each migration the client sends with connection IDs it never used
                       from an earlier address (§9.5: addresses stay unlinkable)
quic.retire            the connection IDs the client used from its old address are retired
                       (RETIRE_CONNECTION_ID, §19.16) at the migration or within 3 PTO after the
                       agent's ``lost`` for the old link; fails when a migrated run retires none
continuity.quic        each stream direction's offsets have no hole that a retransmission did not
                       fill (holes filled and bytes sent again counted, as continuity.tsn counts
                       TSNs); its numbered messages (``testbed.traffic.messages``) arrive in
                       order, none missing or repeated, at both ends (inside HTTP/3 DATA frames
                       too, and across HTTP/3 request streams in stream order). A hole whose packets the
                       capture lacks but the receiver acknowledged (a loaded tcpdump drops
                       packets) is counted apart, not failed
order.quic             per migration: the client moved (its first packet from the new address)
                       before the DNS UPDATE for it was sent, and no stream data travelled the
                       old path after the agent's ``lost`` for it once the server could know of
                       the move (a round trip after the client's first packet from the new
                       address: in break-before-make the server retransmits to the old address
                       until then, and cannot know better)
=====================  ==========================================================================

A run whose QUIC could not be decrypted (no keylog, or one that names none of its ClientHellos)
fails ``quic.keys``; the other rules then say "not judged: no keylog" (or why) and skip, never
pass. A rule with nothing to judge (no QUIC, no migration) skips.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from testbed.conformance.agent_events import LEFT_GRACE
from testbed.conformance.quic_facts import QuicConn, QuicFacts, addr_text
from testbed.conformance.quic_timeline import QuicHandover
from testbed.conformance.verdict import Evidence, RuleResult
from testbed.conformance.verdict import evidence as _ev
from testbed.conformance.verdict import outcome as _result
from testbed.decode.quic_frames import RetireConnectionId
from testbed.decode.quic_versions import SUITE_NAMES, V1, V2

QUIC_RULE_IDS = ("quic.keys", "quic.path_validation", "quic.new_cid", "quic.retire", "continuity.quic",
                 "order.quic")
QUIC_GROUP = QUIC_RULE_IDS  # what ``--rules quic`` selects
KEYLOG_FIX = ("give --keylog FILE (SSLKEYLOGFILE format) or put the endpoints' keylog.txt beside the "
              "captures")
_VERSION_NAMES = {V1: "v1", V2: "v2"}




def unjudged(q: QuicFacts) -> str | None:
    """Why the decrypted rules cannot judge this run (None: they can)."""
    if not q.conns:
        return None
    if q.keylog is None:
        return "not judged: no keylog"
    if q.keylog_problem is not None:
        return f"not judged: {q.keylog_problem}"
    if all(c.keys != "found" for c in q.conns):
        hellos = [c for c in q.conns if c.client_random is not None]
        if hellos:
            return f"not judged: {q.keylog} matches no captured ClientHello"
        return "not judged: no ClientHello captured (the handshake is not in the capture)"
    return None


def _skip(rid: str, why: str) -> RuleResult:
    return RuleResult(rid, "skip", why)


def _not_judged(rid: str, q: QuicFacts, hos: Sequence[QuicHandover]) -> RuleResult | None:
    """The skip of a migration rule that cannot judge (no keys) or has nothing to judge."""
    why = unjudged(q)
    if why is not None:
        return _skip(rid, why)
    return None if hos else _skip(rid, "no migration in the capture")


# -- quic.keys --------------------------------------------------------------------------------
def quic_keys(q: QuicFacts) -> RuleResult:
    rid = "quic.keys"
    others = ", ".join(f"{n} of version {v:#010x}" for v, n in q.other_versions.items())
    not_judged = f"; {others} counted, not judged" if others else ""
    if not q.conns:
        return _skip(rid, f"no QUIC v1/v2 connection in the capture{not_judged}")
    first = q.conns[0].first
    if q.keylog is None:
        looked = f" (none at {', '.join(q.keylog_looked)})" if q.keylog_looked else ""
        msg = f"no keylog for {len(q.conns)} QUIC connection(s){looked}: {KEYLOG_FIX}"
        return RuleResult(rid, "fail", msg,
                          (_ev(first, f"{q.conns[0].name}: encrypted, no keys"),))
    if q.keylog_problem is not None:
        return RuleResult(rid, "fail", f"{q.keylog}: {q.keylog_problem}", (_ev(first, q.conns[0].name),))
    hellos = [c for c in q.conns if c.client_random is not None]
    if hellos and all(c.keys != "found" for c in hellos):
        msg = (f"{q.keylog} matches no captured ClientHello ({len(hellos)} connection(s), "
               f"{q.keylog_lines} key line(s)): it is not this run's keylog; give the one the "
               "endpoints wrote during this run")
        return RuleResult(rid, "fail", msg,
                          tuple(_ev(c.first, f"{c.name}: ClientHello random {c.client_random.hex()} "
                                             "not in the keylog") for c in hellos if c.client_random))
    bad: list[Evidence] = []
    for c in q.conns:
        if c.keys == "missing":
            rnd = c.client_random.hex() if c.client_random else "?"
            bad.append(_ev(c.first, f"{c.name}: the keylog has no secrets for ClientHello random {rnd}"))
        elif c.client_random is None:
            bad.append(_ev(c.first, f"{c.name}: ClientHello not captured, so not decryptable"))
    for ex in q.failure_examples:
        bad.append(Evidence(str(ex["pcap"]), int(ex["frame"]), float(ex["time"]), str(ex["reason"])))  # type: ignore[arg-type]
    suites = sorted({SUITE_NAMES.get(c.suite or 0, "?") for c in q.conns if c.keys == "found"})
    versions = sorted({_VERSION_NAMES.get(v, hex(v)) for c in q.conns for v in c.versions})
    updates = sum(n for c in q.conns for n in c.key_updates.values())
    summary = (f"{q.decrypted} of {q.packets} QUIC packet(s) decrypted in {len(q.conns)} connection(s) "
               f"({', '.join(versions)}; {', '.join(suites) or 'no keys'}; {updates} key update(s))"
               f"{not_judged}")
    if q.failed:
        summary += f"; {q.failed} failed: " + ", ".join(f"{r} ×{n}" for r, n in q.failures.items())
    return _result(rid, summary, bad, f"QUIC not fully decrypted; {summary}")


# -- quic.path_validation ---------------------------------------------------------------------
def quic_path_validation(q: QuicFacts, hos: Sequence[QuicHandover]) -> RuleResult:
    rid = "quic.path_validation"
    why = unjudged(q)
    if why is not None:
        return _skip(rid, why)
    bad: list[Evidence] = []
    for c in q.conns:
        first = c.paths[0] if c.paths else None
        if first is not None and first.over_limit is not None:
            sent, got = first.over_limit_bytes
            bad.append(_ev(first.over_limit, f"{c.name}: the server sent {sent} bytes to "
                                             f"{addr_text(first.client)} before its first Handshake packet, "
                                             f"more than 3x the {got} received (RFC 9000 §8.1)"))
    rtts = []
    for h in hos:
        p, tag = h.path, f"{h.conn.name}: new client address {addr_text(h.path.client)}"
        if p.validated is None:
            what = ("no PATH_CHALLENGE from the server to it" if h.challenge is None
                    else "its PATH_CHALLENGE never answered with the same data (RFC 9000 §8.2.2)")
            bad.append(_ev(h.where, f"{tag} never validated: {what}"))
        elif "path_challenge" in h.floors:
            rtts.append(h.floors["path_challenge"].seconds)
        if p.over_limit is not None:
            sent, got = p.over_limit_bytes
            bad.append(_ev(p.over_limit, f"{tag}: the server sent {sent} bytes to it before validating it, "
                                         f"more than 3x the {got} received from it (RFC 9000 §9.3)"))
    if not hos and not bad:
        return _skip(rid, "no migration (no new client address) in the capture")
    rtt = f", PATH_CHALLENGE → PATH_RESPONSE median {statistics.median(rtts) * 1e3:.1f} ms" if rtts else ""
    return _result(rid, f"{len(hos)} new client address(es) validated{rtt}; the server stayed within 3x "
                        "before validation", bad, "client address not validated")


# -- quic.new_cid -----------------------------------------------------------------------------
def quic_new_cid(q: QuicFacts, hos: Sequence[QuicHandover]) -> RuleResult:
    rid = "quic.new_cid"
    early = _not_judged(rid, q, hos)
    if early is not None:
        return early
    bad: list[Evidence] = []
    unseen = empty = 0
    for h in hos:
        earlier = {d: p for p in h.conn.paths if p is not h.path and p.first_from_client is not None
                   and p.first_from_client.time < h.start for d in p.client_dcids}
        if not h.path.client_dcids:
            unseen += 1
            continue
        if b"" in h.path.client_dcids:
            empty += 1
            continue
        for d in h.path.client_dcids:
            if d in earlier:
                what = (f"{h.conn.name}: the client sent from {addr_text(h.path.client)} with DCID "
                        f"{d.hex()}, used before from {addr_text(earlier[d].client)} (RFC 9000 §9.5)")
                bad.append(_ev(h.where, what))
                break
    notes = []
    if unseen:
        notes.append(f"{unseen} migration(s) without a decrypted 1-RTT packet from the new address")
    if empty:
        notes.append(f"{empty} with a zero-length connection ID (nothing to change)")
    note = f"; not judged: {', '.join(notes)}" if notes else ""
    return _result(rid, f"{len(hos) - unseen - empty} migration(s) with connection IDs unused before{note}",
                   bad, f"connection ID reused on a new path{note}")


# -- quic.retire ------------------------------------------------------------------------------
def quic_retire(q: QuicFacts, hos: Sequence[QuicHandover]) -> RuleResult:
    rid = "quic.retire"
    early = _not_judged(rid, q, hos)
    if early is not None:
        return early
    bad: list[Evidence] = []
    retired = 0
    for c in q.conns:
        mine = [h for h in hos if h.conn is c]
        if mine and not any(f.from_client and isinstance(f.frame, RetireConnectionId) for f in c.frames):
            bad.append(_ev(mine[0].where, f"{c.name}: migrated {len(mine)} time(s) but the client retired no "
                                          "connection ID (RETIRE_CONNECTION_ID)"))
            continue
        for h in mine:
            if h.old is None:
                continue
            lost = h.events.get("lost")
            since = max(h.start, lost.wall) if lost is not None else h.start
            deadline = since + 3 * c.pto
            for d in h.old.client_dcids:
                if d in h.path.client_dcids or not d:
                    continue
                info = next((i for i in c.server_cids.values() if i.cid == d), None)
                seq = f"seq {info.sequence}" if info is not None else "sequence unknown"
                tag = f"{c.name}: DCID {d.hex()} ({seq}) of old address {addr_text(h.old.client)}"
                if info is None or info.retired is None:
                    bad.append(_ev(h.where, f"{tag} never retired"))
                elif info.retired.time > deadline:
                    ref = "the lost event" if lost is not None and lost.wall > h.start else "the migration"
                    late = info.retired.time - since
                    bad.append(_ev(info.retired, f"{tag} retired {late:.3f} s after {ref}, later than 3 PTO "
                                                 f"({3 * c.pto * 1e3:.0f} ms)"))
                else:
                    retired += 1
    return _result(rid, f"{len(hos)} migration(s): {retired} old connection ID(s) retired in time", bad,
                   "old path's connection IDs not retired")


# -- continuity.quic --------------------------------------------------------------------------
def _stream_name(c: QuicConn, from_client: bool, sid: int) -> str:
    way = "client → server" if from_client else "server → client"
    return f"{c.name} stream {sid} {way}"


def continuity_quic(q: QuicFacts) -> RuleResult:
    rid = "continuity.quic"
    why = unjudged(q)
    if why is not None:
        return _skip(rid, why)
    # the largest first: a summary shows the message streams, not HTTP/3's control streams
    flows = sorted(((c, k, fl) for c in q.conns for k, fl in c.streams.items() if fl.high),
                   key=lambda x: -x[2].high)
    if not flows:
        return _skip(rid, "no QUIC stream data in the capture")
    bad: list[Evidence] = []
    parts = []
    for c, (from_client, sid), fl in flows:
        name = _stream_name(c, from_client, sid)
        msgs = (f", messages {fl.first_seq}..{fl.last_seq}" if fl.messages else "")
        if fl.uncaptured:
            lost = sum(b - a for a, b in fl.uncaptured.items())
            msgs += (f", {len(fl.uncaptured)} hole(s) of {lost} bytes not captured (their packets "
                     "acknowledged by the receiver")
            msgs += f"; {fl.uncaptured_messages} message(s) in them)" if fl.uncaptured_messages else ")"
        parts.append(f"{name}: {fl.high} bytes, {fl.resent} sent again, {fl.filled} holes filled{msgs}")
        for lo, hi in sorted(fl.holes.items()):
            where = fl.hole_where.get(lo) or c.first
            bad.append(_ev(where, f"{name}: bytes {lo}..{hi - 1} never seen"))
        for what, where in fl.seq_faults:
            bad.append(_ev(where, f"{name}: {what}"))
    across = [part for c in q.conns for fc in (True, False) for part in _across_requests(c, fc, bad)]
    parts = across + parts  # numbered GETs: the run of messages says more than stream 0's
    more = f"; {len(parts) - 4} more" if len(parts) > 4 else ""
    summary = "; ".join(parts[:4]) + more
    return _result(rid, summary, bad, f"QUIC stream broken; {summary}")


def _across_requests(c: QuicConn, from_client: bool, bad: list[Evidence]) -> list[str]:
    """Numbered messages spread over HTTP/3 request streams, one or a few each (numbered GETs
    of numbered files): in stream order they run on without a gap. Returns the summary part."""
    flows = sorted((sid, fl) for (fc, sid), fl in c.streams.items()
                   if fc == from_client and fl.h3 and fl.messages and fl.first_seq is not None)
    if len(flows) < 2:
        return []
    way = "client → server" if from_client else "server → client"
    for (a_sid, a), (b_sid, b) in zip(flows, flows[1:], strict=False):
        assert a.last_seq is not None and b.first_seq is not None
        if b.first_seq != a.last_seq + 1:
            what = (f"messages {a.last_seq + 1}..{b.first_seq - 1} missing" if b.first_seq > a.last_seq + 1
                    else f"message {b.first_seq} repeats")
            bad.append(_ev(b.first or c.first, f"{c.name} {way}: {what} between HTTP/3 streams {a_sid} "
                                               f"and {b_sid}"))
    seqs = sum(fl.messages for _sid, fl in flows)
    return [f"{c.name} {way}: {seqs} messages over {len(flows)} HTTP/3 streams, "
            f"{flows[0][1].first_seq}..{flows[-1][1].last_seq}"]


# -- order.quic -------------------------------------------------------------------------------
def order_quic(q: QuicFacts, hos: Sequence[QuicHandover], events_given: bool) -> RuleResult:
    rid = "order.quic"
    early = _not_judged(rid, q, hos)
    if early is not None:
        return early
    bad: list[Evidence] = []
    notes: list[str] = []
    for n, h in enumerate(hos, 1):
        tag = f"migration {n} to {addr_text(h.path.client)}"
        if h.dns is None:
            notes.append(f"{tag}: no DNS UPDATE")
        elif h.dns.request.where.time < h.start:
            bad.append(_ev(h.dns.request.where, f"{tag}: DNS UPDATE sent "
                                                f"{h.start - h.dns.request.where.time:.3f} s before the "
                                                "client's first packet from the new address"))
        lost = h.events.get("lost")
        if h.old is None or lost is None:
            if events_given:
                notes.append(f"{tag}: no 'lost' event for the old link")
            continue
        # the server may keep retransmitting to the old address until it hears from the new one
        # (break-before-make: it cannot know sooner); a round trip after the client's first
        # packet from the new address it has, and nothing may go to the old one after that
        knew = h.start + (h.conn.handshake_rtt if h.conn.handshake_rtt is not None else 0.1)
        since = max(lost.wall + LEFT_GRACE, knew)
        for from_client, w in h.old.last_stream_data.items():
            if w.time > since:
                way = "from" if from_client else "to"
                bad.append(_ev(w, f"{tag}: stream data {way} the old address {addr_text(h.old.client)} "
                                  f"{w.time - lost.wall:.3f} s after its link was lost and "
                                  f"{w.time - h.start:.3f} s after the client's first packet from the "
                                  "new one"))
    if not events_given:
        notes.append("agent events not given: stream data after 'lost' not judged")
    note = ("; not judged: " + "; ".join(notes)) if notes else ""
    return _result(rid, f"{len(hos)} migration(s) in order{note}", bad, f"QUIC migration out of order{note}")


def run_rules(selected: list[str], q: QuicFacts, hos: list[QuicHandover],
              events_given: bool) -> list[RuleResult]:
    """The selected rules of this module, in ``QUIC_RULE_IDS`` order."""
    table: dict[str, Callable[[], RuleResult]] = {
        "quic.keys": lambda: quic_keys(q),
        "quic.path_validation": lambda: quic_path_validation(q, hos),
        "quic.new_cid": lambda: quic_new_cid(q, hos),
        "quic.retire": lambda: quic_retire(q, hos),
        "continuity.quic": lambda: continuity_quic(q),
        "order.quic": lambda: order_quic(q, hos, events_given),
    }
    return [table[r]() for r in QUIC_RULE_IDS if r in selected]


__all__ = ["KEYLOG_FIX", "QUIC_GROUP", "QUIC_RULE_IDS", "run_rules", "unjudged"]
