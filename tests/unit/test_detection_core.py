"""DetectionCore fed synthetic observations: which events, in which order, deduplicated."""

from __future__ import annotations

from testbed.mobility.detection.core import DetectionCore
from testbed.mobility.detection.observations import (
    IFA_F_OPTIMISTIC,
    IFA_F_TENTATIVE,
    AddrObs,
    DhcpObs,
    LinkObs,
    PrefixInfo,
    RAObs,
    Stamp,
)
from testbed.mobility.events import Event

P1 = "2001:db8:a1::/64"
P2 = "2001:db8:a2::/64"


def at(t: float) -> Stamp:
    return Stamp(t, 1_700_000_000.0 + t)


def up(core: DetectionCore, ifname: str, t: float) -> list[Event]:
    return core.observe(LinkObs(ifname, 2, True, True, "02:00:00:00:00:01"), at(t))


def ra(ifname: str, prefix: str, valid: int = 86400) -> RAObs:
    return RAObs(ifname, "fe80::1", 1800, (PrefixInfo(prefix, valid, valid, True, True),))


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def test_link_up_then_ra_detects_then_address_configures_in_order() -> None:
    core = DetectionCore()
    out = up(core, "eth1", 1.0)
    out += core.observe(ra("eth1", P2), at(1.05))
    out += core.observe(AddrObs("eth1", "2001:db8:a2::5", 64), at(2.5))
    assert kinds(out) == ["link_up", "detected", "configured"]
    det, conf = out[1], out[2]
    assert (det.prefix, det.router, det.source) == (P2, "fe80::1", "ra")
    assert conf.prefix == P2 and conf.addresses == ("2001:db8:a2::5",)
    assert [e.seq for e in out] == [1, 2, 3]
    assert [e.mono for e in out] == [1.0, 1.05, 2.5]


def test_same_prefix_again_is_not_detected_twice() -> None:
    core = DetectionCore()
    up(core, "eth1", 0)
    first = core.observe(ra("eth1", P1), at(1))
    again = core.observe(ra("eth1", P1), at(2))
    assert kinds(first) == ["detected"] and again == []
    # a second address in the same network is configured, the network is not re-detected
    core.observe(AddrObs("eth1", "2001:db8:a1::5", 64), at(3))
    more = core.observe(AddrObs("eth1", "2001:db8:a1::6", 64), at(4))
    assert kinds(more) == ["configured"]
    assert more[0].addresses == ("2001:db8:a1::5", "2001:db8:a1::6")


def test_tentative_address_waits_unless_optimistic_allowed() -> None:
    core = DetectionCore()
    up(core, "eth1", 0)
    core.observe(ra("eth1", P1), at(1))
    tentative = AddrObs("eth1", "2001:db8:a1::5", 64, IFA_F_TENTATIVE | IFA_F_OPTIMISTIC)
    assert core.observe(tentative, at(1.1)) == []
    assert kinds(core.observe(AddrObs("eth1", "2001:db8:a1::5", 64), at(2))) == ["configured"]

    opt = DetectionCore(optimistic_ok=True)
    up(opt, "eth1", 0)
    opt.observe(ra("eth1", P1), at(1))
    assert kinds(opt.observe(tentative, at(1.1))) == ["configured"]
    # DAD completing later does not configure it again
    assert opt.observe(AddrObs("eth1", "2001:db8:a1::5", 64), at(2)) == []


def test_carrier_loss_emits_link_down_and_lost_with_addresses() -> None:
    core = DetectionCore()
    up(core, "eth0", 0)
    core.observe(ra("eth0", P1), at(1))
    core.observe(AddrObs("eth0", "2001:db8:a1::5", 64), at(2))
    out = core.observe(LinkObs("eth0", 2, True, False), at(3))
    assert kinds(out) == ["link_down", "lost"]
    assert out[0].reason == "carrier"
    assert (out[1].prefix, out[1].addresses, out[1].reason) == (P1, ("2001:db8:a1::5",), "carrier")
    assert core.usable_addresses() == []


def test_reattach_to_same_network_reuses_kept_address_at_once() -> None:
    core = DetectionCore()
    up(core, "eth0", 0)
    core.observe(ra("eth0", P1), at(1))
    core.observe(AddrObs("eth0", "2001:db8:a1::5", 64), at(2))
    core.observe(LinkObs("eth0", 2, True, False), at(3))
    out = up(core, "eth0", 4) + core.observe(ra("eth0", P1), at(4.01))
    assert kinds(out) == ["link_up", "detected", "configured"]
    assert out[2].source == "existing" and out[2].addresses == ("2001:db8:a1::5",)


def test_address_removed_and_lifetime_expiry_and_ra_zero_are_lost() -> None:
    core = DetectionCore()
    up(core, "eth0", 0)
    core.observe(ra("eth0", P1, valid=30), at(1))
    core.observe(AddrObs("eth0", "2001:db8:a1::5", 64), at(2))
    removed = core.observe(AddrObs("eth0", "2001:db8:a1::5", 64, removed=True), at(3))
    assert kinds(removed) == ["lost"] and removed[0].reason == "removed"

    core.observe(ra("eth0", P1, valid=30), at(10))
    assert core.next_deadline() == 40
    assert core.tick(at(39.9)) == []
    expired = core.tick(at(40))
    assert kinds(expired) == ["lost"] and expired[0].reason == "expired"

    core.observe(ra("eth0", P2), at(50))
    zero = core.observe(ra("eth0", P2, valid=0), at(51))
    assert kinds(zero) == ["lost"] and zero[0].reason == "ra-zero"


