"""What a traced run adds to its verdict: decisions judged against the noise-free crossing,
ping-pongs within the window, goodput from a capture, the agent's one event for several
metrics, the signal plot, and the refusal of traces on deployed hosts."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from testbed.conformance import goodput, policy
from testbed.mobility.detection.core import DetectionCore, Stamp
from testbed.model import trace
from testbed.model.topology import PolicySettings
from testbed.report import signal_plot
from tests.support.synth import write_pcap

START = 1_800_000_000.0
POL = PolicySettings(switch="metric", hysteresis_db=5, dwell_s=1)


def lin(a: float, b: float, t0: float, t1: float) -> trace.NetworkTrace:
    pts = tuple(trace.SignalPoint(i / 10, a + (b - a) * min(max((i / 10 - t0) / (t1 - t0), 0), 1), i)
                for i in range(301))
    empty = trace.Series("x", ())
    return trace.NetworkTrace(empty, empty, pts)


TRACES = {"ar1": lin(-55, -85, 8, 18), "ar2": lin(-85, -55, 8, 18)}


def primary(t: float, frm: str, to: str, since: float, reason: str = "metric") -> dict:
    """A binding log record as the binding process writes it (wall and monotonic stamps)."""
    mono = 500.0 + t
    return {"event": "binding", "op": "primary", "wall": START + t + 0.004, "mono": mono + 0.004,
            "decision": {"reason": reason, "at": mono, "since": 500.0 + since, "metric": "signal",
                         "from": {"ifname": f"mn-{frm}", "prefix": "p"},
                         "to": {"ifname": f"mn-{to}", "prefix": "q"},
                         "metrics": {f"mn-{frm}": {"signal": -75.0}, f"mn-{to}": {"signal": -66.0}}}}


NET = {"mn-ar1": "ar1", "mn-ar2": "ar2"}


def test_the_crossing_is_the_first_time_the_noise_free_lead_exceeds_the_hysteresis():
    assert policy.crossing(TRACES["ar1"], TRACES["ar2"], 5, 0.0) == pytest.approx(13.9)
    assert policy.crossing(TRACES["ar1"], TRACES["ar2"], 0, 0.0) == pytest.approx(13.1)
    assert policy.crossing(TRACES["ar2"], TRACES["ar1"], 5, 0.0) == 0.0  # ar1 leads from the start
    assert policy.crossing(TRACES["ar1"], TRACES["ar2"], 40, 0.0) is None


def test_one_decision_within_the_dwell_and_slack_passes_both_rules():
    decs = policy.decisions([primary(15.1, "ar1", "ar2", 14.1)], NET, START, TRACES, POL)
    (d,) = decs
    assert (d["from"], d["to"], d["t"], d["crossing_t"]) == ("ar1", "ar2", 15.1, pytest.approx(13.9))
    assert d["after_crossing_s"] == pytest.approx(1.2) and d["leading_since"] == pytest.approx(START + 14.1)
    assert d["values"] == {"ar1": -75.0, "ar2": -66.0}
    rules = {r.id: r.status for r in policy.rules(decs, POL)}
    assert rules == {"policy.ping_pong": "pass", "policy.timely": "pass"}
    assert policy.block(decs, POL, 0)["ping_pong"] == 0


def test_a_late_decision_or_one_before_the_crossing_fails_timely():
    late = policy.decisions([primary(15.6, "ar1", "ar2", 14.6)], NET, START, TRACES, POL)
    assert {r.id: r.status for r in policy.rules(late, POL)}["policy.timely"] == "fail"
    early = policy.decisions([primary(13.0, "ar1", "ar2", 12.0)], NET, START, TRACES, POL)
    assert early[0]["after_crossing_s"] < 0
    assert {r.id: r.status for r in policy.rules(early, POL)}["policy.timely"] == "fail"


def test_returns_within_the_window_are_ping_pongs_and_fail_the_rule():
    recs = [primary(13.0, "ar1", "ar2", 13.0), primary(13.4, "ar2", "ar1", 13.4),
            primary(13.6, "ar1", "ar2", 13.6), primary(30.0, "ar2", "ar1", 30.0)]
    flat = PolicySettings(switch="metric", hysteresis_db=0, dwell_s=0)
    decs = policy.decisions(recs, NET, START, TRACES, flat)
    assert policy.ping_pongs(decs) == [(0, 1), (1, 2)]  # the last one came 16 s later
    rules = {r.id: r for r in policy.rules(decs, flat)}
    assert rules["policy.ping_pong"].status == "fail" and "2 return(s)" in rules["policy.ping_pong"].message
    assert rules["policy.timely"].status == "skip"  # no hysteresis or dwell to judge
    assert policy.block(decs, flat, 0)["ping_pong"] == 2


def test_a_switch_forced_by_a_lost_network_is_no_ping_pong():
    recs = [primary(1.0, "ar2", "ar1", 1.0, reason="lost"), primary(3.0, "ar1", "ar2", 2.0)]
    decs = policy.decisions(recs, NET, START, TRACES, POL)
    assert len(decs) == 2 and policy.ping_pongs(decs) == []


def test_scripted_moves_are_not_judged_as_a_policy():
    assert policy.rules([], PolicySettings()) == []
    assert policy.agent_rule(3).status == "fail" and policy.agent_rule(0).status == "pass"


def _seg(t: float, src: str, dst: str, seq: int, size: int) -> tuple[float, bytes]:
    return t, bytes(Ether() / IP(src=src, dst=dst) / TCP(sport=40000, dport=5001, seq=seq) / (b"x" * size))


def test_goodput_counts_new_payload_per_direction_not_resent_bytes(tmp_path):
    mn, cn = "198.51.100.100", "203.0.113.14"
    frames = [_seg(START + i * 0.01, mn, cn, 1000 + 1000 * i, 1000) for i in range(100)]
    frames.append(_seg(START + 0.505, mn, cn, 1000, 1000))  # a retransmission
    frames.append(_seg(START + 0.605, cn, mn, 7, 50))
    frames.append(_seg(START + 1.05, mn, cn, 1000 + 1000 * 150, 1000))  # after bytes not captured
    p = tmp_path / "ar2-mn.pcap"
    write_pcap(p, sorted(frames))
    samples = goodput.new_bytes(p, [ipaddress.ip_network("198.51.100.0/24")])
    assert sum(n for _, d, n in samples if d == "up") == 101_000
    assert sum(n for _, d, n in samples if d == "down") == 50
    (kbit,) = goodput.measure(samples, [goodput.Window(START, START + 1.1, "up", 800)])
    assert kbit == pytest.approx(101_000 * 8 / 1000 / 1.1)


def test_several_metrics_at_once_are_one_event_and_an_unchanged_set_none():
    core = DetectionCore()
    (e,) = core.set_metrics("mn-ar2", {"signal": -60.0, "loss": 1.0}, Stamp(1.0, 2.0))
    assert e.kind == "metric" and e.metrics == {"signal": -60.0, "loss": 1.0} and e.reason == "loss,signal"
    assert core.set_metrics("mn-ar2", {"signal": -60.0}, Stamp(1.1, 2.1)) == []


def test_the_signal_plot_marks_decisions_and_phases_and_is_well_formed_xml():
    decs = policy.decisions([primary(15.1, "ar1", "ar2", 14.1)], NET, START, TRACES, POL)
    v = {"traces": {"start_wall": START, "end_t": 30.0, "networks": ["ar1", "ar2"],
                    "metrics": [{"t": 0.0, "network": "ar1", "values": {"signal": -55}},
                                {"t": 0.0, "network": "ar2", "values": {"signal": -85}},
                                {"t": 20.0, "network": "ar2", "values": {"signal": -55}}],
                    "applied": [{"t": 0.0, "network": "ar2", "direction": "up", "rate_kbit": 8000.0},
                                {"t": 12.0, "network": "ar2", "direction": "up", "rate_kbit": 2000.0}]},
         "policy": policy.block(decs, POL, 0),
         "handovers": [{"phases": {"prio_new": START + 15.2, "dns_acked": START + 15.21}}]}
    svg = signal_plot.render(v)
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "ar1→ar2" in texts and "prio_new" in texts and "dns_acked" in texts
    assert "signal, as the agent was told" in texts and any("rate as applied" in (t or "") for t in texts)
    assert signal_plot.render({"handovers": []}) is None


def test_traces_and_a_policy_override_are_refused_on_deployed_hosts(tmp_path):
    from testbed.deploy import inventory
    from testbed.deploy.target import HostTarget
    from testbed.errors import ConfigError
    from testbed.model import loader
    from testbed.scenario import model
    from testbed.scenario.runner import Runner

    inv = tmp_path / "hosts.yml"
    inventory.write(inventory.build(loader.load("two-ar-sctp")), inv)
    (tmp_path / "t.csv").write_text("seconds,rate\n0,1000\n")
    net = {"ar2": {"trace": str(tmp_path / "t.csv"), "format": "csv"}}
    sc = model.Scenario.model_validate({"name": "t", "topology": "two-ar-sctp", "steps": [{"wait": 1}],
                                        "networks": net})
    with pytest.raises(ConfigError, match=r"^scenario t: networks\.ar2: the trace replay step needs a lab"):
        Runner(sc, HostTarget(inv), tmp_path / "out")
    pol = sc.model_copy(update={"networks": {}, "policy": POL})
    with pytest.raises(ConfigError, match=r"^scenario t: policy: the deployed binding process runs"):
        Runner(pol, HostTarget(inv), tmp_path / "out")
