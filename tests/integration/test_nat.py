"""§6 on the wire: a move into an access network behind NAT breaks the TraSH handover the way
the draft predicts, plain and over UDP (RFC 6951); each scenario's expectations hold."""

from __future__ import annotations

import json

import pytest

from testbed.decode.sctp import ADD_IP, DELETE_IP
from testbed.pytest_plugin import assert_verdict
from testbed.scenario import model
from testbed.scenario.runner import Runner
from tests.support.labs import lab_up

pytestmark = [pytest.mark.integration, pytest.mark.vm]
PRIVATE = "198.51.100.100"  # the MN's address behind ar2's NAT


@pytest.fixture(scope="module")
def nat_run(tmp_path_factory):
    with lab_up("two-ar-nat-sctp", "tbprn") as lab:
        yield Runner(model.load("nat-handover"), lab, tmp_path_factory.mktemp("nat")).run()


def test_nat_handover_meets_its_expectations(nat_run):
    assert_verdict(nat_run.verdict)  # every expectation met
    st = nat_run.verdict.statuses()
    assert st["asconf.ack"] == "fail" and st["continuity.new_path"] == "fail"


def test_binding_updates_carry_the_untranslated_address_and_leak_out(nat_run):
    facts = nat_run.verdict.facts
    params = [(p.type, p.address) for a in facts.asconfs for p in a.chunk.params]
    assert (ADD_IP, PRIVATE) in params and (DELETE_IP, "192.0.2.100") in params
    # the DELETE_IP went out from the private address and crossed ar2 untranslated
    deletes = [a for a in facts.asconfs if any(p.type == DELETE_IP for p in a.chunk.params)]
    assert deletes and all(a.src == PRIVATE for a in deletes)
    assert facts.seen_at(deletes[0].where, "core-cn.pcap").pcap == "core-cn.pcap"
    rows = [json.loads(x) for x in (nat_run.out / "events.jsonl").read_text().splitlines()]
    delete = next(r for r in rows if r.get("event") == "binding" and r.get("op") == "delete")
    assert delete["driver"]["acked"] is False  # the MN never heard the ACK


def test_over_udp_the_translated_source_makes_the_cn_abort(tmp_path):
    with lab_up("two-ar-nat-udp", "tbpru") as lab:
        run = Runner(model.load("nat-handover-udp"), lab, tmp_path).run()
        nat_address = next(str(i.addresses[0].ip) for i in lab.plan.nodes["ar2"].ifaces
                           if i.peer == "core")
    assert_verdict(run.verdict)
    st = run.verdict.statuses()
    assert st["continuity.association"] == "fail" and st["continuity.new_path"] == "fail"
    # sent to the NAT's own address (and carried back translated, to the MN's private one)
    assert nat_address in {a.dst for a in run.verdict.facts.aborts}
    client = json.loads((tmp_path / "traffic.json").read_text())["client"]
    assert client["error"]  # the association ended under the client (ECONNRESET or ESRCH)


def test_mptcp_keeps_its_connection_through_the_nat(tmp_path):
    """The MN opens the new subflow, so the NAT makes state for its SYN and translates it: the
    connection moves onto ar2's address with nothing lost (SCTP's ASCONF cannot do that)."""
    with lab_up("two-ar-nat-mptcp", "tbprm") as lab:
        run = Runner(model.load("nat-handover-mptcp"), lab, tmp_path).run()
        nat_address = next(str(i.addresses[0].ip) for i in lab.plan.nodes["ar2"].ifaces
                           if i.peer == "core")
    assert_verdict(run.verdict)
    traffic = json.loads((tmp_path / "traffic.json").read_text())
    (conn,) = traffic["server"]["connections"]
    assert conn["missing"] == 0 and conn["duplicates"] == [] and conn["closed"]
    assert [(s["from"], s["to"]) for s in conn["source_switches"]] == [("192.0.2.100", nat_address)]
    client = traffic["clients"]["mn"]
    assert client["echo_missing"] == 0 and not client["error"]
    # announced untranslated: ADD_ADDR carries the private address the CN cannot reach
    add = next(r for r in (json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines())
               if r.get("event") == "binding" and r.get("op") == "add")
    assert add["address"] == PRIVATE and add["ok"]
