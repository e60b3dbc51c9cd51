"""Golden captures: real QUIC from two stacks, committed with their keylogs, judged as a run's
captures are. ``aioquic-migration`` (tests/fixtures/quic/make_aioquic_fixture.py): aioquic 1.7.2
both ends, captured beside each, a NAT in front of the client's second address.
``ngtcp2-migration`` (make-ngtcp2-fixture.sh): Debian's ngtcp2 0.12.1 examples, gtlsclient →
gtlsserver over loopback, HTTP/3, the server greasing the fixed bit (RFC 9287), 18- and 17-byte
connection IDs."""

from __future__ import annotations

from pathlib import Path

from testbed.conformance import check
from testbed.conformance.quic_rules import QUIC_RULE_IDS
from testbed.decode.quic_versions import TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, V1

FIXTURES = Path(__file__).parents[1] / "fixtures" / "quic"


def test_aioquic_migration_across_a_nat() -> None:
    v = check(FIXTURES / "aioquic-migration", rules="quic")
    assert v.statuses() == dict.fromkeys(QUIC_RULE_IDS, "pass")
    q = v.facts.quic  # type: ignore[union-attr]
    assert (q.datagrams, q.packets, q.decrypted, v.stats["duplicates_removed"]) == (127, 130, 130, 127)
    (c,) = q.conns
    assert (c.odcid.hex(), c.version, c.suite) == ("a51e0d5e92836227", V1, TLS_AES_256_GCM_SHA384)
    assert c.key_updates == {True: 1, False: 1}
    old, new = c.paths
    assert (old.client, new.client) == (("198.51.100.10", 50000), ("198.51.100.20", 50001))
    assert q.alias == {("192.0.2.99", 61000): ("198.51.100.20", 50001)}
    assert old.client_dcids == [bytes.fromhex("83644c9df059ade4")]
    assert new.client_dcids == [bytes.fromhex("c8a148bb03cfa4e2")]
    assert new.first_from_client is not None and new.validated is not None
    response = new.validated.where
    assert (new.first_from_client.frame, response.pcap, response.frame) == (67, "mn.pcap", 69)
    retired = c.server_cids[0].retired
    assert retired is not None and (retired.pcap, retired.frame) == ("mn.pcap", 67)
    assert {k: (f.messages, f.first_seq, f.last_seq) for k, f in c.streams.items()} == {
        (True, 0): (30, 0, 29), (False, 0): (30, 0, 29)}
    floor = v.handovers[0]["floors"]["path_challenge"]
    assert (floor["from"]["pcap"], floor["from"]["frame"], floor["to"]["frame"]) == ("cn.pcap", 68, 69)
    assert floor["seconds"] == 0.01


def test_ngtcp2_migration_over_http3() -> None:
    v = check(FIXTURES / "ngtcp2-migration", rules="quic")
    assert v.statuses() == dict.fromkeys(QUIC_RULE_IDS, "pass")
    q = v.facts.quic  # type: ignore[union-attr]
    assert q.packets == q.decrypted == 150 and q.failed == 0
    (c,) = q.conns
    assert (c.version, c.suite, len(c.odcid)) == (V1, TLS_AES_128_GCM_SHA256, 18)
    assert c.key_updates == {True: 1, False: 1}
    assert [p.first_from_client.frame for p in c.paths] == [1, 48]  # type: ignore[union-attr]
    assert c.paths[1].validated is not None and c.server_cids[0].retired is not None
    body = c.streams[(False, 0)]  # the GET's response: HTTP/3 frames, not numbered messages
    assert (body.high, body.fin, body.holes, body.unframed) == (150061, 150061, {}, True)
    assert len({cid.cid for cid in c.server_cids.values()}) == len(c.server_cids) > 1
