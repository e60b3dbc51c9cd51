"""TCP binding updates on the wire: an MPTCP connection across the move, driven by the MN's
binding process through the userspace path manager (and, for comparison, by the in-kernel one
given endpoints only), and a plain TCP connection that the same move breaks.

MN and CN are namespace nodes on the host kernel, which has MPTCP. One lab for the module.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from testbed.lab import Lab
from testbed.pytest_plugin import assert_rules, assert_verdict
from testbed.scenario import model
from testbed.scenario.runner import Runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mptcp_lab():
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    lab = Lab.up("two-ar-mptcp", "tbmph")
    try:
        yield lab
    finally:
        lab.close()
        Lab.open("tbmph").down()


@pytest.fixture(scope="module")
def runs(mptcp_lab, tmp_path_factory):
    """The three scenarios, once each, on the one lab (each comes back to ar1 first)."""
    out = {}
    for name in ("mptcp-handover", "tcp-baseline", "mptcp-auto-handover"):
        out[name] = Runner(model.load(name), mptcp_lab, tmp_path_factory.mktemp(name)).run()
    return out


def test_mptcp_handover_passes_every_rule_on_the_wire(runs):
    r = runs["mptcp-handover"]
    assert_rules(r.verdict, "mptcp", "dns", "continuity.dss")
    assert_verdict(r.verdict)
    (h,) = r.verdict.handovers
    p = h["phases"]
    order = ["configured", "join_sent", "join_acked", "add_addr_sent", "prio_new", "prio_old",
             "dns_acked", "remove_sent"]
    assert [p[k] for k in order] == sorted(p[k] for k in order)
    assert ipaddress.ip_address(h["address"]) in ipaddress.ip_network("198.51.100.0/24")
    assert h["floors"]["join"]["seconds"] < 0.05


def test_every_message_arrived_once_and_switched_source(runs):
    traffic = json.loads((runs["mptcp-handover"].out / "traffic.json").read_text())
    (conn,) = traffic["server"]["connections"]
    assert conn["received"] > 100 and conn["missing"] == 0 and conn["duplicates"] == [] and conn["closed"]
    (sw,) = conn["source_switches"]  # the new subflow took over, once
    assert ipaddress.ip_address(sw["from"]) in ipaddress.ip_network("192.0.2.0/24")
    assert ipaddress.ip_address(sw["to"]) in ipaddress.ip_network("198.51.100.0/24")
    client = traffic["clients"]["mn"]
    assert client["echo_received"] == client["sent"] and client["echo_missing"] == 0
    ops = [e["op"] for e in client["driver_log"]]
    assert ops == ["add", "primary", "delete"], client["driver_log"]


def test_the_binding_process_sent_the_location_update_after_mp_prio(runs):
    rows = [json.loads(x) for x in (runs["mptcp-handover"].out / "events.jsonl").read_text().splitlines()]
    ops = [r["op"] for r in rows if r["event"] == "binding" and r["op"] != "transport"]
    # MP_JOIN + ADD_ADDR, MP_PRIO, then the DNS UPDATE: in that order. The new network's IPv6
    # address may configure after the switch, and its AAAA is then published by one more update
    ladder = ops[ops.index("add"):]
    assert ladder.index("primary") < ladder.index("location"), ladder
    assert "delete" in ladder[ladder.index("primary"):]
    assert set(ladder) == {"add", "primary", "location", "delete"}
    assert not [r for r in rows if r["event"] == "location"]  # not the agent: the binding process


def test_plain_tcp_breaks_and_the_verdict_expects_it(runs):
    r = runs["tcp-baseline"]
    assert r.verdict.passed  # every expectation met: the break was seen
    broke = r.verdict.rule("continuity.tcp")
    assert broke.status == "fail" and broke.met and "broke" in broke.evidence[0].what
    traffic = json.loads((r.out / "traffic.json").read_text())
    (conn,) = traffic["server"]["connections"]
    assert "timed out" in conn["error"] and not conn["closed"]
    assert conn["missing"] == 0 and set(conn["sources"]) == {next(iter(conn["sources"]))}  # one path
    assert traffic["clients"]["mn"]["error"]


def test_in_kernel_path_manager_joins_and_removes_but_sends_no_mp_prio(runs):
    r = runs["mptcp-auto-handover"]
    assert r.verdict.passed, [(x.id, x.status, x.message) for x in r.verdict.rules]
    assert r.verdict.rule("mptcp.prio").status == "fail"
    assert_rules(r.verdict, "mptcp.join", "mptcp.add_addr", "mptcp.remove", "continuity.dss")
