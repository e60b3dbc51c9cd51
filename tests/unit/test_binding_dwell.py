"""A metric policy with hysteresis and dwell: the sequencer's deadline, the decision it
records, and a switch back to a network whose addresses the last switch deleted."""

from __future__ import annotations

from testbed.mobility.binding import TrashSequencer
from testbed.mobility.events import Event
from testbed.mobility.policy import NetworkView, Policy

AR1 = ("mn-ar1", "192.0.2.0/24", "192.0.2.100")
AR2 = ("mn-ar2", "198.51.100.0/24", "198.51.100.100")


def ev(kind, seq, t, net=None, signal=None):
    ifname, prefix, addr = net or ("", None, None)
    return Event(kind, seq, t, 1e9 + t, ifname, prefix if kind != "metric" else None, None,
                 (addr,) if addr and kind != "metric" else (),
                 {"signal": signal} if signal is not None else {})


def both_attached(policy: Policy) -> TrashSequencer:
    """On ar1 (primary) and ar2 at once, ar2's address not in the association yet."""
    s = TrashSequencer(policy)
    s.start({AR1[2]}, [NetworkView(AR1[0], AR1[1], (AR1[2],), configured=True, family=4),
                       NetworkView(AR2[0], AR2[1], (AR2[2],), configured=True, family=4)], AR1[2])
    s.feed(ev("metric", 1, 0.0, AR1, -60))
    s.feed(ev("metric", 2, 0.0, AR2, -80))
    return s


def kinds(actions):
    return [(a.kind, a.address) for a in actions if a.kind != "location"]


POLICY = Policy(switch="metric", hysteresis=5, dwell=1.0, keep_old=False, families=frozenset({4}))


def test_a_better_network_waits_out_the_dwell_then_the_deadline_switches():
    s = both_attached(POLICY)
    assert s.feed(ev("metric", 3, 10.0, AR2, -54)) == []  # 6 dB better: the clock starts
    assert s.next_deadline() == 11.0
    assert s.tick(10.5) == []
    out = s.tick(11.0)
    assert kinds(out) == [("add", AR2[2]), ("primary", AR2[2]), ("delete", AR1[2])]
    d = next(a.decision for a in out if a.kind == "primary")
    assert d["from"]["ifname"] == "mn-ar1" and d["to"]["ifname"] == "mn-ar2"
    assert (d["reason"], d["since"], d["at"]) == ("metric", 10.0, 11.0)
    assert d["metrics"] == {"mn-ar1": {"signal": -60}, "mn-ar2": {"signal": -54}}
    assert s.next_deadline() is None


def test_a_lead_within_the_hysteresis_or_one_that_ends_before_the_dwell_does_not_switch():
    s = both_attached(POLICY)
    assert s.feed(ev("metric", 3, 10.0, AR2, -55)) == []  # 5 dB: not more than H
    assert s.next_deadline() is None
    s.feed(ev("metric", 4, 11.0, AR2, -50))
    assert s.next_deadline() == 12.0
    assert s.feed(ev("metric", 5, 11.5, AR2, -58)) == []  # fell back: the clock stops
    assert s.next_deadline() is None and s.tick(12.0) == []
    s.feed(ev("metric", 6, 13.0, AR2, -50))
    assert s.next_deadline() == 14.0  # a new lead has its own clock


def test_a_switch_back_re_adds_the_deleted_addresses_first():
    s = both_attached(POLICY)
    s.feed(ev("metric", 3, 10.0, AR2, -50))
    s.tick(11.0)  # to ar2, ar1's address deleted
    assert s.bound == {AR2[2]}
    s.feed(ev("metric", 4, 20.0, AR1, -40))
    out = s.tick(21.0)
    assert kinds(out) == [("add", AR1[2]), ("primary", AR1[2]), ("delete", AR2[2])]
    assert s.bound == {AR1[2]}


def test_without_hysteresis_or_dwell_every_lead_switches_at_once():
    s = both_attached(Policy(switch="metric", keep_old=False, families=frozenset({4})))
    assert [a.kind for a in s.feed(ev("metric", 3, 10.0, AR2, -59))][:2] == ["add", "primary"]
    assert [a.kind for a in s.feed(ev("metric", 4, 10.1, AR1, -58))][:2] == ["add", "primary"]


def test_a_lost_primary_is_left_at_once_whatever_the_dwell():
    s = both_attached(POLICY)
    out = s.feed(Event("lost", 3, 5.0, 1e9, AR1[0], AR1[1], None, (AR1[2],), {}))
    assert kinds(out)[:2] == [("add", AR2[2]), ("primary", AR2[2])]
    assert next(a.decision for a in out if a.kind == "primary")["reason"] == "lost"


def test_metric_events_move_nothing_under_the_newest_policy():
    s = both_attached(Policy(switch="newest", families=frozenset({4})))
    assert s.feed(ev("metric", 3, 10.0, AR2, -20)) == []
