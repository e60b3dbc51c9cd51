"""DHCPv6 on access networks (§3), on the real daemons: stateless (SLAAC + DHCPv6 information)
on ar1, stateful (the address from ar2's dhcpd -6) on ar2; the agent detects the stateful
network from the DHCPv6 REPLY, and an IPv6 association moves onto it in TraSH order."""

from __future__ import annotations

import ipaddress
import json

import pytest

from testbed.decode.dhcp6 import INFORMATION_REQUEST, REPLY, SOLICIT
from testbed.pytest_plugin import assert_verdict
from testbed.scenario import model
from testbed.scenario.runner import Runner
from tests.support.labs import lab_up

pytestmark = [pytest.mark.integration, pytest.mark.vm]
LAB = "tbprd"
POOL = (ipaddress.ip_address("2001:db8:a2::1000"), ipaddress.ip_address("2001:db8:a2::1fff"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with lab_up("two-ar-dhcpv6", LAB) as lab:
        result = Runner(model.load("dhcpv6-handover"), lab, tmp_path_factory.mktemp("dhcp6")).run()
        result.dhcpcd_log = (lab.node_dir("mn", "dhcpcd") / "dhcpcd.log").read_text()
        yield result


def test_the_handover_to_the_stateful_network_passes(run):
    assert_verdict(run.verdict)
    (h,) = run.verdict.handovers
    assert POOL[0] <= ipaddress.ip_address(h["address"]) <= POOL[1]  # from ar2's range6
    assert h["durations"]["detected"]["floor"] == "dhcpv6"
    assert h["floors"]["dhcpv6"]["what"] == "DHCPv6 SOLICIT → REPLY"


def test_the_agent_detected_ar2s_network_from_dhcpv6(run):
    rows = [json.loads(x) for x in (run.out / "events.jsonl").read_text().splitlines()]
    det = [r for r in rows if r.get("event") == "detected" and r.get("ifname") == "mn-ar2"
           and ":" in (r.get("prefix") or "")]
    assert det and det[-1]["source"] == "dhcpv6" and det[-1]["prefix"] == "2001:db8:a2::/64"


def test_stateless_on_ar1_and_stateful_on_ar2(run):
    # ar1 (the lab's start, before the captures): an Information-Request answered
    assert "mn-ar1: broadcasting INFORM6" in run.dhcpcd_log and "mn-ar1: REPLY6 received" in run.dhcpcd_log
    kinds = {(s.link[0], s.msg.msg_type) for s in run.verdict.facts.dhcp6}
    assert {("ar2-mn.pcap", SOLICIT), ("ar2-mn.pcap", REPLY)} <= kinds  # stateful on ar2
    assert not any(t == INFORMATION_REQUEST for link, t in kinds if link == "ar2-mn.pcap")
    html = (run.out / "report.html").read_text()
    assert "DHCPv6 SOLICIT" in html and "DHCPv6 REPLY 2001:db8:a2::" in html
