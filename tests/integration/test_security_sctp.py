"""Forged binding updates and faults on kernel SCTP nodes (User-Mode-Linux here): each scenario
ends in its expected verdict, the attack shows on the wire, and the labs go down clean.

One sctp-sec lab carries forged-asconf, then fault-binding, then fault-kernel-node (each leaves
the lab more broken than the one before, in that order); the AUTH-off and shared-key variants
are topologies of their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.conformance.checker import check
from testbed.lab import Lab
from testbed.pytest_plugin import lab_name, require_lab_prerequisites
from testbed.scenario import model
from testbed.scenario.runner import Runner
from tests.support.hostcheck import leftovers

pytestmark = [pytest.mark.integration, pytest.mark.long]


def _rules(v) -> dict[str, str]:
    return {r.id: r.status for r in v.rules}


def _unmet(v) -> list[tuple[str, str, str | None, str]]:
    return [(r.id, r.status, r.expected, r.message) for r in v.rules if not r.met]


@pytest.fixture(scope="module")
def sec_lab():
    require_lab_prerequisites()
    name = lab_name("sa")
    lab = Lab.up("sctp-sec", name)
    try:
        yield lab
    finally:
        lab.close()
        Lab.open(name).down()
        assert leftovers(name) == {k: [] for k in leftovers(name)}


def _run(lab: Lab, scenario: str, out: Path):
    return Runner(model.load(scenario), lab, out).run()


def test_forged_asconf_refused_without_a_valid_hmac_taken_with_one(sec_lab, tmp_path: Path) -> None:
    r = _run(sec_lab, "forged-asconf", tmp_path)
    v = r.verdict
    assert v.passed, _unmet(v)
    st = _rules(v)
    assert (st["attack.asconf.no_auth"], st["attack.asconf.wrong_hmac"], st["attack.asconf.on_path"]) == \
        ("pass", "pass", "fail")
    taken = v.rule("attack.asconf.on_path")
    assert "ASCONF-ACK, success" in taken.message and "HEARTBEAT(s) answered" in taken.message
    # on the wire: the CN's ASCONF-ACK to the attacker's address, and its HMAC verifies
    atk = sec_lab.plan.address_of("atk", 4)
    again = check(r.out / "pcaps", rules="asconf")
    assert any(k.dst == atk for k in again.facts.acks)
    bad = [e.what for e in v.rule("asconf.auth").evidence]
    assert any("without AUTH" in w for w in bad) and any("HMAC does not verify" in w for w in bad)
    events = [json.loads(x) for x in (r.out / "events.jsonl").read_text().splitlines()]
    on_path = next(e for e in events if e.get("rule") == "attack.asconf.on_path")
    assert on_path["data_received"] > 0 and on_path["heartbeats_answered"] >= 1


def test_fault_binding_killed_is_named(sec_lab, tmp_path: Path) -> None:
    v = _run(sec_lab, "fault-binding", tmp_path).verdict
    assert v.passed, _unmet(v)
    assert "binding on mn" in v.rule("fault.kill.binding").message


def test_fault_kernel_node_killed_ends_in_a_verdict(sec_lab, tmp_path: Path) -> None:
    v = _run(sec_lab, "fault-kernel-node", tmp_path).verdict
    assert v.passed, _unmet(v)
    assert "kernel of cn" in v.rule("fault.kill.node.cn").message
    assert v.rule("scenario.steps").status == "fail"


@pytest.mark.parametrize(("scenario", "want"), [
    ("forged-asconf-noauth", {"attack.asconf.on_path": "fail", "asconf.auth": "fail"}),
    ("forged-asconf-key", {"attack.asconf.on_path": "pass", "asconf.auth": "fail", "order.trash": "pass"}),
])
def test_auth_off_lets_it_in_and_a_shared_key_keeps_it_out(scenario: str, want: dict[str, str],
                                                            tmp_path: Path) -> None:
    require_lab_prerequisites()
    sc = model.load(scenario)
    name = lab_name("sk" if "key" in scenario else "sn")
    lab = Lab.up(sc.topology, name)
    try:
        v = Runner(sc, lab, tmp_path).run().verdict
    finally:
        lab.close()
        Lab.open(name).down()
    assert {rid: v.rule(rid).status for rid in want} == want, _unmet(v)
    assert v.passed, _unmet(v)
    if "key" in scenario:  # the MN's own ASCONFs verify under the shared key; only the forged one fails
        (bad,) = v.rule("asconf.auth").evidence
        assert "HMAC does not verify" in bad.what and "192.0.2.254" in bad.what
    assert leftovers(name) == {k: [] for k in leftovers(name)}
