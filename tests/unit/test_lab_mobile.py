"""The mobile node's moves on fake runtimes: the order of attach, wait and detach per mode."""

from __future__ import annotations

import pytest

from testbed.errors import TestbedError
from testbed.state import ServiceRecord


def _agent_running(lab):
    """Record a live agent so moves wait on its wait-configured answer."""
    mn = lab.runtime("mn")
    mn.outputs["ip"] = '[{"flags": ["UP", "LOWER_UP"], "addr_info": []}]'
    pid = mn.spawn(["python"], log=lab.state.dir / "a.log")
    lab.state.add_service(ServiceRecord("mn", "agent", pid, "a.log"))
    return mn


def _ops(journal, *kinds):
    return [e for e in journal if e[1] in kinds]


def test_make_before_break_attaches_waits_then_detaches(fake_lab, fake_backend):
    lab = fake_lab
    lab.state.attached = {"mn": ["ar1"]}
    lab.state.save()
    _agent_running(lab)
    dwelled = []
    lab.mobile.dwell = dwelled.append
    lab.move("ar2", "make-before-break", overlap=1.5)
    ops = _ops(fake_backend.journal, "link", "request")
    assert ops == [("mn", "link", "mn-ar2", "up"), ("mn", "request", "wait-configured"),
                   ("mn", "link", "mn-ar1", "down")]
    assert dwelled == [1.5]
    assert lab.state.attached == {"mn": ["ar2"]} and lab.mobile.attached == ["ar2"]


def test_break_before_make_detaches_first(fake_lab, fake_backend):
    lab = fake_lab
    lab.state.attached = {"mn": ["ar1"]}
    lab.state.save()
    _agent_running(lab)
    lab.mobile.dwell = lambda s: fake_backend.journal.append(("mn", "gap", str(s)))
    lab.move("ar2", "break-before-make", gap=0.3)
    ops = _ops(fake_backend.journal, "link", "request", "gap")
    assert ops == [("mn", "link", "mn-ar1", "down"), ("mn", "gap", "0.3"),
                   ("mn", "link", "mn-ar2", "up"), ("mn", "request", "wait-configured")]


def test_detach_flushes_global_addresses(fake_lab, fake_backend):
    lab = fake_lab
    lab.state.attached = {"mn": ["ar1", "ar2"]}
    lab.state.save()
    lab.mobile.detach("ar1")
    assert ("mn", "run", "ip", "addr", "flush", "dev", "mn-ar1", "scope", "global") in fake_backend.journal
    assert lab.state.attached == {"mn": ["ar2"]} and lab.mobile.attached == ["ar2"]


def test_a_move_fails_with_the_agents_state_when_never_configured(fake_lab):
    lab = fake_lab
    lab.state.attached = {"mn": ["ar1"]}
    lab.state.save()
    mn = _agent_running(lab)
    mn.replies["wait-configured"] = lambda m: {"ok": False, "error": "not configured"}
    mn.outputs["ip"] = '[{"flags": ["UP"], "addr_info": []}]'
    with pytest.raises(TestbedError, match="not configured on ar2 within"):
        lab.move("ar2")


def test_move_to_an_unknown_router_names_the_routers(fake_lab):
    with pytest.raises(TestbedError, match=r"'ar9' is not an access router .*\(ar1, ar2\)"):
        fake_lab.move("ar9")


def test_access_state_keeps_only_the_networks_addresses(fake_lab):
    lab = fake_lab
    lab.runtime("mn").outputs["ip"] = (
        '[{"flags": ["UP", "LOWER_UP"], "addr_info": ['
        '{"local": "192.0.2.100"}, {"local": "203.0.113.9"},'
        '{"local": "2001:db8:a1::5", "tentative": true},'
        '{"local": "2001:db8:a1::6", "tentative": true, "optimistic": true}]}]')
    st = lab.access_state("ar1")
    assert st.carrier and st.ipv4 == ["192.0.2.100"] and st.ipv6 == ["2001:db8:a1::6"]


def test_wait_configured_asks_for_the_families_the_network_has(run_root, fake_backend):
    from tests.conftest import make_fake_lab

    lab = make_fake_lab(fake_backend, "two-ar-v4v6-sctp")
    mn = _agent_running(lab)
    asked = []
    mn.replies["wait-configured"] = lambda msg: asked.append(msg["families"]) or {"ok": True}
    lab.mobile.wait_configured("ar1")
    lab.mobile.wait_configured("ar2")
    assert asked == [[4], [6]]
    assert [d.NAME for d in lab.wiring.ar_daemons("ar1")] == ["dhcpd"]
    assert [d.NAME for d in lab.wiring.ar_daemons("ar2")] == ["radvd"]


def test_make_before_break_keeps_the_old_link_until_the_binding_has_acted(fake_lab, fake_backend):
    """The old link goes only once the binding process has acted on the agent's latest event
    (its ADD_IP and SET_PRIMARY answered): a lost ASCONF is retransmitted on the path it took."""
    import json

    from testbed.mobility.protocol import State, encode

    lab = fake_lab
    lab.state.attached = {"mn": ["ar1"]}
    lab.state.save()
    mn = _agent_running(lab)
    pid = mn.spawn(["python"], log=lab.state.dir / "b.log")
    lab.state.add_service(ServiceRecord("mn", "binding", pid, "b.log"))
    up = {"link": "up", "networks": [{"prefix": "192.0.2.0/24", "configured": True}]}
    agent_dir = lab.wiring.agent_dir
    agent_dir.mkdir(parents=True, exist_ok=True)
    (agent_dir / "state.json").write_text(json.dumps({"seq": 9, "interfaces": {"mn-ar1": up, "mn-ar2": up}}))
    seen = iter([7, 8, 9])
    mn.replies["status"] = lambda _msg: encode(State("following", detail={"seen": next(seen)}))
    lab.mobile.dwell = lambda s: None
    lab.move("ar2", "make-before-break", overlap=0.5)
    ops = _ops(fake_backend.journal, "link", "request")
    assert ops == [("mn", "link", "mn-ar2", "up"), ("mn", "request", "wait-configured"),
                   *[("mn", "request", "status")] * 3, ("mn", "link", "mn-ar1", "down")]
