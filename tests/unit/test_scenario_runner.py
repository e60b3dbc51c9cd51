"""Playing typed scenario steps on a lab of fakes: each step reaches the lab in order."""

from __future__ import annotations

import pytest

from testbed.errors import TestbedError
from testbed.scenario import model
from testbed.scenario.runner import Runner, sctp_peer
from testbed.state import ServiceRecord
from tests.conftest import make_fake_lab


def _scenario(tmp_path, steps: str, extra: str = "") -> model.Scenario:
    p = tmp_path / "s.yaml"
    p.write_text(f"name: t\ntopology: two-ar\n{extra}steps: {steps}\n")
    return model.load(p)


def test_steps_are_dispatched_in_order(fake_lab, fake_backend, tmp_path):
    lab = fake_lab
    lab.state.attached = {"mn": ["ar1"]}
    lab.state.save()
    mn = lab.runtime("mn")
    mn.outputs["ip"] = '[{"flags": ["UP"], "addr_info": []}]'
    pid = mn.spawn(["agent"], log=tmp_path / "a.log")
    lab.state.add_service(ServiceRecord("mn", "agent", pid, ""))
    sc = _scenario(tmp_path, "[{wait: 0.5}, {metric: {ifname: mn-ar2, value: -40}}, "
                             "{move: {to: ar2, overlap: 0.2}}, {wait: 1}]")
    dwelled: list[float] = []
    r = Runner(sc, lab, tmp_path / "out", dwell=dwelled.append)
    lab.mobile.dwell = dwelled.append
    r.play()
    assert dwelled == [0.5, 0.2, 1.0]
    steps = [x["step"] for x in r.log.records if x["event"] == "step"]
    # the end: the move's binding updates awaited (no binding process runs here: at once)
    assert steps == ["repeat", "wait", "metric", "move", "moved", "wait", "settled"]
    assert r.log.records[-1]["done"] is True
    reqs = [e[2] for e in fake_backend.journal if e[1] == "request"]
    assert reqs == ["set-metric", "wait-configured"]


def test_the_binding_bound_follows_the_loss_of_the_links_of_a_move(run_root, fake_backend):
    mobile = make_fake_lab(fake_backend, "three-ar-sctp").mobile
    lossless = mobile.binding_bound({"ar1", "ar2"})
    # ar3 drops 2 % each way: two more ASCONF retransmissions (RTO 1 s, then 2 s)
    assert mobile.binding_bound({"ar2", "ar3"}) == pytest.approx(lossless + 3.0)


def test_traffic_steps_need_sctp_endpoints(fake_lab, tmp_path):
    sc = _scenario(tmp_path, "[{traffic: start}]")
    r = Runner(sc, fake_lab, tmp_path / "out")
    assert r.traffic is None  # two-ar has no SCTP nodes
    with pytest.raises(TestbedError, match="need SCTP endpoints"):
        r.play()


def test_the_correspondent_is_found_by_role(run_root, fake_backend, monkeypatch):
    monkeypatch.setattr("testbed.runtimes.kernel_nodes.host_has_sctp", lambda: True)
    lab = make_fake_lab(fake_backend, "two-ar-sctp")
    assert sctp_peer(lab, None) == "cn"
    assert sctp_peer(lab, model.Traffic(peer="dns")) == "dns"
    with pytest.raises(TestbedError, match="not a node"):
        sctp_peer(lab, model.Traffic(peer="zz"))


def test_ping_pong_goes_round_every_router_from_where_the_mn_is():
    p = model.PingPong(between=("ar1", "ar2", "ar3"), times=5)
    assert p.targets(["ar2"]) == ["ar3", "ar1", "ar2", "ar3", "ar1"]
    assert p.targets([]) == ["ar1", "ar2", "ar3", "ar1", "ar2"]
    assert model.PingPong(between=("ar1", "ar2"), times=3).targets(["ar1"]) == ["ar2", "ar1", "ar2"]


def test_a_refused_association_is_logged_and_the_steps_go_on(run_root, fake_backend, monkeypatch,
                                                             tmp_path):
    """The traffic client exits with REFUSED when the CN answers its INIT with ABORT: the run
    records it, stops the server at once and plays the remaining steps for the checker."""
    from testbed.sctp.traffic import REFUSED

    monkeypatch.setattr("testbed.runtimes.kernel_nodes.host_has_sctp", lambda: True)
    lab = make_fake_lab(fake_backend, "two-ar-sctp")
    lab.state.attached = {"mn": ["ar1"]}
    mn, cn = lab.runtime("mn"), lab.runtime("cn")
    mn.outputs["ip"] = '[{"flags": ["UP", "LOWER_UP"], "addr_info": [{"local": "192.0.2.100"}]}]'
    spawn = cn.spawn

    def server_listening(argv, *, log, env=None):
        (lab.state.dir / "cn" / "traffic" / "server.json").write_text("{}")
        return spawn(argv, log=log, env=env)

    def not_listening(msg):
        raise TestbedError(f"{mn.name}: {msg}: connection refused")  # the client's driver never served

    monkeypatch.setattr(cn, "spawn", server_listening)
    monkeypatch.setattr(mn, "wait", lambda handle, timeout: REFUSED)
    mn.replies["status"] = not_listening
    sc = _scenario(tmp_path, "[{traffic: start}, {wait: 1}, {traffic: stop}]",
                   "traffic: {rate: 10}\n")
    dwelled: list[float] = []
    r = Runner(sc, lab, tmp_path / "out", dwell=dwelled.append)
    r.play()
    assert dwelled == [1.0]
    (refused,) = [x for x in r.log.records if x.get("op") == "refused"]
    assert "cn refused the association" in refused["error"]
    assert not cn.running  # the server stopped with the refusal, not after a timeout


def test_budgets_gain_the_margins_of_the_lossy_networks_moved_to(run_root, fake_backend, tmp_path):
    lab = make_fake_lab(fake_backend, "three-ar-sctp")
    r = Runner(model.load("three-ar-pingpong"), lab, tmp_path / "out")
    r.visited = {"ar1", "ar2"}
    assert r.budget_margins() == {} and r.budgets() == {"set_primary_acked": 2.5, "dns_acked": 3.0}
    r.visited.add("ar3")  # 2 % each way: two DHCP retransmissions (5 s, 10 s), two ASCONF (1 s, 2 s),
    # two DNS UPDATE (0.5 s, 1 s)
    assert r.budget_margins() == pytest.approx({"set_primary_acked": 18.0, "dns_acked": 19.5})
    assert r.budgets() == pytest.approx({"set_primary_acked": 20.5, "dns_acked": 22.5})
