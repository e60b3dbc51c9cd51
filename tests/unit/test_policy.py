"""TraSH decisions: add, make primary, delete."""

from __future__ import annotations

from testbed.mobility.policy import NetworkView, Policy

OLD = NetworkView("eth0", "2001:db8:a1::/64", ("2001:db8:a1::5",), configured=True, family=6)
NEW = NetworkView("eth1", "2001:db8:a2::/64", ("2001:db8:a2::5",), configured=True, family=6)
LOST = NetworkView("eth0", "2001:db8:a1::/64", ("2001:db8:a1::5",), True, lost=True, family=6)
DETECTED_ONLY = NetworkView("eth1", "2001:db8:a2::/64", (), configured=False, family=6)


def test_should_add_needs_a_usable_address_of_an_allowed_family() -> None:
    assert Policy().should_add(NEW)
    assert not Policy().should_add(DETECTED_ONLY)
    assert not Policy().should_add(LOST)
    assert not Policy(families=frozenset({4})).should_add(NEW)


def test_old_link_lost_makes_any_usable_new_network_primary() -> None:
    for switch in ("on-loss", "metric", "newest"):
        p = Policy(switch=switch)  # type: ignore[arg-type]
        assert p.should_make_primary(NEW, LOST, {})
        assert p.should_make_primary(NEW, None, {})
        assert not p.should_make_primary(DETECTED_ONLY, LOST, {})


def test_switch_modes_while_old_still_works() -> None:
    assert Policy(switch="newest").should_make_primary(NEW, OLD, {})
    assert not Policy(switch="on-loss").should_make_primary(NEW, OLD, {})
    assert not Policy(switch="newest").should_make_primary(OLD, OLD, {})


def test_metric_comparison_with_hysteresis_and_direction() -> None:
    p = Policy(switch="metric", metric="signal", hysteresis=3)
    assert p.should_make_primary(NEW, OLD, {"eth0": {"signal": -70}, "eth1": {"signal": -60}})
    assert not p.should_make_primary(NEW, OLD, {"eth0": {"signal": -62}, "eth1": {"signal": -60}})
    assert not p.should_make_primary(NEW, OLD, {"eth0": {"signal": -70}})  # no reading on new
    assert p.should_make_primary(NEW, OLD, {"eth1": {"signal": -90}})  # old has none
    rtt = Policy(switch="metric", metric="rtt_ms", higher_is_better=False)
    assert rtt.should_make_primary(NEW, OLD, {"eth0": {"rtt_ms": 30}, "eth1": {"rtt_ms": 5}})
    assert not rtt.should_make_primary(NEW, OLD, {"eth0": {"rtt_ms": 5}, "eth1": {"rtt_ms": 30}})


def test_should_delete() -> None:
    assert Policy().should_delete(LOST, NEW)
    assert not Policy(delete_on_loss=False).should_delete(LOST, NEW)
    assert not Policy().should_delete(OLD, NEW)  # keep_old: multihomed while both work
    assert Policy(keep_old=False).should_delete(OLD, NEW)
    assert not Policy(keep_old=False).should_delete(NEW, NEW)  # never the primary


def test_the_other_family_on_the_same_link_is_not_a_move() -> None:
    v4_same_link = NetworkView("eth1", "198.51.100.0/24", ("198.51.100.5",), configured=True, family=4)
    assert not Policy(switch="newest").should_make_primary(v4_same_link, NEW, {})
    assert Policy(switch="newest").should_make_primary(v4_same_link, LOST, {})  # unless it is gone
