"""Daemon configs as rendered, accepted by each daemon's own checker (no namespaces needed)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed.errors import ServiceError
from testbed.model import loader
from testbed.services import bind
from testbed.services.bind import Named, ZoneData, ZoneKeys
from testbed.services.dhcpd import Dhcpd
from testbed.services.radvd import Radvd


@dataclass
class LocalNode:
    """A NodeRuntime that runs on the host: enough for config checks, which touch no network."""

    name: str = "n"
    netns: str = ""
    ran: list[list[str]] = field(default_factory=list)

    def run(self, argv, *, timeout=30.0, check=True):
        self.ran.append(list(argv))
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check)


TOPO = loader.load()
AR1 = TOPO.access_networks[0]


def keys(tmp_path: Path) -> ZoneKeys:
    tsig = tmp_path / "k.tsig.key"
    tsig.write_text('key "mn-tsig" { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0c2VjcmV0"; };\n')
    rr = "mn.mobile.test. 5 IN KEY 512 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4="
    return ZoneKeys([rr], tsig, "mn-tsig")


def zone() -> ZoneData:
    return ZoneData("mobile.test", "dns", {"dns": ["203.0.113.10", "2001:db8:ff:53::2"],
                                           "cn": ["203.0.113.14"]}, ["mn"], listen=["203.0.113.10"])


def test_named_config_passes_named_checkconf(tmp_path):
    node = LocalNode()
    n = Named(node, tmp_path, zone(), keys(tmp_path))
    n.configure()
    conf = n.conf.read_text()
    assert "grant mn-tsig zonesub ANY;" in conf
    assert "grant mn.mobile.test. self mn.mobile.test. A AAAA TXT;" in conf
    assert f'file "{tmp_path}/db.mobile.test"' in conf  # absolute paths only
    assert "recursion no;" in conf
    z = n.zonefile.read_text()
    assert "dns IN A 203.0.113.10" in z and "dns IN AAAA 2001:db8:ff:53::2" in z and " KEY " in z
    assert node.ran[0][:2] == ["named-checkconf", "-z"]


def test_old_bind_keeps_tsig_only(tmp_path, monkeypatch):
    monkeypatch.setattr(bind, "named_version", lambda: (9, 18, 49))
    n = Named(LocalNode(), tmp_path, zone(), keys(tmp_path))
    assert not n.sig0
    n.configure()
    assert "self" not in n.conf.read_text() and " KEY " not in n.zonefile.read_text()


def test_named_rejects_broken_zone_with_its_own_words(tmp_path):
    bad = ZoneData("mobile.test", "dns", {"cn": ["not-an-address"]}, "mn", listen=["203.0.113.10"])
    with pytest.raises(ServiceError, match="named-checkconf"):
        Named(LocalNode(), tmp_path, bad, keys(tmp_path)).configure()


def test_dhcpd_config_passes_dhcpd_t(tmp_path):
    d = Dhcpd(LocalNode(), tmp_path, "ar1-mn", AR1, "203.0.113.10", "mobile.test")
    d.configure()
    conf = d.conf.read_text()
    assert "range 192.0.2.100 192.0.2.199;" in conf and "option routers 192.0.2.1;" in conf
    assert "ping-check false;" in conf
    assert d.argv()[-1] == "ar1-mn" and str(d.leases) in d.argv()


def test_radvd_config_passes_radvd_c(tmp_path):
    r = Radvd(LocalNode(), tmp_path, "ar1-mn", AR1, "2001:db8:ff:53::2", "mobile.test")
    r.configure()
    conf = r.conf.read_text()
    assert "prefix 2001:db8:a1::/64" in conf and "MinDelayBetweenRAs 0.05;" in conf
    assert "AdvIntervalOpt on;" in conf  # sub-3 s timing needs the Mobile IPv6 options
    assert "RDNSS 2001:db8:ff:53::2" in conf


def test_dhcpv6_stateful_and_stateless_configs_pass_their_checkers(tmp_path):
    from testbed.services.dhcpd6 import Dhcpd6

    stateful = AR1.model_copy(update={"dhcpv6": "stateful"})
    for sub in ("full", "info", "ra"):
        (tmp_path / sub).mkdir()
    d = Dhcpd6(LocalNode(), tmp_path / "full", "ar1-lan", stateful, "2001:db8:ff:53::2", "mobile.test")
    d.configure()  # dhcpd -t -6
    conf = d.conf.read_text()
    assert "subnet6 2001:db8:a1::/64" in conf and "range6 2001:db8:a1::1000 2001:db8:a1::1fff;" in conf
    assert "dhcp6.name-servers 2001:db8:ff:53::2" in conf and d.argv()[:2] == ["dhcpd", "-6"]
    info = Dhcpd6(LocalNode(), tmp_path / "info", "ar1-lan", AR1.model_copy(update={"dhcpv6": "stateless"}),
                  "2001:db8:ff:53::2", "mobile.test")
    info.configure()
    assert "range6" not in info.conf.read_text()
    r = Radvd(LocalNode(), tmp_path / "ra", "ar1-lan", stateful, None, "mobile.test")
    r.configure()  # radvd -c
    ra = r.conf.read_text()
    assert "AdvManagedFlag on;" in ra and "AdvOtherConfigFlag on;" in ra and "AdvAutonomous off;" in ra


def test_dhcpcd_asks_dhcpv6_per_network_and_stays_ipv4_only_without_it(tmp_path):
    from testbed.services.dhcpcd import Dhcpcd

    metrics = {"mn-ar1": 100, "mn-ar2": 101, "mn-ar3": 102}
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    c = Dhcpcd(LocalNode(), tmp_path / "a", metrics, {"mn-ar1": "stateless", "mn-ar2": "stateful",
                                                      "mn-ar3": "off"})
    c.configure()
    conf = c.conf.read_text()
    assert "noipv6rs" in conf and "-4" not in c.argv()
    blocks = dict(b.split("\n", 1) for b in conf.split("interface ")[1:])
    assert "inform6" in blocks["mn-ar1"] and "ia_na 1" in blocks["mn-ar2"] and "noipv6" in blocks["mn-ar3"]
    plain = Dhcpcd(LocalNode(), tmp_path / "b", metrics)
    plain.configure()
    assert "-4" in plain.argv() and "ipv6" not in plain.conf.read_text()


def test_the_binding_process_is_ready_when_it_answers_status_in_this_version(tmp_path):
    from testbed.errors import TestbedError
    from testbed.mobility import protocol
    from testbed.services.binding import BindingService
    from tests.support.fakes import FakeRuntime

    mn = FakeRuntime("mn", "tp-mn", [])
    svc = BindingService(mn, tmp_path, tmp_path / "agent.sock", {}, socket_path=tmp_path / "b.sock")
    assert svc.argv()[svc.argv().index("--socket") + 1] == str(tmp_path / "b.sock")

    def not_yet(msg):
        raise TestbedError("mn: connection refused")

    mn.replies["status"] = not_yet
    assert svc.ready() is False
    mn.replies["status"] = lambda msg: protocol.encode(protocol.State("following"))
    assert svc.ready() is True
    mn.replies["status"] = lambda msg: {**protocol.encode(protocol.State("following")), "v": 2}
    with pytest.raises(ServiceError) as e:
        svc.ready()
    assert str(e.value).startswith(f"binding process on mn at {tmp_path / 'b.sock'}: protocol version 2")
