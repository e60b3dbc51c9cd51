"""IPv6 and dual-stack SCTP associations between kernel nodes, on the wire (issue: SCTP over
IPv6). The socket API on AF_INET6 associations (IPv6 and v4-mapped addresses), a TraSH
handover of an IPv6 association whose ASCONFs carry IPv6 address parameters, and a dual-stack
association moving with both families."""

from __future__ import annotations

import ipaddress
import json

import pytest

from testbed.conformance.checker import check
from testbed.decode.sctp import ADD_IP, DELETE_IP, SET_PRIMARY
from testbed.mobility.protocol import Status, encode
from testbed.pytest_plugin import assert_rules, assert_verdict
from testbed.scenario import model
from testbed.scenario.runner import Runner
from testbed.scenario.traffic import SctpTraffic
from testbed.services.binding import TRAFFIC_CONTROL
from tests.support.labs import lab_up

pytestmark = [pytest.mark.integration, pytest.mark.vm]

LAB = "tbpr6"


@pytest.fixture(scope="module")
def lab():
    with lab_up("two-ar-sctp", LAB) as lab:
        yield lab


def _version(a: str) -> int:
    return ipaddress.ip_address(a).version


def test_socket_api_on_a_dual_stack_association(lab, tmp_path):
    """local_addrs/peer_addrs/status on AF_INET6 sockets holding IPv6 and v4-mapped IPv4
    addresses, as two real kernels report them (the traffic client's status command)."""
    lab.move("ar1")
    traffic = SctpTraffic(lab, "cn", model.Traffic(families=(4, 6)), tmp_path)
    traffic.start()
    try:
        st = lab.runtime("mn").unix_request(str(TRAFFIC_CONTROL), encode(Status()))
    finally:
        traffic.stop()
    assert st["ok"] and st["state"] == "ESTABLISHED", st
    assert sorted(map(_version, st["local"])) == [4, 6]
    assert set(st["peer"]) == {"203.0.113.14", "2001:db8:ff:c::2"}
    assert st["families"] == [4, 6]


@pytest.fixture(scope="module")
def v6_run(lab, tmp_path_factory):
    return Runner(model.load("trash-handover-v6"), lab, tmp_path_factory.mktemp("v6")).run()


def test_ipv6_association_handover_passes_every_rule(v6_run):
    assert_rules(v6_run.verdict, "asconf", "dns", "order.trash", "continuity.tsn", "continuity.new_path",
                 "continuity.association", "source.left_network")
    assert_verdict(v6_run.verdict)


def test_every_asconf_carries_an_ipv6_address_and_is_acknowledged(v6_run):
    v = check(v6_run.out / "pcaps", rules="asconf")
    facts = v.facts
    kinds = {p.type for a in facts.asconfs for p in a.chunk.params}
    assert {ADD_IP, SET_PRIMARY, DELETE_IP} <= kinds
    for a in facts.asconfs:
        assert _version(a.src) == 6 and _version(a.chunk.address) == 6
        assert all(_version(p.address) == 6 for p in a.chunk.params)
    assert v.rule("asconf.ack").status == "pass" and v.rule("asconf.success").status == "pass"
    (h,) = v.handovers
    assert _version(h["address"]) == 6 and _version(h["old_address"]) == 6


def test_ipv6_data_keeps_flowing_and_switches_source(v6_run):
    server = json.loads((v6_run.out / "traffic.json").read_text())["server"]
    assert server["received"] > 100 and server["missing"] == 0 and server["duplicates"] == []
    (sw,) = server["source_switches"]
    assert ipaddress.ip_address(sw["from"]) in ipaddress.ip_network("2001:db8:a1::/64")
    assert ipaddress.ip_address(sw["to"]) in ipaddress.ip_network("2001:db8:a2::/64")


def test_dual_stack_move_adds_and_deletes_both_families_with_one_primary_switch(lab, tmp_path):
    run = Runner(model.load("dual-stack-handover"), lab, tmp_path).run()
    assert_verdict(run.verdict)
    (h,) = run.verdict.handovers
    assert sorted(map(_version, h["addresses"])) == [4, 6]
    assert sorted(map(_version, h["old_addresses"])) == [4, 6]
    params = [p for a in run.verdict.facts.asconfs for p in a.chunk.params]
    assert sum(p.type == SET_PRIMARY for p in params) == 1
    server = json.loads((tmp_path / "traffic.json").read_text())["server"]
    assert server["missing"] == 0 and server["duplicates"] == []
