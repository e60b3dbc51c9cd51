"""N access routers of different path quality: a ping-pong round three ARs with an SCTP
association, each move a full TraSH ladder; the shaping really sits on the radio links."""

from __future__ import annotations

import json

import pytest

from testbed.host import netns
from testbed.host.poll import poll_until
from testbed.pytest_plugin import assert_verdict
from testbed.scenario import model
from testbed.scenario.runner import Runner
from tests.support.labs import lab_up

pytestmark = [pytest.mark.integration, pytest.mark.vm]

LAB = "tbpr3"


@pytest.fixture(scope="module")
def lab():
    with lab_up("three-ar-sctp", LAB) as lab:
        yield lab


def test_radio_links_are_shaped_by_what_each_kernel_has(lab):
    ar2 = netns.run(None, ["tc", "-n", lab.state.ns("ar2"), "qdisc", "show", "dev", "ar2-mn"]).stdout
    assert "tbf" in ar2 and "rate 1Mbit" in ar2  # the host kernel: no netem
    ar3 = netns.run(lab.state.ns("ar3"), ["nft", "list", "table", "netdev", "testbed_shape"]).stdout
    assert 'device "ar3-mn"' in ar3 and "< 200 drop" in ar3
    mn = lab.runtime("mn").run(["tc", "qdisc", "show", "dev", "mn-ar3"]).stdout
    assert "netem" in mn and "loss 2%" in mn  # the MN's own (UML) kernel has netem


def test_ping_pong_round_three_routers(lab, tmp_path):
    run = Runner(model.load("three-ar-pingpong"), lab, tmp_path).run()
    assert_verdict(run.verdict)
    hos = run.verdict.handovers
    nets = [h["address"].rsplit(".", 1)[0] for h in hos]
    assert nets == ["198.51.100", "203.0.113", "192.0.2"] * 2
    assert all("set_primary_acked" in h["phases"] and "delete_ip_acked" in h["phases"] for h in hos)
    server = json.loads((tmp_path / "traffic.json").read_text())["server"]
    assert server["missing"] == 0 and server["duplicates"] == []
    # the six moves in order; a DATA retransmitted to an alternate path after a loss on the
    # lossy ar3 (RFC 9260 §6.4) may add a switch there and back in between
    tos = iter(s["to"].rsplit(".", 1)[0] for s in server["source_switches"])
    assert all(net in tos for net in nets), server["source_switches"]


def test_a_run_leaves_no_association_behind(lab):
    """The ping-pong's association ended with the run (a graceful SHUTDOWN, or an ABORT past
    the wait the loss allows): none of it is left to show up in the next run's captures."""
    def assocs(node: str) -> list[str]:
        return lab.runtime(node).run(["cat", "/proc/net/sctp/assocs"]).stdout.strip().splitlines()[1:]

    assert poll_until(lambda: not assocs("mn") and not assocs("cn"), 10), (assocs("mn"), assocs("cn"))


def test_ipv4_networks_are_detected_by_icmp_router_discovery(lab):
    """RFC 1256 advertisements (the lab's advertiser on each AR) detect each IPv4 network as
    the router's address, before DHCP names its subnet and configures it."""
    rows = [json.loads(x) for x in (lab.wiring.agent_dir / "events.jsonl").read_text().splitlines()]
    v4 = [r for r in rows if r.get("kind") == "detected" and "." in (r.get("prefix") or "")]
    # at a link-up the advertisement answering the agent's solicitation and the DHCP lease race
    # (a loaded AR may answer late); every network the MN moved to was detected by one at least
    rdisc = {r["prefix"] for r in v4 if r["source"] == "rdisc"}
    assert rdisc >= {"198.51.100.1/32", "203.0.113.129/32"}, v4
    assert {r["source"] for r in v4} <= {"rdisc", "dhcp"}
    conf = [r for r in rows if r.get("kind") == "configured" and r.get("prefix") == "198.51.100.0/24"]
    assert conf  # the same network, renamed by the DHCP lease, configured
