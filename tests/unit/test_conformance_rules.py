"""Each broken step of the TraSH ladder fails exactly the rule it breaks; the rest pass."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from testbed.conformance import RULE_IDS, Verdict, check
from testbed.conformance.rules import SCTP_RULE_IDS
from testbed.decode.pcap import LINKTYPE_LINUX_SLL2
from testbed.errors import ConfigError
from tests.support.synth import Assoc, Capture, Knobs, addresses, agent_events, trash_capture, write_pcap

MN = "mn.mobile.test"


def _run(tmp_path: Path, cap: Capture, *, pcapng: bool = False, **kw: object) -> Verdict:
    if pcapng:
        cap.write_pcapng(tmp_path / "link.pcapng")
    else:
        cap.write_pcap(tmp_path / "link.pcap")
    return check(tmp_path, mn_name=MN, **kw)  # type: ignore[arg-type]


def _failing(v: Verdict) -> set[str]:
    return {r.id for r in v.rules if r.status == "fail"}


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_correct_ladder_passes_every_rule(tmp_path: Path, v6: bool, pcapng: bool) -> None:
    v = _run(tmp_path, trash_capture(Knobs(v6=v6)), pcapng=pcapng)
    assert v.passed, [r for r in v.rules if r.status != "pass"]
    assert set(v.statuses()) == set(RULE_IDS)
    # source.left_network needs the agent's events (when a network was left): skipped here
    assert all(v.statuses()[r] == "pass" for r in SCTP_RULE_IDS if r != "source.left_network")
    assert v.statuses()["source.left_network"] == "skip"
    assert all(v.statuses()[r] == "skip" for r in set(RULE_IDS) - set(SCTP_RULE_IDS))  # no TCP
    assert v.stats["malformed"] == 0 and v.stats["handovers"] == 1
    (ho,) = v.handovers
    new = "2001:db8:2::10" if v6 else "198.51.100.10"
    old = "2001:db8:1::10" if v6 else "192.0.2.10"
    assert (ho["address"], ho["old_address"]) == (new, old)
    assert "SHA-1" in v.rule("asconf.auth").message


BROKEN = [
    (Knobs(ack_add=False), "asconf.ack", "no ASCONF-ACK"),
    (Knobs(set_primary_first=True), "order.trash", "SET_PRIMARY acked before ADD_IP acked"),
    (Knobs(set_primary=False), "order.trash", "ADD_IP and DELETE_IP without SET_PRIMARY"),
    (Knobs(auth=False), "asconf.auth", "without AUTH"),
    (Knobs(forged_hmac=True), "asconf.auth", "HMAC does not verify"),
    (Knobs(dns_rcode=5), "dns.answered", "REFUSED"),
    (Knobs(skip_serial=True), "asconf.serial", "expected 1001"),
    (Knobs(serial_offset=7), "asconf.serial", "not the sender's initial TSN 1000"),
    (Knobs(signed=False), "dns.signed", "unsigned UPDATE"),
    (Knobs(refuse_set_primary=True), "asconf.success", "Request Refused - No Authorization"),
    (Knobs(lose_tsn=True), "continuity.tsn", "never seen"),
    (Knobs(data_to_old=True), "continuity.new_path", "not 198.51.100.10"),
    (Knobs(abort=True), "continuity.association", "User-Initiated Abort"),
    (Knobs(confirm="before"), "continuity.new_path", "not 198.51.100.10"),
]


@pytest.mark.parametrize(("knobs", "rule", "text"), BROKEN, ids=[b[1] + ":" + b[2][:12] for b in BROKEN])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_each_fault_fails_exactly_its_rule(
    tmp_path: Path, knobs: Knobs, rule: str, text: str, v6: bool
) -> None:
    knobs.v6 = v6
    if v6:
        text = text.replace("198.51.100.10", "2001:db8:2::10")
    v = _run(tmp_path, trash_capture(knobs))
    assert _failing(v) == {rule}, [(r.id, r.message) for r in v.rules if r.status != "pass"]
    res = v.rule(rule)
    assert res.evidence, res
    assert any(text in e.what for e in res.evidence), res.evidence
    ev = res.evidence[0]
    assert ev.pcap == "link.pcap" and ev.frame > 0 and ev.time > 1_700_000_000
    assert not v.passed


def test_sctp_only_capture_is_judged_on_sctp_rules(tmp_path: Path) -> None:
    cap = trash_capture()
    cap.frames = [(t, f) for t, f in cap.frames if b"\x00\x35" not in f[34:38]]  # drop port 53
    v = _run(tmp_path, cap)
    st = v.statuses()
    assert st["dns.signed"] == st["dns.answered"] == "skip"
    assert all(st[r] == "pass" for r in SCTP_RULE_IDS if not r.startswith(("dns.", "source.")))
    assert "DNS step skipped" in v.rule("order.trash").message


def test_dns_only_capture_skips_sctp_rules(tmp_path: Path) -> None:
    cap = trash_capture()
    cap.frames = [(t, f) for t, f in cap.frames if f[23] == 17]  # IPv4 proto UDP
    v = _run(tmp_path, cap)
    st = v.statuses()
    assert st["dns.signed"] == st["dns.answered"] == "pass"
    assert {r for r, s in st.items() if s == "skip"} == set(RULE_IDS) - {"dns.signed", "dns.answered"}


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_data_may_keep_the_old_path_until_the_new_one_is_confirmed(tmp_path: Path, v6: bool) -> None:
    """RFC 9260 §5.4: no DATA to an unconfirmed address. A DATA to the old address after
    SET_PRIMARY is acked but before the new address's HEARTBEAT-ACK is right; the first DATA
    after the confirmation is the one judged."""
    v = _run(tmp_path, trash_capture(Knobs(v6=v6, confirm="late")))
    res = v.rule("continuity.new_path")
    assert res.status == "pass" and "(1 once its path was confirmed by HEARTBEAT-ACK)" in res.message
    (ho,) = v.handovers
    assert ho["phases"]["first_data_new_path"] > ho["phases"]["set_primary_acked"] + 0.001


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_a_data_answering_a_packet_taken_in_before_the_confirmation_is_not_judged(tmp_path: Path,
                                                                                 v6: bool) -> None:
    """The HEARTBEAT-ACK arrives right behind a DATA of the MN's: the CN answers that DATA
    first (its SACK, with a DATA bundled, to the old path it still had), then learns of the
    confirmation. The first DATA after it has shown it took the confirmation in (a SACK of the
    MN's DATA from after it) is the one judged: to the old path, it fails the rule."""
    v = _run(tmp_path, trash_capture(Knobs(v6=v6, confirm="racing")))
    res = v.rule("continuity.new_path")
    assert res.status == "pass" and "(1 once its path was confirmed by HEARTBEAT-ACK)" in res.message, res
    (tmp_path / "alone").mkdir()
    after = _run(tmp_path / "alone", trash_capture(Knobs(v6=v6, confirm="racing-informed")))
    assert after.rule("continuity.new_path").status == "fail"


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_a_new_address_whose_heartbeat_went_unanswered_is_not_judged(tmp_path: Path, v6: bool) -> None:
    """The CN probed the new address and no HEARTBEAT-ACK came back (lost on a lossy link):
    the address stayed unconfirmed, so DATA on the old path is right, and the handover is
    counted as not judged. Without the probe in the capture, or when a second probe went
    unanswered too (a path that does not work), the same DATA fails the rule."""
    v = _run(tmp_path, trash_capture(Knobs(v6=v6, confirm="lost", data_to_old=True)))
    res = v.rule("continuity.new_path")
    assert res.status == "skip" and "1 handover(s) not judged" in res.message, res
    assert _failing(v) == set()
    (ho,) = v.handovers
    assert "first_data_new_path" not in ho["phases"]
    for case, knobs in (("unprobed", Knobs(v6=v6, data_to_old=True)),
                        ("unanswered", Knobs(v6=v6, confirm="unanswered", data_to_old=True))):
        (tmp_path / case).mkdir()
        assert _run(tmp_path / case, trash_capture(knobs)).rule("continuity.new_path").status == "fail", case


def test_refused_and_unanswered_inits_fail_the_association_rule(tmp_path: Path) -> None:
    """An INIT answered by ABORT (as Linux answers an INIT offering ASCONF without AUTH) is one
    refusal, cited at the ABORT; an INIT never answered is cited at the INIT; no ASCONF rule
    has anything to judge."""
    old, _new, cn, _dns = addresses(False)
    cap = Capture()
    init, abort = Assoc(old, cn).refused_init()
    cap.add(1_700_000_000.0, init)
    cap.add(1_700_000_000.001, abort)
    lost, _ack = Assoc(old, cn, mn_port=5002, mn_tag=0x33333333).init()
    cap.add(1_700_000_001.0, lost)
    v = _run(tmp_path, cap)
    res = v.rule("continuity.association")
    assert res.status == "fail"
    assert [(e.frame, e.what) for e in res.evidence] == [
        (2, f"INIT {old} → {cn} refused: ABORT from {cn} (no error cause)"),
        (3, f"INIT {old} → {cn} never answered by an INIT-ACK"),
    ]
    assert {r.id for r in v.rules if r.id.startswith("asconf.")} <= {
        r.id for r in v.rules if r.status == "skip"}


def test_mn_name_filters_updates(tmp_path: Path) -> None:
    trash_capture(Knobs(signed=False)).write_pcap(tmp_path / "a.pcap")
    v = check(tmp_path, mn_name="other.mobile.test")
    assert v.statuses()["dns.signed"] == "skip"


def test_garbage_and_truncated_packets_are_counted_not_fatal(tmp_path: Path) -> None:
    cap = trash_capture()
    frames = cap.sorted_frames()
    t = frames[5][0]
    asconf = next(f for _t, f in frames if len(f) > 80 and f[34 + 12 + 28] == 0xC1)  # after AUTH
    cap.add(t + 1e-4, b"\xff" * 9)  # shorter than Ethernet
    cap.add(t + 2e-4, asconf[:-6])  # truncated IP packet
    bad_ip = bytearray(asconf)
    struct.pack_into("!H", bad_ip, 16, 9)  # IPv4 total length < header
    cap.add(t + 3e-4, bytes(bad_ip))
    cap.add(t + 4e-4, bytes(Ether(dst="02:00:00:00:00:02") / IP(proto=132) / b"\x01\x02"))
    path = tmp_path / "g.pcap"
    cap.write_pcap(path)
    path.write_bytes(path.read_bytes() + b"\x01\x02\x03")  # torn last record header
    v = check(tmp_path, mn_name=MN)
    assert v.passed
    assert v.stats["malformed"] == 4
    reasons = " | ".join(e["reason"] for e in v.stats["malformed_examples"])
    assert "truncated IPv4 packet" in reasons and "bad IPv4 header" in reasons
    assert "truncated SCTP common header" in reasons
    assert v.stats["capture_problems"] and "truncated" in v.stats["capture_problems"][0]


def test_same_packets_on_two_links_are_deduplicated(tmp_path: Path) -> None:
    frames = trash_capture().sorted_frames()
    write_pcap(tmp_path / "link1.pcap", frames)
    later = []
    for t, f in frames:
        b = bytearray(f)
        if b[12:14] == b"\x08\x00":
            b[22] -= 1  # TTL: changes hop by hop, ignored by the dedup key
        later.append((t + 0.0004, bytes(b)))
    write_pcap(tmp_path / "link2.pcap", later)
    v = check(tmp_path, mn_name=MN)
    assert v.passed, [(r.id, r.message) for r in v.rules if r.status == "fail"]
    assert v.stats["duplicates_removed"] == len(frames)
    assert v.stats["packets"] == 2 * len(frames)
    assert "0 dup" in v.rule("continuity.tsn").message


def test_tcpdump_any_sll2_copies_deduplicated_but_retransmissions_kept(tmp_path: Path) -> None:
    frames = trash_capture().sorted_frames()

    def sll2(ifindex: int, eth: bytes) -> bytes:
        return struct.pack("!HHIHBB8s", 0x0800, 0, ifindex, 1, 0, 6, eth[6:12] + b"\0\0") + eth[14:]

    out = []
    for t, f in frames:
        out += [(t, sll2(2, f)), (t + 0.0001, sll2(3, f))]  # in on one port, out on another
    data = next(f for _t, f in frames if f[23] == 132 and f[46] == 0 and f[26:30] != f[30:34])
    out.append((frames[-1][0] + 0.01, sll2(2, data)))  # a genuine retransmission
    write_pcap(tmp_path / "any.pcap", out, linktype=LINKTYPE_LINUX_SLL2)
    v = check(tmp_path, mn_name=MN)
    assert v.passed
    assert v.stats["duplicates_removed"] == len(frames)
    assert "1 dup" in v.rule("continuity.tsn").message


def test_timeline_with_events_and_budgets(tmp_path: Path) -> None:
    cap = trash_capture()
    v = _run(
        tmp_path,
        cap,
        events=agent_events(),
        budgets={"dns_acked": 0.5, "delete_ip_acked": 0.1},
    )
    st = v.statuses()
    assert st["timeline.dns_acked"] == "pass"
    assert st["timeline.delete_ip_acked"] == "fail"
    assert _failing(v) == {"timeline.delete_ip_acked"}
    (ho,) = v.handovers
    assert list(ho["phases"])[:4] == ["lost", "link_up", "detected", "configured"]
    off = ho["offsets"]
    assert off["link_up"] == 0.0
    assert off["configured"] == pytest.approx(0.08, abs=1e-5)
    assert off["add_ip_acked"] == pytest.approx(0.102, abs=1e-5)
    assert off["set_primary_acked"] < off["dns_acked"] < off["delete_ip_acked"]
    assert off["first_data_new_path"] == pytest.approx(0.13, abs=1e-5)


def test_address_configured_after_add_ip_breaks_order(tmp_path: Path) -> None:
    events = agent_events()
    events[-1]["wall"] = 1_700_000_001.5  # configured after ADD_IP went out
    v = _run(tmp_path, trash_capture(), events=events)
    assert _failing(v) == {"order.trash"}
    assert "before address configured" in v.rule("order.trash").evidence[0].what


def test_events_without_wall_time_leave_phases_out(tmp_path: Path) -> None:
    events = [{k: v for k, v in e.items() if k != "wall"} for e in agent_events()]
    v = _run(tmp_path, trash_capture(), events=events)
    assert v.passed and "link_up" not in v.handovers[0]["phases"]


def test_rule_selection(tmp_path: Path) -> None:
    v = _run(tmp_path, trash_capture(Knobs(dns_rcode=5)), rules="asconf,continuity.tsn")
    assert set(v.statuses()) == {
        "asconf.auth", "asconf.serial", "asconf.ack", "asconf.success", "continuity.tsn"
    }  # fmt: skip
    assert v.passed
    with pytest.raises(ConfigError, match="unknown rule"):
        check(tmp_path, rules="bogus")
    with pytest.raises(ConfigError, match="unknown phase"):
        check(tmp_path, budgets={"nope": 1.0})


def test_verdict_json_shape(tmp_path: Path) -> None:
    v = _run(tmp_path, trash_capture(Knobs(ack_add=False)))
    d = v.to_dict()
    assert set(d) == {"schema", "passed", "rules", "stats", "budgets", "handovers"}
    assert d["schema"] == 4 and d["passed"] is False and d["budgets"] == {}
    r = next(r for r in d["rules"] if r["id"] == "asconf.ack")
    assert set(r) == {"id", "status", "message", "evidence"}
    assert set(r["evidence"][0]) == {"pcap", "frame", "time", "what"}
    for key in ("packets", "malformed", "unknown"):
        assert key in d["stats"]


def test_gap_filled_by_a_later_retransmission_passes(tmp_path: Path) -> None:
    cap = trash_capture()
    frames = cap.sorted_frames()
    to_mn = [(t, f) for t, f in frames if f[23] == 132 and f[46] == 0 and f[30:34] == bytes([192, 0, 2, 10])]
    t, late = to_mn[1]
    cap.frames.remove((t, late))
    cap.add(t + 0.015, late)  # arrives after its successor: a gap, filled later
    v = _run(tmp_path, cap)
    assert v.passed
    assert "1 gaps filled" in v.rule("continuity.tsn").message


def test_ipv6_pcapng_with_sll2_link_type(tmp_path: Path) -> None:
    frames = trash_capture(Knobs(v6=True)).sorted_frames()
    sll2 = [(t, struct.pack("!HHIHBB8s", 0x86DD, 0, 4, 1, 4, 6, f[:6] + b"\0\0") + f[14:]) for t, f in frames]
    from tests.support.synth import write_pcapng

    write_pcapng(tmp_path / "any.pcapng", sll2, linktype=LINKTYPE_LINUX_SLL2)
    v = check(tmp_path, mn_name=MN)
    assert v.passed and all(v.statuses()[r] == "pass" for r in SCTP_RULE_IDS if r != "source.left_network")
    assert v.handovers[0]["address"] == "2001:db8:2::10"


def test_verdict_carries_the_callers_lab_block_and_budgets(tmp_path: Path) -> None:
    lab = {"machine": {"cores": 2}, "backend": "mininet",
           "nodes": {"mn": {"stack": "vm", "kernel": "6.1.0-56-amd64", "accelerator": "tcg"}}}  # fmt: skip
    v = _run(tmp_path, trash_capture(), lab=lab, budgets={"dns_acked": 0.5})
    v.write(tmp_path / "verdict.json")
    d = json.loads((tmp_path / "verdict.json").read_text())
    assert d["schema"] == 4 and d["lab"] == lab and d["budgets"] == {"dns_acked": 0.5}
    assert "lab" not in _run(tmp_path, trash_capture()).to_dict()


def test_broken_router_advertisements_and_dhcp_are_counted_not_fatal(tmp_path: Path) -> None:
    from tests.support.synth import dhcp_message, router_advert

    cap = trash_capture()
    t = cap.sorted_frames()[3][0]
    ra = router_advert("fe80::a2", "2001:db8:a2::")
    cap.add(t + 1e-4, ra[:-9])  # IPv6 payload length now overruns the frame: truncated IPv6
    bad_opt = bytearray(ra)
    bad_opt[14 + 40 + 16 + 1] = 0  # the prefix option's length 0 (RFC 4861 §4.6: invalid)
    cap.add(t + 2e-4, bytes(bad_opt))
    bootp = dhcp_message("ack", 7, "198.51.100.1", to_server=False, yiaddr="198.51.100.10")[42:]

    def udp(payload: bytes) -> bytes:
        eth = Ether(src="02:00:00:00:00:a2", dst="ff:ff:ff:ff:ff:ff")
        return bytes(eth / IP(src="198.51.100.1", dst="255.255.255.255") / UDP(sport=67, dport=68) / payload)

    cap.add(t + 3e-4, udp(bootp[:240] + b"\x35\x01\x05\x36\x04\xc6"))  # server id option cut
    cap.add(t + 4e-4, udp(bootp[:100]))  # no magic cookie: not DHCP
    v = _run(tmp_path, cap)
    assert v.passed
    reasons = [e["reason"] for e in v.stats["malformed_examples"]]
    assert any("truncated IPv6 packet" in r for r in reasons), reasons
    assert "ICMPv6: option 3 with length 0" in reasons
    assert "DHCP: option 54 overruns the message" in reasons
    assert v.stats["malformed"] == 3 and v.stats["unknown_kinds"] == {"UDP": 1}
    assert v.stats["nd_messages"] == 1 and v.stats["dhcp_messages"] == 1  # kept, flagged


def test_expectations_decide_the_verdict():
    """A scenario's expectations: a rule expected to fail that fails is met; a skipped rule
    meets no expectation; a rule nobody judged is added as an unmet skip."""
    from testbed.conformance.verdict import RuleResult, Verdict

    v = Verdict((RuleResult("order.trash", "fail", "no SET_PRIMARY"), RuleResult("asconf.auth", "pass", ""),
                 RuleResult("dns.signed", "skip", "no UPDATE")))
    assert not v.passed
    e = v.expecting({"order.trash": "fail"})
    assert e.passed and e.rule("order.trash").met and e.to_dict()["rules"][0]["expected"] == "fail"
    assert not v.expecting({"order.trash": "fail", "dns.signed": "pass"}).passed  # a skip meets none
    typo = v.expecting({"order.trash": "fail", "order.trahs": "fail"})
    assert not typo.passed and typo.rule("order.trahs").status == "skip"
    assert typo.to_dict()["expectations"] == {"order.trash": "fail", "order.trahs": "fail"}
    assert not v.expecting({"asconf.auth": "fail"}).passed  # passing where a failure was expected


def test_an_asconf_ack_lost_on_the_way_back_answers_nothing(tmp_path: Path) -> None:
    """Two capture points: the MN's access link and the CN's. The DELETE_IP's ASCONF-ACK is
    captured where the CN sent it but never on the MN's link (dropped on the way, as at a NAT
    or a router with no route to the MN's address): asconf.ack fails, naming the link."""
    from tests.support.synth import Assoc, Capture

    a = Assoc("192.0.2.10", "203.0.113.1")
    mn_link, cn_link = Capture(), Capture()
    t = 1_700_000_000.0
    for frame in a.init():
        mn_link.add(t, frame)
        cn_link.add(t + 0.0002, frame)
    pkt, serial, _c = a.asconf("198.51.100.10", "delete", "192.0.2.10")
    mn_link.add(t + 1, pkt)
    cn_link.add(t + 1.0002, pkt)
    cn_link.add(t + 1.001, a.asconf_ack("198.51.100.10", serial))  # never on the MN's link
    mn_link.write_pcap(tmp_path / "ar2-mn.pcap")
    cn_link.write_pcap(tmp_path / "core-cn.pcap")
    v = check(tmp_path, rules="asconf")
    r = v.rule("asconf.ack")
    assert r.status == "fail" and "never reached ar2-mn.pcap" in r.evidence[0].what
    mn_link.add(t + 1.0012, a.asconf_ack("198.51.100.10", serial))  # now it arrives
    mn_link.write_pcap(tmp_path / "ar2-mn.pcap")
    assert check(tmp_path, rules="asconf").rule("asconf.ack").status == "pass"


def test_sctp_over_udp_is_judged_as_sctp(tmp_path: Path) -> None:
    """RFC 6951: SCTP packets inside UDP to or from port 9899 are read as SCTP."""
    from scapy.layers.inet import IP as IPL

    from testbed.decode.sctp import SCTP_UDP_PORT

    def in_udp(frame: bytes) -> bytes:
        ip = IPL(frame[14:])
        return bytes(Ether() / IP(src=ip.src, dst=ip.dst) / UDP(sport=SCTP_UDP_PORT, dport=SCTP_UDP_PORT)
                     / bytes(ip.payload))

    frames = [(t, in_udp(f)) for t, f in trash_capture().sorted_frames() if IPL(f[14:]).proto == 132]
    write_pcap(tmp_path / "udp.pcap", frames)
    v = check(tmp_path, rules="asconf,order")
    assert v.stats["asconf"] == 3 and v.rule("asconf.ack").status == "pass"
    assert v.rule("order.trash").status == "pass" and len(v.handovers) == 1


def test_an_abort_of_a_set_up_association_fails_continuity_association(tmp_path: Path) -> None:
    from scapy.layers.sctp import SCTPChunkAbort

    from tests.support.synth import Assoc

    cap = trash_capture()
    a = Assoc("192.0.2.10", "203.0.113.1")
    last = max(t for t, _ in cap.frames)
    cap.add(last + 0.1, a.from_cn("203.0.113.6", [SCTPChunkAbort(TCB=1)]))
    cap.write_pcap(tmp_path / "c.pcap")
    r = check(tmp_path, rules="continuity").rule("continuity.association")
    assert r.status == "fail"
    assert "→ 203.0.113.6" in r.evidence[0].what and "T bit" in r.evidence[0].what


def test_continuity_association_passes_a_clean_capture(tmp_path: Path) -> None:
    trash_capture().write_pcap(tmp_path / "c.pcap")
    r = check(tmp_path, rules="continuity").rule("continuity.association")
    assert r.status == "pass" and "none aborted" in r.message


def test_sending_from_an_address_of_a_network_left_fails_source_left_network(tmp_path: Path) -> None:
    """The agent lost 192.0.2.10 at +1.05 s; a packet from it at +3 s (sent over the new link:
    what an ingress filter drops) fails the rule; one just inside the grace does not."""
    from tests.support.synth import Assoc

    cap = trash_capture()
    s0 = min(t for t, _ in cap.frames)
    a = Assoc("192.0.2.10", "203.0.113.1")
    events = [{"event": "lost", "wall": s0 + 1.05, "ifname": "mn-ar1", "prefix": "192.0.2.0/24",
               "addresses": ["192.0.2.10"]}]
    cap.add(s0 + 1.06, a.sack_from_mn("192.0.2.10"))  # queued before the loss
    cap.write_pcap(tmp_path / "c.pcap")
    assert check(tmp_path, rules="source", events=events).rule("source.left_network").status == "pass"
    cap.add(s0 + 3.0, a.sack_from_mn("192.0.2.10"))
    cap.write_pcap(tmp_path / "c.pcap")
    r = check(tmp_path, rules="source", events=events).rule("source.left_network")
    assert r.status == "fail" and "192.0.2.10 1.950s after" in r.evidence[0].what
    back = events + [{"event": "configured", "wall": s0 + 2.5, "ifname": "mn-ar1",
                      "prefix": "192.0.2.0/24", "addresses": ["192.0.2.10"]}]  # moved back first
    assert check(tmp_path, rules="source", events=back).rule("source.left_network").status == "pass"


def test_hmacs_are_verified_against_the_handshake(tmp_path: Path) -> None:
    v = _run(tmp_path, trash_capture())
    assert "6 HMAC(s) verified" in v.rule("asconf.auth").message


def test_a_configured_shared_key_must_be_given_to_verify(tmp_path: Path) -> None:
    """Both ends configured an endpoint-pair key: the empty key no longer verifies, the
    configured one does, and a capture without the handshake leaves HMACs unjudged."""
    from tests.support import synth

    cap = synth.trash_capture()
    keyed = synth.Capture()
    a = synth.Assoc(*synth.addresses(False)[::2], shared_key=b"lab-secret")
    pkt, serial, _ = a.asconf("192.0.2.10", "add", "198.51.100.10")
    init, init_ack = a.init()
    for t, f in ((1.0, init), (1.001, init_ack), (1.1, pkt), (1.102, a.asconf_ack("192.0.2.10", serial))):
        keyed.add(1_700_000_000 + t, f)
    keyed.write_pcap(tmp_path / "k.pcap")
    assert check(tmp_path).rule("asconf.auth").status == "fail"
    ok = check(tmp_path, auth_keys={0: b"lab-secret"}).rule("asconf.auth")
    assert ok.status == "pass" and "2 HMAC(s) verified" in ok.message, ok
    cap.frames = [(t, f) for t, f in cap.frames if f[34 + 12] not in (1, 2)]  # no INIT, INIT-ACK
    cap.write_pcap(tmp_path / "k.pcap")
    unjudged = check(tmp_path).rule("asconf.auth")
    assert unjudged.status == "pass" and "6 not verifiable" in unjudged.message
