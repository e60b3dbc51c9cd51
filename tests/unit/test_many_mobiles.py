"""Many mobile nodes: the compact form, the plan (one port per MN on each access network),
moves played at once / staggered / at random from the seed, and a verdict per MN."""

from __future__ import annotations

import pytest

from testbed.conformance.mobiles import MobileScope, check_mobiles, summarise
from testbed.conformance.verdict import RuleResult, Verdict
from testbed.errors import ConfigError
from testbed.model import addressing, loader
from testbed.scenario import model
from testbed.scenario.runner import Runner
from testbed.state import ServiceRecord
from tests.conftest import make_fake_lab
from tests.support.mptcp_synth import CN, MN_NEW, MN_OLD, mptcp_handover


def test_the_compact_form_copies_the_template_node():
    topo = loader.load("many-mn")
    assert topo.mobiles == ["mn1", "mn2", "mn3", "mn4", "mn5"] and topo.mobile.node == "mn1"
    assert all(topo.nodes[m].mptcp.enabled for m in topo.mobiles)
    assert [topo.dns_name(m) for m in topo.mobiles[:2]] == ["mn1.mobile.test", "mn2.mobile.test"]
    again = loader.from_dict(topo.model_dump(mode="json"))  # a saved lab state reloads the same
    assert again.mobiles == topo.mobiles
    one = loader.load("two-ar")
    assert one.mobiles == ["mn"] and one.dns_name("mn") == "mn.mobile.test"


def test_every_mn_has_a_port_on_every_access_segment():
    plan = addressing.plan(loader.load("many-mn"))
    for ar in ("ar1", "ar2"):
        ports = [i.ifname for i in plan.nodes[ar].ifaces if i.master]
        assert ports == [f"{ar}-mn{k}" for k in range(1, 6)]
        mn_if, lan = plan.access_iface(ar, "mn3")
        assert (mn_if.ifname, lan.ifname) == (f"mn3-{ar}", f"{ar}-lan")
    assert not plan.nodes["mn2"].routes  # the MNs get their routes from DHCP and RAs
    indexes = [i for v in plan.veths for i in (v.a_index, v.b_index)]
    assert len(set(indexes)) == len(indexes)


def test_a_bad_count_names_the_field(tmp_path):
    p = tmp_path / "t.yaml"
    text = (loader.TOPOLOGY_DIR / "many-mn.yaml").read_text()
    p.write_text(text.replace("count: 5", "count: 500"))
    with pytest.raises(ConfigError) as ei:
        loader.load(p)
    assert ei.value.field == "mobile.count"
    p.write_text(text.replace("node: mn\n  count", "node: zz\n  count"))
    with pytest.raises(ConfigError) as ei:
        loader.load(p)
    assert ei.value.field == "mobile.node" and "not declared" in str(ei.value)


def _many_lab(run_root, fake_backend):
    lab = make_fake_lab(fake_backend, "many-mn")
    lab.state.attached = {m: ["ar1"] for m in lab.topo.mobiles}
    lab.state.save()
    for m in lab.topo.mobiles:
        rt = lab.runtime(m)
        rt.outputs["ip"] = '[{"flags": ["UP"], "addr_info": []}]'
        lab.state.add_service(ServiceRecord(m, "agent", rt.spawn(["agent"], log=run_root / "a"), ""))
    return lab


@pytest.mark.parametrize(("timing", "check"), [
    ("", lambda starts: max(starts) - min(starts) < 0.5),
    ("stagger: 1.0", lambda starts: starts == sorted(starts) and starts[-1] - starts[0] >= 3.5),
])
def test_moves_of_many_mobiles(run_root, fake_backend, tmp_path, timing, check):
    lab = _many_lab(run_root, fake_backend)
    p = tmp_path / "s.yaml"
    move = "{to: ar2" + (f", {timing}" if timing else "") + "}"
    p.write_text(f"name: t\ntopology: many-mn\nsteps: [{{move: {move}}}]\n")
    r = Runner(model.load(p), lab, tmp_path / "out")
    r.play()
    moves = [x for x in r.log.records if x["event"] == "step" and x["step"] == "move"]
    assert sorted(x["mn"] for x in moves) == lab.topo.mobiles
    starts = [x["mono"] for x in sorted(moves, key=lambda x: x["mn"])]
    assert check(starts)
    assert all(lab.mobiles[m].attached == ["ar2"] for m in lab.topo.mobiles)
    assert lab.state.attached == {m: ["ar2"] for m in lab.topo.mobiles}


def test_random_moves_follow_the_seed(run_root, fake_backend, tmp_path):
    orders = []
    for _ in range(2):
        lab = _many_lab(run_root, fake_backend)
        p = tmp_path / "s.yaml"
        p.write_text("name: t\ntopology: many-mn\nseed: 7\nsteps: [{move: {to: ar2, spread: 0.5}}]\n")
        waits: list[float] = []
        r = Runner(model.load(p), lab, tmp_path / "out", dwell=waits.append)
        r.play()
        moves = [x for x in r.log.records if x["event"] == "step" and x["step"] == "move"]
        orders.append([x["mn"] for x in sorted(moves, key=lambda x: x["mono"])])
        lab.close()
    assert orders[0] == orders[1]
    with pytest.raises(ConfigError, match="stagger .* or spread"):
        p.write_text("name: t\nsteps: [{move: {to: ar2, stagger: 1, spread: 1}}]\n")
        model.load(p)


def test_each_mn_is_judged_on_its_own_part(tmp_path):
    cap = mptcp_handover()
    cap.write_pcap(tmp_path / "cn-core.pcap")
    scopes = {"mn1": MobileScope("mn1.mobile.test", (), frozenset({MN_OLD, MN_NEW})),
              "mn2": MobileScope("mn2.mobile.test", (), frozenset({"192.0.2.101"}))}
    v = check_mobiles(tmp_path, scopes, rules="mptcp")
    assert set(v.mobiles) == {"mn1", "mn2"}
    assert v.mobiles["mn1"].rule("mptcp.join").status == "pass"
    assert v.mobiles["mn2"].rule("mptcp.join").status == "skip"  # nothing of mn2 on the wire
    assert v.rule("mptcp.join").message.startswith("2 mobile node(s): 1 pass, 1 skip")
    (h,) = v.handovers
    assert h["mobile"] == "mn1" and h["address"] == MN_NEW
    d = v.to_dict()
    assert d["schema"] == 4 and set(d["mobiles"]) == {"mn1", "mn2"} and d["passed"]
    assert CN not in scopes["mn1"].addresses


def test_summary_fails_when_any_mn_fails_and_expectations_hold_per_mn():
    def v(status):
        return Verdict((RuleResult("continuity.tcp", status, "x"),))
    rows = summarise({"a": v("fail"), "b": v("pass")}, {"continuity.tcp": "fail"})
    assert rows[0].status == "fail" and "failing: a" in rows[0].message
    both = Verdict(rows, mobiles={"a": v("fail").expecting({"continuity.tcp": "fail"}),
                                  "b": v("pass").expecting({"continuity.tcp": "fail"})})
    assert not both.passed  # b did not break as expected