def test_dhcp_ack_detects_subnet_then_ipv4_address_configures() -> None:
    core = DetectionCore()
    up(core, "eth1", 0)
    offer = DhcpObs("eth1", 2, "198.51.100.10", "198.51.100.1", "198.51.100.0/24", None, 600)
    assert core.observe(offer, at(0.1)) == []
    ack = DhcpObs("eth1", 5, "198.51.100.10", "198.51.100.1", "198.51.100.0/24", None, 600)
    out = core.observe(ack, at(0.2))
    out += core.observe(AddrObs("eth1", "198.51.100.10", 24), at(0.21))
    assert kinds(out) == ["detected", "configured"]
    assert out[0].source == "dhcp" and out[0].router == "198.51.100.1"
    assert out[1].addresses == ("198.51.100.10",)
    assert core.observe(ack, at(5)) == []  # renewal: same network


def test_address_in_unknown_subnet_is_detected_first() -> None:
    core = DetectionCore()
    up(core, "eth0", 0)
    out = core.observe(AddrObs("eth0", "192.0.2.10", 24), at(1))
    assert kinds(out) == ["detected", "configured"]
    assert out[0].prefix == "192.0.2.0/24" and out[0].source == "address"


def test_link_local_and_down_links_make_no_networks() -> None:
    core = DetectionCore()
    core.observe(LinkObs("eth0", 2, True, False), at(0))
    assert core.observe(AddrObs("eth0", "fe80::5", 64, scope=253), at(1)) == []
    assert core.rs_source("eth0") == "fe80::5"
    assert core.observe(ra("eth0", P1), at(2)) == []  # no carrier: ignore
    assert core.observe(AddrObs("eth0", "192.0.2.10", 24), at(3)) == []  # stale until confirmed


def test_rs_source_skips_tentative_link_local() -> None:
    core = DetectionCore()
    core.observe(AddrObs("eth0", "fe80::5", 64, IFA_F_TENTATIVE, scope=253), at(0))
    assert core.rs_source("eth0") == "::"


def test_interface_filter_and_loopback_ignored() -> None:
    core = DetectionCore(["eth1"])
    assert up(core, "eth0", 0) == []
    assert up(core, "lo", 0) == []
    assert kinds(up(core, "eth1", 0)) == ["link_up"]


def test_metrics_ride_on_events_and_timestamps_never_go_back() -> None:
    core = DetectionCore()
    up(core, "eth0", 5)
    m = core.set_metric("eth0", "signal", -40, at(6))
    assert kinds(m) == ["metric"] and m[0].metrics == {"signal": -40}
    assert core.set_metric("eth0", "signal", -40, at(7)) == []  # unchanged: no event
    late = core.observe(ra("eth0", P1), at(4))  # read earlier, processed later
    assert late[0].mono == 6 and late[0].metrics == {"signal": -40}
    snap = core.snapshot()
    assert snap["seq"] == late[0].seq
    assert snap["interfaces"]["eth0"]["networks"][0]["prefix"] == P1


def test_event_json_round_trip() -> None:
    core = DetectionCore()
    e = up(core, "eth0", 1)[0]
    line = e.to_json()
    assert "\n" not in line
    assert Event.from_json(line) == e


def test_a_network_outside_the_trust_list_is_untrusted_and_never_configured() -> None:
    core = DetectionCore(["eth1"], trusted=[P1])
    up(core, "eth1", 1.0)
    assert kinds(core.observe(ra("eth1", "2001:db8:bad::/64"), at(1.1))) == ["untrusted"]
    assert core.observe(AddrObs("eth1", "2001:db8:bad::5", 64), at(1.2)) == []
    assert core.usable_addresses() == []
    out = core.observe(ra("eth1", P1), at(1.3)) + core.observe(AddrObs("eth1", "2001:db8:a1::5", 64), at(1.4))
    assert kinds(out) == ["detected", "configured"]
    assert core.usable_addresses() == ["2001:db8:a1::5"]
    assert kinds(core.observe(LinkObs("eth1", 2, True, False), at(2.0))) == ["link_down", "lost"]  # P1 only


def test_a_rogue_dhcp_servers_subnet_is_untrusted_too() -> None:
    core = DetectionCore(["eth1"], trusted=["192.0.2.0/24"])
    up(core, "eth1", 0)
    ack = DhcpObs("eth1", 5, "203.0.113.77", "203.0.113.66", "203.0.113.64/26", None, 600)
    out = core.observe(ack, at(0.1)) + core.observe(AddrObs("eth1", "203.0.113.77", 26), at(0.2))
    assert kinds(out) == ["untrusted"] and core.usable_addresses() == []
