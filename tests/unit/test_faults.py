"""Fault steps: parsed with one clear error, injected on a lab of fakes, judged into a rule that
names the fault and what the run showed after it."""

from __future__ import annotations

import pytest

from testbed.conformance.verdict import RuleResult
from testbed.errors import ConfigError
from testbed.scenario import model
from testbed.scenario.faults import Faults
from testbed.scenario.runner import EventLog
from testbed.state import ServiceRecord


def test_fault_rule_ids_and_bad_input(tmp_path) -> None:
    assert model.Fault(kill="dhcpd", node="ar2").rule_id == "fault.kill.dhcpd.ar2"
    assert model.Fault(flap="ar1").rule_id == "fault.flap.ar1"
    assert model.Fault(vanish="ar1").rule_id == "fault.vanish.ar1"
    bad = tmp_path / "s.yaml"
    bad.write_text("name: t\nsteps: [{fault: {kill: dhcpd}}]\n")
    with pytest.raises(ConfigError, match=r"steps.0.fault: kill: dhcpd needs node: \(the access router\)"):
        model.load(bad)
    bad.write_text("name: t\nsteps: [{fault: {kill: named, flap: ar1}}]\n")
    with pytest.raises(ConfigError, match="a fault is one of kill, flap or vanish"):
        model.load(bad)


def test_a_killed_daemon_is_named_with_what_followed(fake_lab, tmp_path) -> None:
    dns = fake_lab.runtime("dns")
    pid = dns.spawn(["named"], log=tmp_path / "n.log")
    fake_lab.state.add_service(ServiceRecord("dns", "named", pid, ""))
    faults = Faults(fake_lab, EventLog(tmp_path / "e.jsonl"), lambda _m: None)
    faults.inject(model.Fault(kill="named"))
    assert ("dns", "signal", str(pid), "9") in fake_lab.backend.journal
    lost = RuleResult("dns.answered", "fail", "UPDATE id 7 never answered")
    (r,) = faults.rules(None, [lost])
    assert r.id == "fault.kill.named" and r.status == "fail"
    assert "named on dns" in r.message and "dns.answered failed" in r.message


def test_a_fault_the_lab_came_through_passes(fake_lab, tmp_path) -> None:
    faults = Faults(fake_lab, EventLog(tmp_path / "e.jsonl"), lambda _m: None)
    faults.inject(model.Fault(flap="ar1", times=2, period=0.01))
    links = [e for e in fake_lab.backend.journal if e[1] == "link"]
    assert [e[3] for e in links] == ["down", "up", "down", "up"]
    (r,) = faults.rules(None, [])
    assert r.status == "pass" and "came through" in r.message
