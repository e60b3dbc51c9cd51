"""Handover timelines: t0 is the new link's link_up, events belong to the link that came up,
missing events are said so, and each phase's duration stands beside its protocol floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed.conformance import Verdict, check
from tests.support.synth import (
    Assoc,
    Capture,
    Knobs,
    agent_events,
    dhcp_exchange,
    dhcp_message,
    router_advert,
    router_solicit,
    trash_capture,
    write_pcap,
)

S = 1_700_000_000.0
OLD, NEW, CN = "192.0.2.10", "198.51.100.10", "203.0.113.1"
SERVER = "198.51.100.1"
MN = "mn.mobile.test"


def _ev(kind: str, t: float, ifname: str, addresses: tuple[str, ...] = (), prefix: str | None = None) -> dict:
    return {"event": kind, "wall": S + t, "ifname": ifname, "addresses": list(addresses), "prefix": prefix}


def _check(tmp_path: Path, cap: Capture, **kw: Any) -> Verdict:
    cap.write_pcap(tmp_path / "ar2-mn.pcap")
    return check(tmp_path, mn_name=MN, **kw)


# -- t0 and the events of the link that came up ------------------------------------------------
def make_before_break_events() -> list[dict]:
    """ar1 → ar2, make-before-break: ar1 is lost only after ar2's address is configured (and
    after ADD_IP at +1.0). The first rows are left over from an earlier visit to ar2."""
    return [
        _ev("link_up", -20.0, "mn-ar2"),
        _ev("lost", -10.0, "mn-ar2", ("198.51.100.77",), "198.51.100.0/24"),  # the previous step
        _ev("link_up", 0.90, "mn-ar2"),
        _ev("detected", 0.95, "mn-ar2", (), "198.51.100.0/24"),
        _ev("detected", 0.97, "mn-ar2", (), "2001:db8:a2::/64"),  # the other family: later
        _ev("configured", 0.98, "mn-ar2", (NEW,), "198.51.100.0/24"),
        _ev("configured", 0.99, "mn-ar2", ("2001:db8:a2::10",), "2001:db8:a2::/64"),
        _ev("lost", 1.05, "mn-ar1", (OLD,), "192.0.2.0/24"),
    ]


def test_t0_is_the_new_links_link_up_and_the_old_link_is_lost_after(tmp_path: Path) -> None:
    events = make_before_break_events()
    v = _check(tmp_path, trash_capture(start=S), events=events, budgets={"dns_acked": 0.5})
    (ho,) = v.handovers
    assert ho["t0"] == S + 0.90
    off = ho["offsets"]
    assert off["link_up"] == 0.0
    assert off["lost"] == pytest.approx(0.15)  # after the new address, not the -10 s of the last step
    assert off["detected"] == pytest.approx(0.05)  # the IPv4 network's, the address's family
    assert off["configured"] == pytest.approx(0.08)
    assert ho["missing"] == [] and ho["notes"] == []
    assert v.statuses()["timeline.dns_acked"] == "pass" and v.passed


def test_each_handover_of_a_ping_pong_gets_its_own_link_events(tmp_path: Path) -> None:
    a = Assoc(OLD, CN)
    cap = Capture()
    for i, frame in enumerate(a.init()):
        cap.add(S + i * 0.001, frame)
    for frm, to, t in ((OLD, NEW, S + 1.0), (NEW, OLD, S + 5.0)):
        for kind in ("add", "set_primary"):
            pkt, serial, _corr = a.asconf(frm, kind, to)
            cap.add(t, pkt)
            cap.add(t + 0.002, a.asconf_ack(frm, serial))
            t += 0.01
        pkt, serial, _corr = a.asconf(to, "delete", frm)
        cap.add(t + 0.05, pkt)
        cap.add(t + 0.052, a.asconf_ack(to, serial))
    events = [
        _ev("link_up", 0.9, "mn-ar2"),
        _ev("configured", 0.98, "mn-ar2", (NEW,), "198.51.100.0/24"),
        _ev("lost", 1.05, "mn-ar1", (OLD,), "192.0.2.0/24"),
        _ev("link_up", 4.9, "mn-ar1"),
        _ev("configured", 4.98, "mn-ar1", (OLD,), "192.0.2.0/24"),
        _ev("lost", 5.05, "mn-ar2", (NEW,), "198.51.100.0/24"),
    ]
    v = _check(tmp_path, cap, events=events)
    h1, h2 = v.handovers
    assert (h1["address"], h2["address"]) == (NEW, OLD)
    assert (h1["t0"], h2["t0"]) == (S + 0.9, S + 4.9)
    assert (h1["phases"]["lost"], h2["phases"]["lost"]) == (S + 1.05, S + 5.05)
    assert h1["missing"] == h2["missing"] == ["detected"]  # no detected event was given


def test_missing_events_of_the_new_link_are_marked_not_replaced(tmp_path: Path) -> None:
    events = [e for e in make_before_break_events() if e["ifname"] == "mn-ar1"]  # only the old link
    v = _check(tmp_path, trash_capture(start=S), events=events, budgets={"configured": 1.0})
    (ho,) = v.handovers
    assert ho["t0"] is None and ho["offsets"] == {}
    assert ho["missing"] == ["link_up", "detected", "configured"]
    assert ho["phases"]["lost"] == S + 1.05  # the old link's loss lists the deleted address
    assert any("link_up" in n and "t0 unknown" in n for n in ho["notes"]), ho["notes"]
    assert "add_ip_sent" in ho["phases"]  # the capture's phases are still there, as absolute times
    rule = v.rule("timeline.configured")
    assert rule.status == "fail" and "t0 unknown" in rule.evidence[0].what


def test_without_events_t0_is_unknown_and_budgets_are_skipped(tmp_path: Path) -> None:
    v = _check(tmp_path, trash_capture(start=S), budgets={"dns_acked": 0.5})
    (ho,) = v.handovers
    assert ho["t0"] is None and ho["offsets"] == {}
    assert ho["missing"] == ["link_up", "detected", "configured", "lost"]
    assert ho["notes"] == ["agent events not given: t0 (the new link's link_up) unknown"]
    assert v.rule("timeline.dns_acked").status == "skip" and v.passed
    assert set(ho["durations"]) == {"set_primary_acked", "dns_acked"}  # capture-only phases


# -- protocol floors --------------------------------------------------------------------------
def test_floors_come_from_the_exchanges_that_got_through(tmp_path: Path) -> None:
    """First RS, first DISCOVER and first ADD_IP ASCONF are lost: each floor starts at the
    transmission that was answered; the phase durations keep the waits."""
    cap = trash_capture(start=S)
    add_ip = next(f for t, f in cap.frames if t == S + 1.0)
    cap.add(S + 0.99, add_ip)  # the ASCONF went out at +0.99 too; the +1.00 copy was answered
    cap.add(S + 0.10, router_solicit())  # the old link's exchange (same capture point here)
    cap.add(S + 0.1001, router_advert("fe80::a1", "2001:db8:a1::"))
    dhcp_exchange(cap, S + 0.20, 0x1111, "192.0.2.1", OLD)
    cap.add(S + 0.901, router_solicit())  # unanswered
    cap.add(S + 0.911, router_solicit())
    cap.add(S + 0.9113, router_advert("fe80::a2", "2001:db8:a2::"))
    cap.add(S + 0.902, dhcp_message("discover", 0x2222, SERVER, to_server=True))  # unanswered
    dhcp_exchange(cap, S + 0.920, 0x2222, SERVER, NEW, step=0.004)
    v = _check(tmp_path, cap, events=make_before_break_events())
    (ho,) = v.handovers
    fl = ho["floors"]
    assert fl["rs_ra"]["seconds"] == pytest.approx(0.0003)
    assert fl["rs_ra"]["from"]["time"] == S + 0.911
    assert fl["dhcp"]["what"] == "DHCP DISCOVER → ACK" and fl["dhcp"]["seconds"] == pytest.approx(0.012)
    assert fl["dhcp"]["from"]["time"] == S + 0.920
    assert fl["add_ip"]["what"] == "ASCONF ADD_IP → ASCONF-ACK"
    assert fl["add_ip"]["seconds"] == pytest.approx(0.002)  # from the answered copy, not +0.99
    assert fl["set_primary"]["seconds"] == pytest.approx(0.002)
    assert fl["dns"]["seconds"] == pytest.approx(0.002)
    assert ho["phases"]["add_ip_sent"] == S + 0.99
    d = ho["durations"]
    assert d["detected"] == {
        "from": "link_up", "seconds": pytest.approx(0.05), "floor": "dhcp",
        "floor_seconds": pytest.approx(0.012), "overhead": pytest.approx(0.038),
    }  # fmt: skip
    assert d["configured"]["floor"] is None and d["configured"]["overhead"] is None
    assert d["add_ip_acked"]["seconds"] == pytest.approx(0.022)  # configured → ADD_IP acked
    assert d["add_ip_acked"]["overhead"] == pytest.approx(0.020)
    assert d["dns_acked"]["floor"] == "dns" and d["dns_acked"]["from"] == "set_primary_acked"


def test_ipv6_handover_is_bounded_by_rs_ra_on_its_own_link(tmp_path: Path) -> None:
    old_link = Capture()
    old_link.add(S + 0.90, router_solicit("fe80::ab"))  # the old AR answers fast: not this link
    old_link.add(S + 0.9001, router_advert("fe80::a1", "2001:db8:1::"))
    new_link = Capture()
    new_link.add(S + 0.905, router_solicit())
    new_link.add(S + 0.9058, router_advert("fe80::a2", "2001:db8:2::"))
    old_link.write_pcap(tmp_path / "ar1-mn.pcap")
    new_link.write_pcap(tmp_path / "ar2-mn.pcap")
    trash_capture(Knobs(v6=True), start=S).write_pcap(tmp_path / "core.pcap")
    events = [
        _ev("link_up", 0.9, "mn-ar2"),
        _ev("detected", 0.906, "mn-ar2", (), "2001:db8:2::/64"),
        _ev("configured", 0.91, "mn-ar2", ("2001:db8:2::10",), "2001:db8:2::/64"),
    ]
    v = check(tmp_path, mn_name=MN, events=events)
    (ho,) = v.handovers
    assert ho["floors"]["rs_ra"]["from"]["pcap"] == "ar2-mn.pcap"
    assert ho["floors"]["rs_ra"]["seconds"] == pytest.approx(0.0008)
    assert "dhcp" not in ho["floors"]
    det = ho["durations"]["detected"]
    assert (det["floor"], det["floor_seconds"]) == ("rs_ra", pytest.approx(0.0008))
    assert det["overhead"] == pytest.approx(0.0052)
    assert ho["missing"] == ["lost"] and ho["notes"] == ["no 'lost' event for the old link"]


def test_no_access_link_in_the_capture_leaves_only_the_sctp_and_dns_floors(tmp_path: Path) -> None:
    write_pcap(tmp_path / "core.pcap", trash_capture(start=S).sorted_frames())
    v = check(tmp_path, mn_name=MN, events=agent_events(start=S))
    (ho,) = v.handovers
    assert set(ho["floors"]) == {"add_ip", "set_primary", "dns"}
    assert ho["durations"]["detected"]["floor_seconds"] is None


def test_an_exchange_across_links_is_timed_where_its_request_was_captured(tmp_path: Path) -> None:
    """mn.pcap sees the MN's packets first and the CN's 0.5 ms later, cn.pcap the reverse: the
    ADD_IP ASCONF is first captured on mn.pcap, its ACK on cn.pcap; the floor is the round
    trip on mn.pcap (ACK copy there), not the mix of the two first copies."""
    frames = trash_capture(start=S).sorted_frames()
    from_mn = [f[26:30] in (bytes([192, 0, 2, 10]), bytes([198, 51, 100, 10])) for _t, f in frames]
    pairs = list(zip(frames, from_mn, strict=True))
    write_pcap(tmp_path / "mn.pcap", [(t + (0 if m else 0.0005), f) for (t, f), m in pairs])
    write_pcap(tmp_path / "cn.pcap", [(t + (0.0005 if m else 0), f) for (t, f), m in pairs])
    v = check(tmp_path, mn_name=MN, events=agent_events(start=S))
    fl = v.handovers[0]["floors"]
    for name in ("add_ip", "set_primary", "dns"):
        assert fl[name]["from"]["pcap"] == fl[name]["to"]["pcap"] == "mn.pcap", fl[name]
        assert fl[name]["seconds"] == pytest.approx(0.0025)
    ack = v.facts.acks[0].where  # type: ignore[union-attr]
    assert ack.pcap == "cn.pcap"  # the phase and the evidence stay with the first copy
    assert v.handovers[0]["phases"]["add_ip_acked"] == ack.time


def test_a_dual_stack_move_is_one_handover_with_an_address_of_each_family(tmp_path: Path) -> None:
    """ADD_IP of the new IPv6 address, SET_PRIMARY of it, ADD_IP of the new IPv4 address (no
    SET_PRIMARY of its own), then DELETE_IP of both old addresses: one move, one handover."""
    old6, new6 = "2001:db8:a1::10", "2001:db8:a2::10"
    a = Assoc(OLD, CN)
    cap = Capture()
    for i, frame in enumerate(a.init()):
        cap.add(S + i * 0.001, frame)
    t = S + 1.0
    for src, kind, addr in ((OLD, "add", new6), (OLD, "set_primary", new6), (OLD, "add", NEW),
                            (NEW, "delete", OLD), (NEW, "delete", old6)):
        pkt, serial, _corr = a.asconf(src, kind, addr)
        cap.add(t, pkt)
        cap.add(t + 0.002, a.asconf_ack(src, serial))
        t += 0.01 if kind != "add" or addr != NEW else 1.0
    v = _check(tmp_path, cap, rules="asconf,order")
    (ho,) = v.handovers
    assert ho["address"] == new6 and ho["addresses"] == [new6, NEW]
    assert ho["old_address"] == old6 and sorted(ho["old_addresses"]) == sorted([OLD, old6])
    assert ho["phases"]["delete_ip_acked"] == pytest.approx(t - 0.01 + 0.002)  # the last delete
    assert v.rule("order.trash").status == "pass", v.rule("order.trash").message


def test_a_lone_add_of_the_same_family_is_a_handover_of_its_own(tmp_path: Path) -> None:
    a = Assoc(OLD, CN)
    cap = Capture()
    for i, frame in enumerate(a.init()):
        cap.add(S + i * 0.001, frame)
    for k, (kind, addr) in enumerate((("add", NEW), ("set_primary", NEW), ("add", "198.51.100.20"))):
        pkt, serial, _corr = a.asconf(OLD, kind, addr)
        cap.add(S + 1 + k * 0.01, pkt)
        cap.add(S + 1.002 + k * 0.01, a.asconf_ack(OLD, serial))
    v = _check(tmp_path, cap, rules="asconf,order")
    assert [h["address"] for h in v.handovers] == [NEW, "198.51.100.20"]
