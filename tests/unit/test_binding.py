"""The TraSH ladder from movement events: ADD_IP → SET_PRIMARY → DNS → DELETE_IP (Appendix A)."""

from __future__ import annotations

from testbed.mobility.binding import TrashSequencer
from testbed.mobility.events import Event
from testbed.mobility.policy import NetworkView, Policy

OLD = NetworkView("mn-ar1", "192.0.2.0/24", ("192.0.2.100",), configured=True, family=4)


def ev(kind, seq, ifname="", prefix=None, addresses=(), metrics=None):
    return Event(kind, seq, float(seq), 1e9 + seq, ifname, prefix, None, tuple(addresses),
                 metrics or {})


def seq_v4(policy=None) -> TrashSequencer:
    s = TrashSequencer(policy or Policy(families=frozenset({4})))
    s.start({"192.0.2.100"}, [OLD], "192.0.2.100")
    return s


def kinds(actions):
    return [(a.kind, a.address or (a.a, a.aaaa)) for a in actions]


def test_make_before_break_is_the_appendix_a_ladder():
    s = seq_v4()
    out = s.feed(ev("link_up", 1, "mn-ar2"))
    out += s.feed(ev("configured", 2, "mn-ar2", "198.51.100.0/24", ["198.51.100.100"]))
    out += s.feed(ev("configured", 3, "mn-ar2", "2001:db8:a2::/64", ["2001:db8:a2::5"]))
    out += s.feed(ev("lost", 4, "mn-ar1", "192.0.2.0/24", ["192.0.2.100"]))
    assert kinds(out) == [
        ("add", "198.51.100.100"),
        ("primary", "198.51.100.100"),
        ("location", (("198.51.100.100",), ())),
        ("location", (("198.51.100.100",), ("2001:db8:a2::5",))),  # AAAA once SLAAC is done
        ("delete", "192.0.2.100"),
    ]
    assert s.bound == {"198.51.100.100"}


def test_on_loss_policy_switches_only_when_the_old_network_goes():
    s = seq_v4(Policy(switch="on-loss", families=frozenset({4})))
    out = s.feed(ev("configured", 1, "mn-ar2", "198.51.100.0/24", ["198.51.100.100"]))
    assert kinds(out) == [("add", "198.51.100.100")]
    out = s.feed(ev("lost", 2, "mn-ar1", "192.0.2.0/24", ["192.0.2.100"]))
    assert kinds(out) == [("primary", "198.51.100.100"), ("location", (("198.51.100.100",), ())),
                          ("delete", "192.0.2.100")]


def test_metric_policy_switches_when_the_new_link_is_better():
    s = seq_v4(Policy(switch="metric", metric="signal", hysteresis=3, families=frozenset({4})))
    s.feed(ev("metric", 1, "mn-ar1", metrics={"signal": -60}))
    out = s.feed(ev("configured", 2, "mn-ar2", "198.51.100.0/24", ["198.51.100.100"],
                    metrics={"signal": -62}))
    assert kinds(out) == [("add", "198.51.100.100")]
    out = s.feed(ev("metric", 3, "mn-ar2", metrics={"signal": -50}))
    assert [a.kind for a in out] == ["primary", "location"]


def test_families_outside_the_association_are_not_added():
    s = seq_v4()
    out = s.feed(ev("configured", 1, "mn-ar2", "2001:db8:a2::/64", ["2001:db8:a2::5"]))
    assert out == []


def test_losing_everything_withdraws_the_name():
    s = seq_v4()
    s.feed(ev("configured", 1, "mn-ar1", "192.0.2.0/24", ["192.0.2.100"]))
    out = s.feed(ev("lost", 2, "mn-ar1", "192.0.2.0/24", ["192.0.2.100"]))
    assert ("location", ((), ())) in kinds(out)


OLD6 = NetworkView("mn-ar1", "2001:db8:a1::/64", ("2001:db8:a1::5",), configured=True, family=6)


def test_dual_stack_move_adds_and_deletes_both_families_and_switches_once():
    s = TrashSequencer(Policy(families=frozenset({4, 6})))
    s.start({"192.0.2.100", "2001:db8:a1::5"}, [OLD, OLD6], "192.0.2.100")
    out = s.feed(ev("configured", 1, "mn-ar2", "2001:db8:a2::/64", ["2001:db8:a2::5"]))
    out += s.feed(ev("configured", 2, "mn-ar2", "198.51.100.0/24", ["198.51.100.100"]))
    out += s.feed(ev("lost", 3, "mn-ar1", "192.0.2.0/24", ["192.0.2.100"]))
    out += s.feed(ev("lost", 4, "mn-ar1", "2001:db8:a1::/64", ["2001:db8:a1::5"]))
    # the second family on the new link is added, not made primary again: one SET_PRIMARY
    assert kinds(out) == [
        ("add", "2001:db8:a2::5"),
        ("primary", "2001:db8:a2::5"),
        ("location", ((), ("2001:db8:a2::5",))),
        ("add", "198.51.100.100"),
        ("location", (("198.51.100.100",), ("2001:db8:a2::5",))),
        ("delete", "192.0.2.100"),
        ("delete", "2001:db8:a1::5"),
    ]
    assert s.bound == {"198.51.100.100", "2001:db8:a2::5"}


def test_a_joining_ipv6_association_takes_its_families_and_primary_network():
    s = seq_v4()  # the binding started before the transport, with the default families
    s.networks[("mn-ar1", OLD6.prefix)] = OLD6
    s.join({"2001:db8:a1::5"}, frozenset({6}))
    assert s.primary == OLD6 and s.policy.families == frozenset({6})
    out = s.feed(ev("configured", 1, "mn-ar2", "198.51.100.0/24", ["198.51.100.100"]))
    out += s.feed(ev("configured", 2, "mn-ar2", "2001:db8:a2::/64", ["2001:db8:a2::5"]))
    out += s.feed(ev("lost", 3, "mn-ar1", "2001:db8:a1::/64", ["2001:db8:a1::5"]))
    assert [k for k in kinds(out) if k[0] != "location"] == [
        ("add", "2001:db8:a2::5"), ("primary", "2001:db8:a2::5"), ("delete", "2001:db8:a1::5")]


def test_ipv4_only_to_ipv6_only_network():
    """A dual-stack association moving from an IPv4-only network to an IPv6-only one: the new
    network's IPv6 address is added and made primary, the IPv4 one deleted when lost."""
    s = TrashSequencer(Policy(families=frozenset({4, 6})))
    s.start({"192.0.2.100"}, [OLD], "192.0.2.100")
    out = s.feed(ev("configured", 1, "mn-ar2", "2001:db8:a2::/64", ["2001:db8:a2::5"]))
    out += s.feed(ev("lost", 2, "mn-ar1", "192.0.2.0/24", ["192.0.2.100"]))
    assert [k for k in kinds(out) if k[0] != "location"] == [
        ("add", "2001:db8:a2::5"), ("primary", "2001:db8:a2::5"), ("delete", "192.0.2.100")]

