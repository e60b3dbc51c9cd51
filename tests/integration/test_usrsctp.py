"""Linux against another SCTP implementation: the TraSH handover with usrsctp as the CN.

The MN runs Linux kernel SCTP (UML), the CN usrsctp (libusrsctp2) over raw IP in its
namespace: the ASCONFs of the Linux MN (ADD_IP, SET_PRIMARY, DELETE_IP, with AUTH) must be
accepted by usrsctp and the stream must follow the new primary without a gap.
"""

from __future__ import annotations

import json

import pytest

from testbed.lab import Lab
from testbed.pytest_plugin import assert_rules
from testbed.scenario import model
from testbed.scenario.runner import Runner

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def handover(tmp_path_factory):
    from testbed.pytest_plugin import require_lab_prerequisites
    from testbed.sctp.usrsctp import library

    require_lab_prerequisites()
    try:
        library()
    except OSError as e:
        pytest.fail(str(e), pytrace=False)
    lab = Lab.up("two-ar-usrsctp", "tbixu")
    try:
        yield Runner(model.load("trash-handover"), lab, tmp_path_factory.mktemp("usrsctp")).run()
    finally:
        lab.close()
        Lab.open("tbixu").down()


def test_usrsctp_follows_the_linux_mns_asconf(handover):
    assert_rules(handover.verdict, "asconf", "order", "continuity", "dns")
    stats = json.loads((handover.out / "traffic.json").read_text())["server"]
    assert stats["missing"] == 0 and stats["received"] > 100
    assert [(s["from"], s["to"]) for s in stats["source_switches"]] == [("192.0.2.100", "198.51.100.100")]
