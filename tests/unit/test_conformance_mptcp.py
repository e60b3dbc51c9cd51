"""The TCP binding-update rules on synthetic captures: one MPTCP handover judged rule by rule
(each fault fails exactly its rule), HMACs verified from the keys, and a plain TCP connection
that breaks across the move."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.conformance import check
from testbed.conformance.checker import select_rules
from testbed.errors import ConfigError
from tests.support.mptcp_synth import CN, MN_NEW, MN_OLD, Knobs, S, mptcp_handover, tcp_break

MPTCP_RULES = ("mptcp.join", "mptcp.add_addr", "mptcp.prio", "mptcp.remove", "order.mptcp",
               "continuity.dss")


def _verdict(tmp_path: Path, cap, **kw):
    cap.write_pcap(tmp_path / "cn-core.pcap")
    return check(tmp_path, **kw)


def test_rules_mptcp_selects_the_mptcp_group():
    assert select_rules("mptcp") == list(MPTCP_RULES)
    assert "continuity.tcp" in select_rules("continuity") and "continuity.dss" in select_rules("continuity")
    assert "order.mptcp" in select_rules("order")


def test_a_transport_keeps_only_its_own_rules():
    sctp = ["order.trash", "continuity.association", "continuity.tsn", "continuity.new_path"]
    assert select_rules("order,continuity", "sctp") == sctp
    tcp = ["dns.signed", "dns.answered", "source.left_network", "continuity.tcp", "timeline"]
    assert select_rules(None, "tcp") == tcp
    assert "asconf.auth" not in select_rules(None, "mptcp") and "mptcp.prio" in select_rules(None, "mptcp")
    with pytest.raises(ConfigError, match="unknown transport"):
        select_rules(None, "dccp")


def test_an_mptcp_run_judged_as_such_has_no_sctp_rule_that_skips(tmp_path: Path) -> None:
    v = _verdict(tmp_path, mptcp_handover(), transport="mptcp")
    assert [r.id for r in v.rules] == ["dns.signed", "dns.answered", "source.left_network", *MPTCP_RULES]
    assert all(r.status == "pass" for r in v.rules if r.id in MPTCP_RULES), v.rules


def test_a_correct_handover_passes_every_mptcp_rule(tmp_path: Path) -> None:
    v = _verdict(tmp_path, mptcp_handover(), rules="mptcp,continuity")
    st = v.statuses()
    assert all(st[r] == "pass" for r in MPTCP_RULES), v.rules
    assert st["continuity.tcp"] == "skip" and st["continuity.tsn"] == "skip"
    (h,) = v.handovers
    assert (h["transport"], h["address"], h["old_address"]) == ("mptcp", MN_NEW, MN_OLD)
    order = ["join_sent", "join_acked", "add_addr_sent", "add_addr_echoed", "prio_new", "prio_old",
             "remove_sent"]
    assert [p for p in h["phases"] if p in order] == order
    assert sorted(h["phases"][p] for p in order) == [h["phases"][p] for p in order]
    assert set(h["floors"]) == {"join", "add_addr"}
    assert h["floors"]["join"]["seconds"] == pytest.approx(0.001, abs=1e-4)
    assert v.stats["mptcp_connections"] == 1


@pytest.mark.parametrize(("knob", "rule"), [
    ("forge_add_addr", "mptcp.add_addr"),
    ("no_echo", "mptcp.add_addr"),
    ("forge_join", "mptcp.join"),
    ("no_prio", "mptcp.prio"),
    ("dsn_hole", "continuity.dss"),
])
def test_each_fault_fails_exactly_its_rule(tmp_path: Path, knob: str, rule: str) -> None:
    v = _verdict(tmp_path, mptcp_handover(Knobs(**{knob: True})), rules="mptcp")
    failed = [r.id for r in v.rules if r.status == "fail"]
    assert failed == [rule], v.rules
    assert v.rule(rule).evidence and v.rule(rule).evidence[0].pcap == "cn-core.pcap"


def test_a_forged_announcement_names_the_hmac(tmp_path: Path) -> None:
    v = _verdict(tmp_path, mptcp_handover(Knobs(forge_add_addr=True)), rules="mptcp.add_addr")
    (r,) = v.rules
    assert "does not verify" in r.evidence[0].what and MN_NEW in r.evidence[0].what


def test_without_remove_addr_the_rule_skips_and_order_notes_it(tmp_path: Path) -> None:
    v = _verdict(tmp_path, mptcp_handover(Knobs(no_remove=True)), rules="mptcp")
    assert v.rule("mptcp.remove").status == "skip"
    order = v.rule("order.mptcp")
    assert order.status == "pass" and "REMOVE_ADDR" in order.message.split("not judged")[1]


def test_agent_events_give_t0_and_dns_after_mp_prio_is_in_order(tmp_path: Path) -> None:
    cap = mptcp_handover()
    events = [
        {"event": "link_up", "wall": S + 0.30, "ifname": "mn-ar2"},
        {"event": "detected", "wall": S + 0.31, "ifname": "mn-ar2", "prefix": "198.51.100.0/24"},
        {"event": "configured", "wall": S + 0.32, "ifname": "mn-ar2", "prefix": "198.51.100.0/24",
         "addresses": [MN_NEW]},
    ]
    v = _verdict(tmp_path, cap, rules="mptcp,timeline", events=events, budgets={"prio_old": 5.0})
    (h,) = v.handovers
    assert h["t0"] == pytest.approx(S + 0.30)
    assert "join_acked" in h["durations"] and h["durations"]["join_acked"]["floor"] == "join"
    assert v.rule("timeline.prio_old").status == "pass"


def test_configured_after_the_join_breaks_order(tmp_path: Path) -> None:
    events = [{"event": "configured", "wall": S + 9.0, "ifname": "mn-ar2", "prefix": "198.51.100.0/24",
               "addresses": [MN_NEW]}]
    v = _verdict(tmp_path, mptcp_handover(), rules="order.mptcp", events=events)
    assert v.rule("order.mptcp").status == "fail"


def test_a_plain_tcp_connection_that_broke_says_where(tmp_path: Path) -> None:
    v = _verdict(tmp_path, tcp_break(), rules="continuity")
    r = v.rule("continuity.tcp")
    assert r.status == "fail"
    (e,) = r.evidence
    assert f"{MN_OLD}:41000 → {CN}:5001 broke" in e.what
    assert "1000 acknowledged" in e.what and "4 re-sends over 3.0 s" in e.what
    assert v.rule("continuity.dss").status == "skip"


def test_a_plain_tcp_connection_closed_cleanly_passes(tmp_path: Path) -> None:
    v = _verdict(tmp_path, tcp_break(broken=False), rules="continuity.tcp")
    assert v.rule("continuity.tcp").status == "pass"


def test_expected_break_is_met(tmp_path: Path) -> None:
    v = _verdict(tmp_path, tcp_break(), rules="continuity.tcp").expecting({"continuity.tcp": "fail"})
    assert v.passed


def test_a_return_to_the_first_address_is_a_second_handover(tmp_path: Path) -> None:
    v = _verdict(tmp_path, mptcp_handover(Knobs(back=True)), rules="mptcp")
    assert [h["address"] for h in v.handovers] == [MN_NEW, MN_OLD]
    assert [h["old_address"] for h in v.handovers] == [MN_OLD, MN_NEW]
    assert all(r.status == "pass" for r in v.rules), v.rules


def test_a_mapping_missing_from_the_capture_but_acknowledged_is_not_a_loss(tmp_path: Path) -> None:
    v = _verdict(tmp_path, mptcp_handover(Knobs(uncaptured=True)), rules="continuity.dss")
    r = v.rule("continuity.dss")
    assert r.status == "pass" and "1 mapping(s) missing from the capture but acknowledged" in r.message


def test_a_real_hosts_tcpdump_any_capture_is_judged_the_same(tmp_path: Path) -> None:
    """``tcpdump -i any`` (Linux cooked v2), begun after the MP_CAPABLE handshake: the joins
    are then unverified, not failed, and the rest is judged as in the lab."""
    import struct

    from tests.support.synth import write_pcapng

    frames = mptcp_handover().sorted_frames()[4:]  # the handshake and first data not captured
    sll2 = [(t, struct.pack("!HHIHBB8s", 0x0800, 0, 3, 1, 4, 6, f[:6] + b"\0\0") + f[14:]) for t, f in frames]
    write_pcapng(tmp_path / "any.pcapng", sll2, linktype=276)
    v = check(tmp_path, rules="mptcp")
    join = v.rule("mptcp.join")
    assert join.status == "pass" and "1 unverified" in join.message
    assert v.rule("mptcp.add_addr").status == "pass" and "unverified" in v.rule("mptcp.add_addr").message
    assert v.rule("mptcp.remove").status == "pass"
