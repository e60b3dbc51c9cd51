"""`testbed compare` before and after its labs: each transport's topology and scenario, what is
refused and why, and a run's row (messages, stalls across moves) from its records."""

from __future__ import annotations

import json

import pytest

from testbed.compare import plan, summary
from testbed.errors import ConfigError
from testbed.model import loader
from testbed.scenario import model


def test_only_the_endpoints_transport_settings_change():
    base = loader.load("two-ar-sctp")
    data, changes = plan.topology_for(base, ("mn", "cn"), "quic")
    assert changes == {n: {"quic.stack": ["none", "aioquic"]} for n in ("mn", "cn")}
    assert data["nodes"]["mn"]["sctp"]["stack"] == "auto"  # the same kind of node
    rest = {k: v for k, v in data.items() if k != "nodes"}
    assert rest == {k: v for k, v in base.model_dump(mode="json").items() if k != "nodes"}
    assert data["nodes"]["ar1"] == base.model_dump(mode="json")["nodes"]["ar1"]
    data, changes = plan.topology_for(loader.load("two-ar-mptcp"), ("mn", "cn"), "sctp")
    assert changes["mn"] == {"sctp.stack": ["none", "auto"], "mptcp.enabled": [True, False]}


def test_each_transport_gets_its_compare_entry_and_the_same_traffic():
    sc = model.load("trash-handover")
    rows = {r.transport: r for r in plan.plan(sc, ["sctp", "quic", "tcp"])}
    assert rows["sctp"].scenario.budgets == sc.budgets  # its own transport: its own budgets
    assert rows["quic"].scenario.expect["order.quic"] == "pass"
    assert rows["tcp"].scenario.expect["continuity.tcp"] == "fail"
    assert rows["tcp"].scenario.traffic.user_timeout == 2.0
    for r in rows.values():
        t = r.scenario.traffic
        assert (t.transport, t.rate, t.size) == (r.transport, sc.traffic.rate, sc.traffic.size)
        assert t.binding == "trash"
        assert r.scenario.steps == sc.steps


def test_mptcp_on_a_uml_build_without_it_is_refused_saying_what_would_serve_it():
    topo = loader.load("two-ar-sctp")
    why = plan.refusal(topo, ("mn", "cn"), "mptcp", kernel_config=lambda k: {"CONFIG_IP_SCTP": "m"})
    assert "CONFIG_MPTCP is not set" in why and "TESTBED_UML_KERNEL" in why
    assert plan.refusal(topo, ("mn", "cn"), "mptcp", kernel_config=lambda k: {"CONFIG_MPTCP": "y"}) == ""
    assert plan.refusal(topo, ("mn", "cn"), "quic") == ""


def test_bad_transports_and_scenarios_are_one_line():
    with pytest.raises(ConfigError, match="--transports: dccp: not a transport of the lab"):
        plan.parse_transports("sctp,dccp")
    with pytest.raises(ConfigError, match="no traffic: a comparison compares connections"):
        plan.plan(model.load("move-ar2"), ["sctp"])
    with pytest.raises(ValueError, match="rate: the same for every transport"):
        model.Scenario.model_validate({"name": "x", "compare": {"tcp": {"traffic": {"rate": 5}}},
                                       "steps": [{"wait": 1}]})


MOVES = [{"to": "ar1", "mode": "make-before-break", "start": 0.0, "end": 0.1},
         {"to": "ar2", "mode": "make-before-break", "start": 10.0, "end": 12.0}]


def test_a_stall_is_the_longest_silence_across_a_move():
    arrivals = [9.0 + 0.02 * i for i in range(100)]  # 9.00 .. 10.98
    arrivals = [t for t in arrivals if not 10.5 < t < 10.8] + [20.0]
    (s,) = summary.stalls(arrivals, MOVES, stop=21.0, started=1.0)
    assert s["to"] == "ar2" and s["resumed"] and s["longest_s"] == pytest.approx(20.0 - 10.98)
    (s,) = summary.stalls([t for t in arrivals if t < 11], MOVES, stop=15.0, started=1.0)
    assert not s["resumed"] and s["longest_s"] == pytest.approx(15.0 - 10.98)  # the stream never came back


def test_messages_count_what_never_arrived_and_what_came_twice():
    assert summary.messages(100, {"received": 99, "duplicates": [5], "missing": 2}) == \
        {"sent": 100, "received": 98, "lost": 2, "duplicated": 1}


def test_a_row_from_a_run_directory(tmp_path):
    (tmp_path / "verdict.json").write_text(json.dumps({
        "rules": [{"id": "continuity.tcp", "status": "fail", "expected": "fail", "met": True}],
        "handovers": [], "lab": {"nodes": {"mn": {"stack": "uml", "kernel": "6.1.176"}}}}))
    (tmp_path / "traffic.json").write_text(json.dumps({
        "transport": "tcp", "server": {"connections": [{"received": 3, "messages": [[0, 1.0, "a", -1],
                                                                                     [1, 1.02, "a", -1],
                                                                                     [2, 1.04, "a", -1]]}]},
        "clients": {"mn": {"sent": 10}}}))
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in (
        {"event": "step", "step": "traffic", "action": "start", "wall": 0.5},
        {"event": "step", "step": "move", "to": "ar2", "mode": "make-before-break", "wall": 1.03},
        {"event": "step", "step": "moved", "to": "ar2", "wall": 3.0},
        {"event": "step", "step": "traffic", "action": "stop", "wall": 6.0})))
    row = summary.summarise("tcp", tmp_path, ("mn", "cn"))
    assert row["status"] == "expected-fail" and row["messages"]["lost"] == 7
    assert row["served"] == {"mn": {"stack": "uml", "kernel": "6.1.176"}}
    (s,) = row["stalls"]
    assert not s["resumed"] and s["longest_s"] == pytest.approx(6.0 - 1.04)
