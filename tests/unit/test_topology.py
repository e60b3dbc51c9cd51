"""Topology loading: the default file's plan, and one precise error per kind of bad input."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest
import yaml

from testbed.errors import ConfigError
from testbed.model import addressing, loader

GOOD = (loader.TOPOLOGY_DIR / "two-ar.yaml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error(tmp_path: Path, text: str) -> ConfigError:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        loader.load(p)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(p)), msg
    assert ei.value.exit_code == 2
    return ei.value


def test_default_topology_plan():
    topo = loader.load()
    plan = addressing.plan(topo)
    assert set(plan.nodes) == {"mn", "cn", "dns", "ar1", "ar2", "core"}
    assert plan.address_of("dns", 4) == "203.0.113.10"
    mn_if, ar_if = plan.access_iface("ar2")
    assert (mn_if.ifname, ar_if.ifname, ar_if.bridge) == ("mn-ar2", "ar2-lan", True)
    assert plan.nodes["ar2"].iface("ar2-mn").master == "ar2-lan"  # the MN's port on the segment
    assert [str(a) for a in ar_if.addresses] == ["198.51.100.1/24", "2001:db8:a2::1/64"]
    assert plan.nodes["mn"].addresses() == []  # DHCP and SLAAC configure the MN
    # every address in the lab is in the documentation ranges
    doc = [ipaddress.ip_network(p) for p in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                             "2001:db8::/32")]
    for n in plan.nodes.values():
        for a in n.addresses():
            assert any(a.ip in d for d in doc if d.version == a.version), a


def test_routers_reach_every_subnet_and_stubs_use_defaults():
    plan = addressing.plan(loader.load())
    ar1 = {str(r.dst): (str(r.via), r.dev) for r in plan.nodes["ar1"].routes}
    assert ar1["198.51.100.0/24"] == ("203.0.113.1", "ar1-core")
    assert ar1["2001:db8:a2::/64"] == ("2001:db8:ff:1::1", "ar1-core")
    cn = {str(r.dst) for r in plan.nodes["cn"].routes}
    assert cn == {"0.0.0.0/0", "::/0"}


def test_hosts_attach_to_the_shared_access_segment(tmp_path):
    """An attacker on ar1's segment: a port on ar1's bridge, a static address from the top of the
    network, default routes through the access router; everyone reaches its network."""
    raw = yaml.safe_load(loader.resolve(None).read_text())
    raw["nodes"]["atk"] = {"role": "host", "attach": ["ar1"]}
    plan = addressing.plan(loader.from_dict(raw))
    (atk_if,) = plan.nodes["atk"].ifaces
    assert (atk_if.ifname, [str(a) for a in atk_if.addresses]) == ("atk-ar1", ["192.0.2.254/24",
                                                                              "2001:db8:a1::fe/64"])
    assert plan.nodes["ar1"].iface("ar1-atk").master == "ar1-lan"
    assert {(str(r.dst), str(r.via)) for r in plan.nodes["atk"].routes} == {
        ("0.0.0.0/0", "192.0.2.1"), ("::/0", "2001:db8:a1::1")}
    core = {str(r.dst): str(r.via) for r in plan.nodes["core"].routes}
    assert core["192.0.2.0/24"] == "203.0.113.2"  # through ar1, not via the attacker
    assert ("ar1", "ar1-atk", "atk", "atk-ar1") in {(v.a, v.a_ifname, v.b, v.b_ifname) for v in plan.veths}


def test_only_hosts_attach_and_only_to_access_routers(tmp_path):
    raw = yaml.safe_load(loader.resolve(None).read_text())
    raw["nodes"]["atk"] = {"role": "host", "attach": ["core"]}
    with pytest.raises(ConfigError, match="nodes.atk.attach.0: 'core' serves no access network"):
        loader.from_dict(raw)
    raw["nodes"]["atk"] = {"role": "router", "attach": ["ar1"]}
    with pytest.raises(ConfigError, match="only host nodes sit on access networks"):
        loader.from_dict(raw)


def test_bad_yaml(tmp_path):
    e = error(tmp_path, "name: x\nnodes: {mn: {role: mobile}\n")
    assert e.field.startswith("line ") and "invalid YAML" in str(e)


def test_unknown_node_in_link(tmp_path):
    e = error(tmp_path, GOOD.replace("{a: core, b: cn,", "{a: core, b: cnn,"))
    assert e.field == "links.3.b" and "unknown node 'cnn'" in str(e)


def test_duplicate_address(tmp_path):
    e = error(tmp_path, GOOD.replace("ipv4: 203.0.113.4/30", "ipv4: 203.0.113.0/30"))
    assert e.field == "links.1.ipv4" and "overlaps 203.0.113.0/30" in str(e)


def test_prefix_outside_documentation_ranges(tmp_path):
    e = error(tmp_path, GOOD.replace("ipv4: 192.0.2.0/24", "ipv4: 10.1.0.0/24"))
    assert e.field == "access_networks.0.ipv4" and "outside the documentation prefixes" in str(e)


def test_unknown_field_and_missing_field(tmp_path):
    e = error(tmp_path, GOOD.replace("  mn:   {role: mobile}", "  mn:   {role: mobile, colour: red}"))
    assert e.field == "nodes.mn.colour" and "remove it" in str(e)
    e = error(tmp_path, GOOD.replace("name: two-ar\n", ""))
    assert e.field == "name" and "add it" in str(e)


def test_attached_must_be_an_access_router(tmp_path):
    e = error(tmp_path, GOOD.replace("attached: [ar1]", "attached: [core]"))
    assert e.field == "mobile.attached.0"


def test_ra_timers_checked(tmp_path):
    e = error(tmp_path, GOOD.replace("ra: {min_interval: 3, max_interval: 4}",
                                     "ra: {min_interval: 5, max_interval: 4}", 1))
    assert e.field == "access_networks.0.ra"


def test_single_family_access_networks_plan_only_their_family():
    topo = loader.load("two-ar-v4v6-sctp")
    plan = addressing.plan(topo)
    assert [str(a) for a in plan.lan("ar1").addresses] == ["192.0.2.1/24"]
    assert [str(a) for a in plan.lan("ar2").addresses] == ["2001:db8:a2::1/64"]
    assert [a.families for a in topo.access_networks] == [(4,), (6,)]


def test_an_access_network_needs_a_family(tmp_path):
    data = yaml.safe_load(GOOD)
    data["access_networks"][0]["ipv4"] = None
    data["access_networks"][0]["ipv6"] = None
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as ei:
        loader.load(p)
    assert ei.value.field == "access_networks.0" and "ipv4, ipv6 or both" in str(ei.value)
