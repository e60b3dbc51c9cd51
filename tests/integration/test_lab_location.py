"""Location management (§4) against the lab's own named: the MN's SIG(0) key updates its name."""

from __future__ import annotations

import pytest

from testbed.host import netns

pytestmark = pytest.mark.integration


def _update(key_file: str, server: str, a: list[str], aaaa: list[str]) -> dict:
    from testbed.mobility.location.keys import load_key
    from testbed.mobility.location.updater import LocationUpdater

    up = LocationUpdater(server, "mobile.test", "mn.mobile.test", key=load_key(key_file))
    return up.update_sync(a, aaaa).to_dict()


@pytest.mark.parametrize("alg", ["ECDSAP256SHA256", "ED25519"])
def test_sig0_update_from_mn_is_seen_by_cn(testbed_lab, alg):
    st = testbed_lab.access_state("ar1")
    key = str(testbed_lab.wiring.sig0_key_file(alg))
    res = netns.call_in(testbed_lab.state.ns("mn"), _update, key, "203.0.113.10", st.ipv4, st.ipv6)
    assert res["rcode"] == "NOERROR", res
    cn = testbed_lab.runtime("cn")
    assert cn.run(["dig", "+short", "mn.mobile.test", "A"]).stdout.split() == st.ipv4
    assert cn.run(["dig", "+short", "mn.mobile.test", "AAAA"]).stdout.split() == st.ipv6
