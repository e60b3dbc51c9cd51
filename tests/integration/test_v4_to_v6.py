"""A move from an IPv4-only access network to an IPv6-only one keeps the association: AF_INET6
sockets on both ends, the IPv6 address added (over IPv4) and made primary, the IPv4 one
deleted (over IPv6)."""

from __future__ import annotations

import json

import pytest

from testbed.decode.sctp import ADD_IP, DELETE_IP, SET_PRIMARY
from testbed.pytest_plugin import assert_verdict
from testbed.scenario import model
from testbed.scenario.runner import Runner
from tests.support.labs import lab_up

pytestmark = [pytest.mark.integration, pytest.mark.vm]
LAB = "tbprv"


def test_ipv4_only_to_ipv6_only(tmp_path):
    with lab_up("two-ar-v4v6-sctp", LAB) as lab:
        assert lab.access_state("ar1").ipv6 == [] and lab.access_state("ar1").ipv4
        run = Runner(model.load("v4-to-v6-handover"), lab, tmp_path).run()
    assert_verdict(run.verdict)
    asconfs = run.verdict.facts.asconfs
    by_type = {p.type: (a.src, p.address) for a in asconfs for p in a.chunk.params}
    assert ":" not in by_type[ADD_IP][0] and ":" in by_type[ADD_IP][1]  # IPv6 address, sent over IPv4
    assert ":" in by_type[SET_PRIMARY][1]
    assert ":" in by_type[DELETE_IP][0] and ":" not in by_type[DELETE_IP][1]  # IPv4 address, over IPv6
    traffic = json.loads((tmp_path / "traffic.json").read_text())
    server, client = traffic["server"], traffic["client"]
    assert server["missing"] == 0 and server["duplicates"] == []
    (sw,) = server["source_switches"]
    assert ":" not in sw["from"] and ":" in sw["to"]
    primary = next(e for e in client["driver_log"] if e["op"] == "primary")
    assert primary["peer"] == "2001:db8:ff:c::2"  # the MN's own primary followed to the CN's IPv6
