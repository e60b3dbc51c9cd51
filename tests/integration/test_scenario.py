"""A scenario run on the real lab: captures for every link, merged events, a verdict."""

from __future__ import annotations

import json

import pytest

from testbed.conformance.checker import check
from testbed.pytest_plugin import assert_rules, assert_verdict

pytestmark = pytest.mark.integration
VERDICTS: dict[str, dict[str, str]] = {}  # backend -> rule id -> status, to compare backends


@pytest.mark.parametrize("testbed_lab", ["mininet", "docker"], indirect=True)
def test_move_scenario_writes_pcaps_events_and_a_passing_verdict(testbed_lab, testbed_run):
    result = testbed_run("move-ar2", lab=testbed_lab)
    assert_verdict(result.verdict)
    # the same scenario on the other backend gave the same verdict, rule by rule
    VERDICTS[testbed_lab.state.backend] = {r.id: r.status for r in result.verdict.rules}
    assert len({json.dumps(v, sort_keys=True) for v in VERDICTS.values()}) == 1, VERDICTS
    tmp_path = result.out
    pcaps = sorted(p.name for p in (tmp_path / "pcaps").glob("*.pcap"))
    assert pcaps == sorted(f"{v.a_ifname}.pcap" for v in testbed_lab.plan.veths)
    rows = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    walls = [r["wall"] for r in rows]
    assert walls == sorted(walls)
    steps = [r["step"] for r in rows if r["event"] == "step"]
    assert steps[:3] == ["start", "repeat", "move"] and steps[-1] == "end"
    configured = {r["prefix"] for r in rows if r["event"] == "configured"}
    assert {"198.51.100.0/24", "2001:db8:a2::/64", "192.0.2.0/24", "2001:db8:a1::/64"} <= configured
    ok = [r for r in rows if r["event"] == "location" and r["rcode"] == "NOERROR"]
    assert ok and any("198.51.100" in " ".join(r["addresses"]["a"]) for r in ok)
    # the same captures judged again by the checker alone: DNS updates signed and answered
    assert_rules(check(tmp_path / "pcaps", rules="dns"), "dns.signed", "dns.answered")
    assert testbed_lab.mobile.attached == ["ar1"] or testbed_lab.access_state("ar1").ipv4
