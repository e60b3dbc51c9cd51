"""Scenario files: the shipped ones load; a bad one is one line naming the field."""

from __future__ import annotations

import pytest

from testbed.errors import ConfigError
from testbed.scenario import model


@pytest.mark.parametrize("path", sorted(model.SCENARIO_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_load(path):
    sc = model.load(path)
    assert sc.steps


@pytest.mark.parametrize("steps, field", [
    ("[{move: {to: ar2, mode: sideways}}]", "steps.0.move.mode"),
    ("[{jump: 1}]", "steps.0"),
    ("[{wait: -1}]", "steps.0.wait"),
    ("[{traffic: go}]", "steps.0.traffic"),
    ("[{move: {to: ar2}, wait: 1}]", "steps.0"),
])
def test_bad_steps_name_the_field(tmp_path, steps, field):
    p = tmp_path / "s.yaml"
    p.write_text(f"name: x\nsteps: {steps}\n")
    with pytest.raises(ConfigError) as ei:
        model.load(p)
    assert ei.value.field == field and "\n" not in str(ei.value)


@pytest.mark.parametrize("traffic, field", [
    ("{transport: tcp, binding: auto}", "traffic"),
    ("{transport: mptcp, binding: auto_asconf}", "traffic"),
    ("{transport: dccp}", "traffic.transport"),
    ("{transport: tcp, user_timeout: 0}", "traffic.user_timeout"),
])
def test_a_binding_belongs_to_its_transport(tmp_path, traffic, field):
    p = tmp_path / "s.yaml"
    p.write_text(f"name: x\ntraffic: {traffic}\nsteps: [{{traffic: start}}]\n")
    with pytest.raises(ConfigError) as ei:
        model.load(p)
    assert ei.value.field == field and "\n" not in str(ei.value)
