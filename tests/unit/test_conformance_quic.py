"""The checker on real QUIC: aioquic connections linked in memory (``tests.support.quic_synth``),
captured, decrypted with their keylog and judged by the QUIC rules."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from aioquic.quic.packet import QuicProtocolVersion
from rich.console import Console

from testbed.conformance import check, main
from testbed.conformance.checker import select_rules
from testbed.conformance.quic_rules import QUIC_RULE_IDS
from testbed.decode.quic_crypto import TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256, V1, V2
from testbed.errors import ConfigError
from tests.support import synth
from tests.support.quic_synth import QuicRun, quic_run

OLD, NEW = ("198.51.100.10", 50000), ("198.51.100.20", 50001)


@pytest.fixture(scope="module")
def moved() -> QuicRun:
    """One migration (before message 20 of 40) and a key update each way."""
    return quic_run(key_update_at=(10,))


def _dir(tmp: Path, run: QuicRun, **kw: object) -> Path:
    run.write(tmp, **kw)  # type: ignore[arg-type]
    return tmp


def _events(run: QuicRun, lost_after: float = 0.05) -> list[dict[str, object]]:
    t = run.migrations[0][0]
    return [
        {"event": "link_up", "wall": t - 0.3, "ifname": "eth1", "addresses": []},
        {"event": "detected", "wall": t - 0.25, "ifname": "eth1", "prefix": "198.51.100.0/24",
         "addresses": []},
        {"event": "configured", "wall": t - 0.2, "ifname": "eth1", "addresses": [f"{NEW[0]}/24"]},
        {"event": "lost", "wall": t + lost_after, "ifname": "wlan0", "addresses": [f"{OLD[0]}/24"]},
    ]


def _frames_without(path: Path, drop: set[int]) -> None:
    """Rewrite a capture without the given (1-based) frames: packets the capture missed."""
    from testbed.decode.pcap import PcapReader

    r = PcapReader(path)
    frames = [(ts, data) for ts, _p, fno, _lt, data, _if in r.numbered(0) if fno not in drop]
    r.close()
    synth.write_pcap(path, frames)


def test_a_migration_passes_every_quic_rule(tmp_path: Path, moved: QuicRun) -> None:
    v = check(_dir(tmp_path, moved), rules="quic", events=_events(moved))
    assert {r.id: r.status for r in v.rules} == dict.fromkeys(QUIC_RULE_IDS, "pass"), v.rules
    q = v.facts.quic  # type: ignore[union-attr]
    assert q.packets == q.decrypted and q.failed == q.no_keys == 0 and q.datagrams == moved.datagrams
    (c,) = q.conns
    assert c.keys == "found" and c.key_updates == {True: 1, False: 1}
    assert [p.client for p in c.migrations()] == [NEW]
    assert sum(fl.messages for fl in c.streams.values()) == moved.messages_sent + moved.echoes_received
    assert v.stats["quic_decrypted"] == q.decrypted and v.passed


def test_the_timeline_runs_from_link_up_to_the_first_data_on_the_new_path(tmp_path: Path) -> None:
    # captured at both ends: the round trip is timed where the server sent its PATH_CHALLENGE
    moved = quic_run(server_capture=True)
    v = check(_dir(tmp_path, moved), rules="quic,timeline", events=_events(moved),
              budgets={"path_validated": 1.0, "first_data_new_path": 1.0})
    (h,) = v.handovers
    assert h["transport"] == "quic" and h["address"] == NEW[0] and h["old_address"] == OLD[0]
    off = h["offsets"]
    assert off["link_up"] == 0 and off["first_packet_new_address"] == pytest.approx(0.3, abs=1e-3)
    assert off["first_packet_new_address"] <= off["path_challenge_sent"] < off["path_validated"]
    assert off["first_data_new_path"] == off["first_packet_new_address"]  # the client's own data
    rtt = h["floors"]["path_challenge"]["seconds"]
    assert rtt == pytest.approx(0.01, abs=1e-3)  # two one-way delays of 5 ms
    assert h["durations"]["path_validated"]["floor_seconds"] == rtt
    assert v.rule("timeline.path_validated").status == "pass"


def test_without_a_keylog_quic_keys_fails_and_the_rest_is_not_judged(tmp_path: Path, moved: QuicRun) -> None:
    d = _dir(tmp_path / "run", moved, keylog=False)
    v = check(d, rules="quic")
    assert v.rule("quic.keys").status == "fail" and "no keylog" in v.rule("quic.keys").message
    assert str(d / "keylog.txt") in v.rule("quic.keys").message  # where it looked
    for rid in QUIC_RULE_IDS[1:]:
        assert (v.rule(rid).status, v.rule(rid).message) == ("skip", "not judged: no keylog")
    out = io.StringIO()
    assert main([str(d), "--rules", "quic"], console=Console(file=out, width=200)) == 1
    assert "Traceback" not in out.getvalue()


def test_a_keylog_in_the_parent_directory_is_found(tmp_path: Path, moved: QuicRun) -> None:
    moved.write(tmp_path / "pcaps", keylog=False)
    (tmp_path / "keylog.txt").write_text(moved.keylog)
    v = check(tmp_path / "pcaps", rules="quic.keys")
    assert v.rule("quic.keys").status == "pass" and v.facts.quic.keylog == str(tmp_path / "keylog.txt")  # type: ignore[union-attr]


def test_another_runs_keylog_matches_no_clienthello(tmp_path: Path, moved: QuicRun) -> None:
    other = quic_run(messages=2, moves=())
    d = _dir(tmp_path, moved, keylog=False)
    (tmp_path / "other.txt").write_text(other.keylog)
    v = check(d, rules="quic", keylog=tmp_path / "other.txt")
    keys = v.rule("quic.keys")
    assert keys.status == "fail" and "matches no captured ClientHello" in keys.message
    assert "other.txt" in keys.message
    assert v.rule("quic.path_validation").message.startswith("not judged:")
    assert v.rule("quic.path_validation").status == "skip"


def test_a_missing_keylog_file_is_one_line_naming_it(tmp_path: Path, moved: QuicRun) -> None:
    d = _dir(tmp_path, moved)
    with pytest.raises(ConfigError, match="nothere.txt: no such keylog file"):
        check(d, keylog=tmp_path / "nothere.txt")
    out = io.StringIO()
    code = main([str(d), "--keylog", str(tmp_path / "nothere.txt")], console=Console(file=out, width=300))
    assert code == 2
    text = out.getvalue().strip()
    assert text.count("\n") == 0 and "nothere.txt" in text and "keylog" in text


def test_a_keylog_that_is_not_one_says_so(tmp_path: Path, moved: QuicRun) -> None:
    d = _dir(tmp_path, moved, keylog=False)
    (d / "keylog.txt").write_text("hello\nworld\n")
    keys = check(d, rules="quic.keys").rule("quic.keys")
    assert keys.status == "fail" and "not in SSLKEYLOGFILE format" in keys.message


def test_truncated_and_corrupted_packets_are_counted_and_named(tmp_path: Path, moved: QuicRun) -> None:
    frames = list(moved.client_frames)
    t, f = frames[60]
    frames[60] = (t, f[:-1] + bytes([f[-1] ^ 0x01]))  # one bit of the AEAD tag
    t, f = frames[61]
    cut = f[:60]  # a snap length shorter than the packet: IP and UDP lengths say more
    frames[61] = (t, cut[:16] + struct.pack("!H", len(cut) - 14) + cut[18:38]
                  + struct.pack("!H", len(cut) - 34) + cut[40:])
    synth.write_pcap(tmp_path / "mn.pcap", frames)
    (tmp_path / "keylog.txt").write_text(moved.keylog)
    v = check(tmp_path, rules="quic.keys")
    q = v.facts.quic  # type: ignore[union-attr]
    assert q.failed == 2 and q.decrypted == q.packets - 2
    assert {e["frame"] for e in q.failure_examples} == {61, 62}
    keys = v.rule("quic.keys")
    assert keys.status == "fail" and {e.frame for e in keys.evidence} == {61, 62}
    assert any("does not decrypt" in e.what for e in keys.evidence)


def test_copies_across_a_nat_count_once_and_are_one_path(tmp_path: Path) -> None:
    run = quic_run(server_capture=True, nat={NEW: ("192.0.2.99", 61000)})
    v = check(_dir(tmp_path, run), rules="quic", events=_events(run))
    q = v.facts.quic  # type: ignore[union-attr]
    assert v.stats["duplicates_removed"] == run.datagrams and q.datagrams == run.datagrams
    (c,) = q.conns
    assert [p.client for p in c.paths] == [OLD, NEW]  # the NAT's address is the new path's
    assert q.alias[("192.0.2.99", 61000)] == NEW
    assert all(r.status == "pass" for r in v.rules), v.rules


def test_a_retransmission_fills_the_hole_it_leaves(tmp_path: Path) -> None:
    run = quic_run(drop=frozenset({30}))
    v = check(_dir(tmp_path, run), rules="continuity.quic")
    (c,) = v.facts.quic.conns  # type: ignore[union-attr]
    assert c.streams[(True, 0)].filled == 1 and not c.streams[(True, 0)].holes
    assert v.rule("continuity.quic").status == "pass"


def test_stream_data_the_capture_missed_but_the_receiver_acknowledged_is_counted_apart(
        tmp_path: Path, moved: QuicRun) -> None:
    d = _dir(tmp_path, moved)
    (c,) = check(d, rules="continuity.quic").facts.quic.conns  # type: ignore[union-attr]
    missed = c.paths[0].last_stream_data[True]  # a message the server received and acknowledged
    _frames_without(d / "mn.pcap", {missed.frame})
    v = check(d, rules="continuity.quic")
    fl = v.facts.quic.conns[0].streams[(True, 0)]  # type: ignore[union-attr]
    assert not fl.holes and len(fl.uncaptured) == 1 and fl.uncaptured_messages == 1
    r = v.rule("continuity.quic")
    assert r.status == "pass" and "not captured (their packets acknowledged by the receiver" in r.message


def test_stream_data_never_seen_nor_acknowledged_breaks_continuity(tmp_path: Path, moved: QuicRun) -> None:
    d = _dir(tmp_path, moved)
    (c,) = check(d, rules="continuity.quic").facts.quic.conns  # type: ignore[union-attr]
    missed = c.paths[0].last_stream_data[True]
    # the client's packet and everything the server sent after it: nothing acknowledges it
    server = bytes([203, 0, 113, 1])
    later = {i + 1 for i, (t, f) in enumerate(moved.client_frames) if t >= missed.time and f[26:30] == server}
    _frames_without(d / "mn.pcap", {missed.frame} | later)
    r = check(d, rules="continuity.quic").rule("continuity.quic")
    assert r.status == "fail" and "never seen" in r.evidence[0].what


def test_a_path_response_the_capture_lacks_leaves_the_path_unvalidated(tmp_path: Path,
                                                                       moved: QuicRun) -> None:
    d = _dir(tmp_path, moved)
    (c,) = check(d, rules="quic").facts.quic.conns  # type: ignore[union-attr]
    _frames_without(d / "mn.pcap", {c.paths[1].validated.where.frame})  # type: ignore[union-attr]
    r = check(d, rules="quic.path_validation").rule("quic.path_validation")
    assert r.status == "fail" and "never validated" in r.evidence[0].what


def test_moving_without_a_new_connection_id_fails_new_cid_and_retire(tmp_path: Path) -> None:
    run = quic_run(change_cid=False)
    v = check(_dir(tmp_path, run), rules="quic")
    new_cid, retire = v.rule("quic.new_cid"), v.rule("quic.retire")
    assert new_cid.status == "fail" and "used before" in new_cid.evidence[0].what
    assert retire.status == "fail" and "retired no connection ID" in retire.evidence[0].what
    assert v.rule("quic.path_validation").status == "pass"  # the server still validated the address


def test_a_dns_update_before_the_migration_and_data_after_lost_fail_order(tmp_path: Path,
                                                                          moved: QuicRun) -> None:
    t = moved.migrations[0][0]
    frames = list(moved.client_frames)
    upd = synth.dns_update(7, "mobile.test", "mn.mobile.test", NEW[0], signer="mn.mobile.test")
    frames.append((t - 0.1, bytes(synth.Ether() / synth.IP(src=NEW[0], dst="203.0.113.53")
                                  / synth.UDP(sport=40000, dport=53) / upd)))
    # an echo the server sends to the old address 0.1 s after the move (its UDP payload, and so
    # its protection, unchanged: only the IP and UDP destination rewritten)
    k = next(i for i, (ts, f) in enumerate(frames) if ts > t + 0.1 and f[26:30] == bytes([203, 0, 113, 1]))
    ts, f = frames[k]
    frames[k] = (ts, f[:30] + bytes([198, 51, 100, 10]) + f[34:36] + OLD[1].to_bytes(2, "big") + f[38:])
    synth.write_pcap(tmp_path / "mn.pcap", sorted(frames, key=lambda f: f[0]))
    (tmp_path / "keylog.txt").write_text(moved.keylog)
    r = check(tmp_path, rules="order.quic", events=_events(moved, lost_after=0.0)).rule("order.quic")
    assert r.status == "fail"
    whats = " | ".join(e.what for e in r.evidence)
    assert "DNS UPDATE sent 0.100 s before" in whats
    assert f"stream data to the old address {OLD[0]}:{OLD[1]}" in whats and "after its link was lost" in whats


def test_break_before_make_retransmissions_to_the_old_address_are_no_fault(tmp_path: Path,
                                                                           moved: QuicRun) -> None:
    # the old link lost 0.3 s before the move: what the ends sent there until then is no fault
    r = check(_dir(tmp_path, moved), rules="order.quic", events=_events(moved, lost_after=-0.3))
    assert r.rule("order.quic").status == "pass"


def test_no_quic_skips_every_quic_rule(tmp_path: Path) -> None:
    synth.trash_capture(synth.Knobs()).write_pcap(tmp_path / "sctp.pcap")
    v = check(tmp_path, rules="quic")
    assert {r.status for r in v.rules} == {"skip"} and v.passed


@pytest.mark.parametrize(("kw", "version", "suite"), [
    ({"version": V2}, V2, TLS_AES_128_GCM_SHA256),
    ({"cipher_suites": [TLS_CHACHA20_POLY1305_SHA256]}, V1, TLS_CHACHA20_POLY1305_SHA256),
    ({"retry": True}, V1, TLS_AES_128_GCM_SHA256),
])
def test_versions_suites_and_retry(tmp_path: Path, kw: dict[str, object], version: int, suite: int) -> None:
    kw.setdefault("cipher_suites", [TLS_AES_128_GCM_SHA256])
    run = quic_run(messages=24, moves=((12, NEW),), **kw)  # type: ignore[arg-type]
    assert run.version == version
    v = check(_dir(tmp_path, run), rules="quic")
    (c,) = v.facts.quic.conns  # type: ignore[union-attr]
    assert c.suite == suite and version in c.versions and (c.retry is not None) == bool(kw.get("retry"))
    assert v.facts.quic.decrypted == v.facts.quic.packets  # type: ignore[union-attr]
    assert all(r.status == "pass" for r in v.rules), v.rules


def test_other_versions_are_counted_not_judged(tmp_path: Path) -> None:
    head = bytes([0xC0]) + (0x1A2A3A4A).to_bytes(4, "big") + bytes([8]) + bytes(8) + bytes([8]) + bytes(8)
    frame = bytes(synth.Ether() / synth.IP(src=OLD[0], dst="203.0.113.1")
                  / synth.UDP(sport=OLD[1], dport=443) / (head + bytes(1200)))
    synth.write_pcap(tmp_path / "x.pcap", [(1.0, frame)])
    v = check(tmp_path, rules="quic")
    assert v.stats["quic_other_versions"] == {"0x1a2a3a4a": 1}
    assert v.rule("quic.keys").status == "skip" and "0x1a2a3a4a" in v.rule("quic.keys").message


def test_quic_group_and_transport() -> None:
    assert select_rules("quic") == list(QUIC_RULE_IDS)
    assert select_rules(None, "quic") == ["dns.signed", "dns.answered", "source.left_network",
                                          *QUIC_RULE_IDS, "timeline"]
    assert "continuity.quic" in select_rules("continuity") and "order.quic" in select_rules("order")
    assert QuicProtocolVersion.VERSION_2 == V2


def test_a_connection_the_keylog_lacks_is_named(tmp_path: Path, moved: QuicRun) -> None:
    other = quic_run(messages=4, moves=(), client=("198.51.100.30", 40000))
    both = sorted(moved.client_frames + other.client_frames, key=lambda f: f[0])
    synth.write_pcap(tmp_path / "mn.pcap", both)
    (tmp_path / "keylog.txt").write_text(moved.keylog)
    v = check(tmp_path, rules="quic")
    keys = v.rule("quic.keys")
    assert keys.status == "fail" and len(keys.evidence) == 1
    what = keys.evidence[0].what
    assert "198.51.100.30:40000" in what and "no secrets for ClientHello" in what
    assert v.facts.quic.no_keys > 0  # type: ignore[union-attr]
    assert v.rule("quic.path_validation").status == "pass"  # the connection with keys is judged
