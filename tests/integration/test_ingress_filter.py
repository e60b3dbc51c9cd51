"""Ingress filtering (BCP 38) on the access routers: what it does to a binding update sent
from the wrong source, and the rule that the MN never sends from a network it has left."""

from __future__ import annotations

import pytest

from testbed.decode.sctp import ADD_IP
from testbed.lab import middlebox
from testbed.pytest_plugin import assert_verdict
from testbed.scenario import model
from testbed.scenario.runner import Runner
from tests.support.labs import lab_up

pytestmark = [pytest.mark.integration, pytest.mark.vm]
LAB = "tbprb"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with lab_up("two-ar-bcp38", LAB) as lab:
        result = Runner(model.load("ingress-filter-handover"), lab, tmp_path_factory.mktemp("bcp")).run()
        result.drops = {ar: middlebox.ingress_drops(lab.runtime(ar)) for ar in ("ar1", "ar2")}
        yield result


def test_expectations_hold(run):
    assert_verdict(run.verdict)
    st = run.verdict.statuses()
    assert st["asconf.ack"] == "fail" and st["order.trash"] == "fail"


def test_the_add_ip_from_the_wrong_source_dies_at_ar1s_filter(run):
    facts = run.verdict.facts
    back = [a for a in facts.asconfs
            if any(p.type == ADD_IP and p.address == "192.0.2.100" for p in a.chunk.params)]
    assert back and all(a.src == "198.51.100.100" and a.where.pcap == "ar1-mn.pcap" for a in back)
    # captured where the MN sent it, never past the router
    assert all(facts.seen_at(a.where, "core-ar1.pcap").pcap != "core-ar1.pcap" for a in back)
    assert run.drops["ar1"] >= len(back) and run.drops["ar2"] == 0
