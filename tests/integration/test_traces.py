"""Links that change while the MN moves, on real labs: a rate trace replayed under a bulk MPTCP
stream, two signal traces whose crossing the policy acts on (with hysteresis and dwell, then
without), the static shaping back after each run, a delay trace played by a UML node's netem,
and bad traces refused before anything is built.

The MPTCP scenarios share one lab of namespace nodes (each comes back to ar1 first); the netem
test has a two-ar-sctp lab of its own (the MN a User-Mode Linux node).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.errors import ConfigError
from testbed.host import jsonlines
from testbed.host.poll import poll_until
from testbed.lab.replay import TraceReplay
from testbed.model.topology import TraceSource
from testbed.pytest_plugin import assert_verdict, lab_name
from testbed.scenario import model
from testbed.scenario.runner import Runner, run
from tests.support.labs import lab_up

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    with lab_up("two-ar-mptcp", lab_name("trc")) as lab:
        yield lab


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory):
    out = {}
    for name in ("trace-replay", "signal-handover", "signal-handover-no-hysteresis"):
        out[name] = Runner(model.load(name), lab, tmp_path_factory.mktemp(name)).run()
    return out


def _binding(run_result) -> list[dict]:
    rows = jsonlines.read(run_result.out / "events.jsonl")
    return [r for r in rows if r.get("event") == "binding" and r.get("op") in ("add", "primary", "delete")]


def _qdiscs(lab) -> dict[str, str]:
    return {f"{n}:{i}": lab.runtime(n).run(["tc", "qdisc", "show", "dev", i]).stdout
            for n, i in (("ar2", "ar2-mn"), ("mn", "mn-ar2"))}


@pytest.mark.long
def test_trace_replay_goodput_follows_each_step_of_the_trace(runs):
    r = runs["trace-replay"]
    assert_verdict(r.verdict)
    rule = r.verdict.rule("trace.goodput")
    assert rule.status == "pass", rule.message
    gp = r.verdict.traces["goodput"]
    assert [(w["direction"], w["expected_kbit"]) for w in gp] == [("up", 8000), ("up", 2000), ("up", 8000)]
    assert all(0.85 <= w["ratio"] <= 1.15 for w in gp), gp
    applied = r.verdict.traces["applied"]  # each direction's three steps, on its own node
    assert sorted((a["node"], a["ifname"], a["rate_kbit"]) for a in applied) == sorted(
        (n, i, k) for n, i in (("ar2", "ar2-mn"), ("mn", "mn-ar2")) for k in (8000, 2000, 8000))


@pytest.mark.long
def test_the_static_shaping_is_back_and_no_replayer_is_left_after_the_runs(lab, runs):
    for where, out in _qdiscs(lab).items():
        assert "tbf" not in out and "netem" not in out, (where, out)
    for n in ("ar2", "mn"):
        assert "testbed_shape" not in lab.runtime(n).run(["nft", "list", "tables"]).stdout
    assert not [s for s in lab.state.service_records() if s.service == "replayer"]
    assert lab.mobile.policy() == lab.topo.mobile.policy  # the binding process is back on it


@pytest.mark.long
def test_signal_handover_is_one_timely_decision_and_no_ping_pong(runs):
    r = runs["signal-handover"]
    assert_verdict(r.verdict)
    p = r.verdict.policy
    # the scenario's first move brings the MN back to ar1 alone (the run before left it on ar2):
    # a switch forced by ar2's loss; then the policy's one decision
    (d,) = [x for x in p["decisions"] if x["reason"] != "lost"]
    assert (d["from"], d["to"], d["reason"]) == ("ar1", "ar2", "metric")
    assert (p["ping_pong"], p["agent_dropped"]) == (0, 0)
    assert d["values"]["ar2"] - d["values"]["ar1"] > 5  # what decided it
    assert 1.0 <= d["after_crossing_s"] <= 1.5, d  # the dwell, then within half a second
    joined = [x for x in _binding(r) if x["wall"] > r.verdict.traces["start_wall"] + 5]
    assert [x["op"] for x in joined] == ["add", "primary", "delete"]  # ar1 stays attached
    assert all(x.get("ok") for x in joined)
    (h,) = r.verdict.handovers  # MP_JOIN, MP_PRIO, the DNS UPDATE, REMOVE_ADDR, in order
    assert r.verdict.rule("order.mptcp").status == "pass"
    assert h["phases"]["prio_new"] > r.verdict.traces["start_wall"] + d["t"] - 0.01


@pytest.mark.long
def test_no_hysteresis_ping_pongs_and_each_return_re_adds_the_addresses_first(runs):
    r = runs["signal-handover-no-hysteresis"]
    assert_verdict(r.verdict)  # expectations met: policy.ping_pong fails, as the scenario says
    p = r.verdict.policy
    assert p["ping_pong"] >= 1 and p["ping_pong_window"] == 10.0
    assert r.verdict.rule("policy.ping_pong").status == "fail"
    ops = [(x["op"], x["address"]) for x in _binding(r) if x["wall"] > r.verdict.traces["start_wall"] + 5]
    primaries = [i for i, (op, _) in enumerate(ops) if op == "primary"]
    assert len(primaries) == len([d for d in p["decisions"] if d["reason"] == "metric"]) >= 2
    for i in primaries:  # the network switched to was given its address back just before
        assert ops[i - 1] == ("add", ops[i][1]), ops


def test_a_trace_the_kernels_cannot_play_is_refused_before_any_lab_is_built(tmp_path):
    (tmp_path / "delay.csv").write_text("seconds,delay\n0,0\n3,40\n")
    sc = tmp_path / "sc.yaml"
    sc.write_text("name: bad\ntopology: two-ar-mptcp\nnetworks: {ar2: {trace: delay.csv, format: csv}}\n"
                  "steps: [{wait: 1}]\n")
    name = lab_name("trbad")
    with pytest.raises(ConfigError, match=r"delay.csv: line 3: a delay on ar2 \(ar2-mn\) needs netem"):
        run(model.load(sc), tmp_path / "out", name)
    from testbed.state import LabState

    assert not LabState.exists(name)


@pytest.mark.vm
def test_a_uml_nodes_replayer_plays_delay_through_its_netem_and_restores_it(tmp_path):
    trace = tmp_path / "up-delay.csv"
    trace.write_text("seconds,delay_up,rate_up\n0,30,4000\n60,0,4000\n")
    with lab_up("two-ar-sctp", lab_name("trn")) as lab:
        spec = {"ar2": TraceSource(trace=str(trace), format="csv")}
        replay = TraceReplay.of(lab.nodes, lab.wiring, spec, 1)
        replay.start()
        log = lab.nodes.node_dir("mn", "replayer") / "replay.jsonl"
        assert poll_until(lambda: any(r.get("op") == "apply" for r in jsonlines.read(log)), 20)
        shaped = lab.runtime("mn").run(["tc", "qdisc", "show", "dev", "mn-ar2"]).stdout
        assert "netem" in shaped and "delay 30ms" in shaped and "rate 4Mbit" in shaped, shaped
        records = replay.stop()
        assert "netem" not in lab.runtime("mn").run(["tc", "qdisc", "show", "dev", "mn-ar2"]).stdout
        ready = next(r for r in records if r["op"] == "ready" and r["node"] == "mn")
        assert ready["ifaces"] == ["mn-ar2"]
        assert [r["op"] for r in records if r["node"] == "mn"][-1] == "restored"
        plan = json.loads((lab.nodes.node_dir("mn", "replayer") / "plan.json").read_text())
        assert plan["ifaces"][0]["netem"] is True
    assert not Path(lab.state.dir).exists()


@pytest.mark.vm
@pytest.mark.long
def test_a_delay_trace_plays_on_every_node_under_a_uml_lab_machine(tmp_path):
    """Under --machine uml every node has the machine kernel's netem: ar2's port plays the
    delay too, which the host kernel would refuse; the run and its SCTP handover pass."""
    import subprocess
    import sys

    (tmp_path / "delay.csv").write_text("seconds,delay,rate\n0,20,4000\n4,60,4000\n8,20,4000\n")
    (tmp_path / "sc.yaml").write_text(
        "name: trace-delay\ntopology: two-ar-sctp\ntraffic: {transport: sctp}\n"
        "rules: asconf,order,continuity\n"
        "networks: {ar2: {trace: delay.csv, format: csv}}\nsteps:\n  - traffic: start\n"
        "  - move: {to: ar2, overlap: 1.0}\n  - wait: 9\n  - traffic: stop\n")
    name = lab_name("trm")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "testbed.cli.main", "--lab", name, *args],
                              capture_output=True, text=True, timeout=600)

    try:
        cp = cli("run", str(tmp_path / "sc.yaml"), "--machine", "uml", "--out", str(tmp_path / "out"))
        assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
    finally:
        cli("down")
    v = json.loads((tmp_path / "out" / "verdict.json").read_text())
    applied = sorted((a["node"], a["t"], a["delay_ms"]) for a in v["traces"]["applied"])
    assert applied == sorted((n, t, d) for n in ("ar2", "mn") for t, d in ((0, 20), (4, 60), (8, 20)))
    assert (tmp_path / "out" / "signal.svg").exists()
