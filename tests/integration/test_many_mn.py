"""Many mobile nodes at once: five MPTCP MNs sharing two access segments move together, each
with its own name in the zone, SIG(0) key, agent and binding process; each is judged on its own
part of the captures, and the verdict summarises them. One lab for the module."""

from __future__ import annotations

import json

import pytest

from testbed.lab import Lab
from testbed.pytest_plugin import assert_rules
from testbed.scenario import model
from testbed.scenario.runner import Runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def many_lab():
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    lab = Lab.up("many-mn", "tbmpm")
    try:
        yield lab
    finally:
        lab.close()
        Lab.open("tbmpm").down()


@pytest.fixture(scope="module")
def run(many_lab, tmp_path_factory):
    return Runner(model.load("many-mn"), many_lab, tmp_path_factory.mktemp("many")).run()


def test_each_mn_has_its_own_name_key_agent_and_binding(many_lab):
    topo = many_lab.topo
    assert topo.mobiles == ["mn1", "mn2", "mn3", "mn4", "mn5"]
    services = {(r.node, r.service) for r in many_lab.state.service_records()}
    assert all((mn, s) in services for mn in topo.mobiles for s in ("dhcpcd", "agent", "binding"))
    keys = {mn: many_lab.wiring.for_mobile(mn).sig0_key_file("ECDSAP256SHA256") for mn in topo.mobiles}
    assert len({p.read_text() for p in keys.values()}) == 5  # five different key pairs
    conf = (many_lab.node_dir("dns", "named") / "named.conf").read_text()
    assert all(f"grant {mn}.mobile.test. self {mn}.mobile.test." in conf for mn in topo.mobiles)
    assert "sig0checks-quota 10;" in conf  # two per MN


def test_all_move_at_once_and_each_passes_on_its_own(run):
    v = run.verdict
    assert v.passed, [(r.id, r.message) for r in v.rules if not r.met]
    assert set(v.mobiles) == {"mn1", "mn2", "mn3", "mn4", "mn5"}
    for mn, mv in v.mobiles.items():
        assert_rules(mv, "mptcp.join", "mptcp.add_addr", "mptcp.prio", "mptcp.remove", "dns.signed",
                     "dns.answered", "continuity.dss")
        (h,) = mv.handovers  # its own handover, matched to its own agent's events
        assert h["t0"] is not None and h["offsets"]["prio_old"] < 2.0
        updates = [r for r in mv.rules if r.id == "dns.signed"]
        assert f"by {mn}.mobile.test." in updates[0].message  # its own key signed its update
    assert {h["mobile"] for h in v.handovers} == set(v.mobiles)


def test_every_connection_kept_every_message(run):
    traffic = json.loads((run.out / "traffic.json").read_text())
    conns = traffic["server"]["connections"]
    assert len(conns) == 5
    for c in conns:
        assert c["missing"] == 0 and c["duplicates"] == [] and c["closed"] and len(c["source_switches"]) == 1
    assert sorted(traffic["clients"]) == ["mn1", "mn2", "mn3", "mn4", "mn5"]
    verdict = json.loads((run.out / "verdict.json").read_text())
    assert verdict["schema"] == 4 and set(verdict["mobiles"]) == set(traffic["clients"])
    assert sorted(p.name for p in (run.out / "pcaps").iterdir())[:2] == ["ar1-lan.pcap", "ar2-lan.pcap"]
