"""testbed deploy's pure parts: the inventory, each role's rendering, the package archive, the
runner's events turned into a per-host summary, the bare lab's management plan."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.deploy import ansible, inventory, package, render
from testbed.errors import ConfigError, MissingDependency
from testbed.lab import bare
from testbed.model import loader
from testbed.services import bind


@pytest.fixture(scope="module")
def topo():
    return loader.load("two-ar-sctp")


@pytest.fixture(scope="module")
def data(topo):
    return topo.model_dump(mode="json")


def test_inventory_groups_hosts_by_role_with_their_captures(topo):
    inv = inventory.build(topo)
    groups = inv["all"]["children"]
    assert set(groups["mobile_nodes"]["hosts"]) == {"mn"}
    assert set(groups["correspondents"]["hosts"]) == {"cn"}  # the first host with SCTP
    assert set(groups["access_routers"]["hosts"]) == {"ar1", "ar2"}
    assert groups["routers"]["hosts"]["core"]["testbed_capture"] == ["core-ar1", "core-ar2", "core-dns",
                                                                    "core-cn"]
    assert groups["access_routers"]["hosts"]["ar1"]["testbed_capture"] == ["ar1-mn"]
    assert groups["dns_servers"]["hosts"]["dns"]["ansible_host"] == "dns"  # a name to resolve or edit
    assert inv["all"]["vars"]["testbed_topology"]["name"] == "two-ar-sctp"


def test_inventory_of_a_bare_lab_names_management_addresses_and_its_key(topo, tmp_path):
    mgmt = bare.plan_management(topo, "t.yaml")
    info = {"management": mgmt.to_dict(), "ssh_key": str(tmp_path / "id_ed25519"), "user": "root"}
    inv = inventory.build(topo, info)
    assert inv["all"]["children"]["mobile_nodes"]["hosts"]["mn"]["ansible_host"] == str(mgmt.hosts["mn"].ip)
    assert inv["all"]["vars"]["ansible_ssh_private_key_file"] == info["ssh_key"]
    path = tmp_path / "inv.yml"
    inventory.write(inv, path)
    assert set(inventory.hosts(inventory.load(path))) == set(topo.nodes)


def test_an_inventory_without_the_topology_is_refused_with_the_fix(tmp_path):
    p = tmp_path / "inv.yml"
    p.write_text("all: {hosts: {a: {}}}\n")
    with pytest.raises(ConfigError, match="testbed_topology.*testbed inventory"):
        inventory.load(p)


def test_management_network_must_not_overlap_the_topology(topo):
    with pytest.raises(ConfigError, match="overlaps the management network"):
        bare.plan_management(topo, "t.yaml", ipaddress.ip_network("203.0.113.0/26"))
    m = bare.plan_management(topo, "t.yaml")
    assert m.controller.ip not in {a.ip for a in m.hosts.values()}
    assert all(a in m.prefix for a in (m.controller, *m.hosts.values()))


def test_a_controller_without_the_ssh_client_is_told_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("testbed.host.tools.shutil.which", lambda *a, **k: None)
    with pytest.raises(MissingDependency, match="ssh-keygen not found: .*'openssh-client'"):
        bare.ssh_keypair(tmp_path / "ssh")
    assert not (tmp_path / "ssh" / "id_ed25519").exists()


def test_network_of_an_access_router_has_its_bridge_and_forwarding(data):
    net = render.network(data, "ar1")
    assert net["bridges"] == [{"name": "ar1-lan", "ports": ["ar1-mn"]}]
    assert net["addresses"]["ar1-lan"] == ["192.0.2.1/24", "2001:db8:a1::1/64"]
    assert net["sysctls"]["net.ipv4.ip_forward"] == "1"
    assert net["sysctls"]["net.ipv6.conf.ar1-mn.disable_ipv6"] == "1"  # a bridge port
    assert "radvd" in net["packages"] and "tcpdump" in net["packages"]


def test_network_of_the_mobile_node_starts_detached_but_for_its_first_network(data):
    net = render.network(data, "mn")
    assert net["addresses"] == {} and net["up"] == []
    assert net["down"] == ["mn-ar2"] and net["attach"] == ["mn-ar1"]
    assert net["optimistic_dad"] == ["mn-ar1", "mn-ar2"]
    assert net["sysctls"]["net.ipv6.conf.mn-ar1.accept_ra"] == "2"
    assert net["sysctls"]["net.sctp.addip_enable"] == "1" and net["sctp"]


def test_dns_server_renders_the_labs_named_conf_with_the_mns_key(data, topo):
    rr = "mn.mobile.test. 5 IN KEY 512 3 13 AAAA"
    cfg = render.dns_server(data, [rr])
    conf, source, live = cfg["files"]
    assert source["content"].rstrip().endswith(rr)
    assert live["follows"] == source["path"] and live["content"] == source["content"]
    assert "grant mn.mobile.test. self mn.mobile.test. A AAAA TXT;" in conf["content"]
    assert f'include "{cfg["tsig"]["path"]}";' in conf["content"]
    assert cfg["daemons"][0]["argv"] == bind.named_argv(render.LAYOUT.etc / "named" / "named.conf")


def test_mobile_node_runs_dhcpcd_agent_and_binding_with_the_key_it_made(data):
    cfg = render.mobile_node(data, "/var/lib/testbed/keys/Kmn.private", optimistic_dad=False)
    names = [d["name"] for d in cfg["daemons"]]
    assert names == ["dhcpcd", "agent", "binding"]
    agent = cfg["daemons"][1]
    assert "--optimistic-dad" not in agent["argv"] and "--location-hooks" not in agent["argv"]
    binding = cfg["daemons"][2]
    assert binding["env"]["TESTBED_LOC_KEY"] == "/var/lib/testbed/keys/Kmn.private"
    assert "--location" in binding["argv"]
    assert render.mobile_node(data, "k")["daemons"][1]["argv"].count("--optimistic-dad") == 1


def test_the_binding_is_ready_once_its_socket_answers_a_status_request(data, tmp_path):
    """The readiness probe the daemon module runs, run here with this Python: it fails until
    the binding process answers on the socket its argv names, and passes once it does."""
    from testbed.mobility.binding import BindingEndpoint
    from testbed.mobility.driver import serve

    cfg = render.mobile_node(data, "k", layout=render.Layout(run=tmp_path))
    binding = cfg["daemons"][2]
    sock = binding["argv"][binding["argv"].index("--socket") + 1]
    assert sock == str(tmp_path / "binding.sock")
    probe = [sys.executable, *binding["ready"][1:]]
    refused = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 1 and refused.stderr.startswith(f"binding driver at {sock}: no answer")
    srv = serve(Path(sock), BindingEndpoint())
    try:
        assert subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    finally:
        srv.close()
    client = render.traffic_client(data, "192.0.2.100")["daemon"]
    assert client["ready"][1:4] == binding["ready"][1:4] == ["-m", "testbed.mobility.driver", "status"]


def test_correspondent_and_capture(data):
    cfg = render.correspondent(data, "cn")
    assert "--bind" in cfg["daemons"][0]["argv"] and "203.0.113.14" in cfg["daemons"][0]["argv"]
    cap = render.capture(data, "core", "run1")
    assert [d["name"] for d in cap["daemons"]] == ["tcpdump-core-ar1", "tcpdump-core-ar2",
                                                   "tcpdump-core-dns", "tcpdump-core-cn"]
    assert cap["daemons"][0]["pcap"].endswith("/capture/run1/core-ar1.pcap")


def test_package_archive_is_the_same_bytes_for_the_same_source(tmp_path):
    a = package.archive(tmp_path / "a.tar.gz").read_bytes()
    b = package.archive(tmp_path / "b.tar.gz").read_bytes()
    assert a == b and len(a) > 10_000
    lock = package.requirements_lock()
    assert "mininet" not in lock and "dnspython==" in lock and "--hash=sha256:" in lock


def test_runner_events_give_a_per_host_summary_with_the_first_error():
    lines: list[str] = []
    ev = ansible.Events(["a", "b"], lines.append)
    ev({"event": "playbook_on_task_start", "event_data": {"task": "daemons"}})
    ev({"event": "runner_on_ok", "event_data": {"host": "a", "res": {"changed": True}}})
    ev({"event": "runner_on_failed", "event_data": {"host": "b", "res": {"msg": "named exited"}}})
    ev({"event": "runner_on_unreachable", "event_data": {"host": "c", "res": {"msg": "no route"}}})
    assert lines == ["a: daemons: changed", "b: daemons: failed", "c: daemons: unreachable"]
    assert ev.hosts["b"].error == "daemons: named exited" and ev.hosts["c"].error == "no route"
    result = ansible.PlaybookResult("site.yml", "failed", 2, 1.0, ev.hosts)
    assert not result.ok
    assert result.errors() == ["b: failed: daemons: named exited", "c: unreachable: no route"]
    assert result.to_dict()["hosts"]["a"]["failed"] == 0
