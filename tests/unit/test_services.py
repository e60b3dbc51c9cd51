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
