"""The lab on the real daemons: named, dhcpd, radvd, dhcpcd in named network namespaces.

Tests about the lab rather than its backend run on both backends (mininet namespaces and
docker containers); the docker backend's own tests are in ``test_docker``."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.host import netns
from testbed.lab import Lab
from testbed.state import LabState, lab_dir
from tests.support.dns import dig, wait_published
from tests.support.hostcheck import leftovers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# the session lab once per backend (the plugin's fixture, parametrized indirectly)
BOTH = pytest.mark.parametrize("testbed_lab", ["mininet", "docker"], indirect=True)


def cli(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True,
                        timeout=timeout, cwd=ROOT)
    if check:
        assert cp.returncode == 0, cp.stderr
    return cp


@BOTH
def test_lab_is_up_and_every_service_answers(testbed_lab):
    from testbed.status import collect

    st = collect(testbed_lab.state.lab)
    assert {n["name"] for n in st["nodes"] if n["present"]} == set(testbed_lab.plan.nodes)
    services = {(s["node"], s["service"]): s for s in st["services"]}
    for key in [("dns", "named"), ("ar1", "dhcpd"), ("ar1", "radvd"), ("ar2", "dhcpd"),
                ("ar2", "radvd"), ("mn", "dhcpcd"), ("mn", "agent")]:
        assert services[key]["healthy"], (key, services[key])


@BOTH
def test_root_namespace_untouched(testbed_lab):
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "testbed:" not in links
    for ifname in ("mn-ar1", "ar1-mn", "core-ar1", "cn-core"):
        assert f" {ifname}" not in links and f" {ifname}@" not in links
    # the host may itself sit in a documentation prefix: look for the lab's own addresses
    root = set(subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout.split())
    lab_addrs = {str(a) for n in testbed_lab.plan.nodes.values() for a in n.addresses()}
    mn = testbed_lab.access_state("ar1")
    lab_addrs |= {f"{a}/24" for a in mn.ipv4} | {f"{a}/64" for a in mn.ipv6}
    assert lab_addrs and not lab_addrs & root
    routes = subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout
    assert "2001:db8:a1:" not in routes and "2001:db8:ff:" not in routes


@BOTH
def test_cn_resolves_through_lab_named(testbed_lab):
    assert dig(testbed_lab, "cn", "dns.mobile.test") == ["203.0.113.10"]
    assert dig(testbed_lab, "cn", "cn", "AAAA") == ["2001:db8:ff:c::2"]  # search domain applies


@BOTH
def test_mn_configured_from_ar1(testbed_lab):
    st = testbed_lab.access_state("ar1")
    assert st.carrier
    assert ipaddress.ip_address(st.ipv4[0]) in ipaddress.ip_network("192.0.2.0/24")
    assert ipaddress.ip_address(st.ipv6[0]) in ipaddress.ip_network("2001:db8:a1::/64")
    routes = testbed_lab.runtime("mn").run(["ip", "-j", "route", "show", "default"]).stdout
    assert any(r.get("gateway") == "192.0.2.1" for r in json.loads(routes))
    # and the MN reaches the correspondent over both families
    mn = testbed_lab.runtime("mn")
    mn.run(["ping", "-c1", "-W2", "203.0.113.14"])
    mn.run(["ping", "-6", "-c1", "-W2", "2001:db8:ff:c::2"])


@BOTH
def test_move_to_ar2_and_back(testbed_lab):
    lab = testbed_lab.state.lab
    out = cli("--lab", lab, "move", "mn", "--to", "ar2").stderr
    assert "mn on ar2" in out
    st2 = testbed_lab.access_state("ar2")
    assert ipaddress.ip_address(st2.ipv4[0]) in ipaddress.ip_network("198.51.100.0/24")
    assert ipaddress.ip_address(st2.ipv6[0]) in ipaddress.ip_network("2001:db8:a2::/64")
    st1 = testbed_lab.access_state("ar1")
    assert not st1.carrier and st1.ipv4 == [] and st1.ipv6 == []
    assert LabState.load(lab).attached == {"mn": ["ar2"]}
    testbed_lab.runtime("mn").run(["ping", "-c1", "-W2", "203.0.113.14"])
    cli("--lab", lab, "move", "mn", "--to", "ar1", "--mode", "break-before-make")
    assert testbed_lab.access_state("ar1").ipv4 and not testbed_lab.access_state("ar2").carrier


@BOTH
def test_tsig_nsupdate_from_mn_changes_its_name(testbed_lab):
    keyfile = testbed_lab.wiring.tsig_key_file
    # the agent's own updates after the previous test's moves are applied first: one still on
    # its way would overwrite the name after this update
    wait_published(testbed_lab, "ar1")
    addr = testbed_lab.access_state("ar1").ipv4[0]
    script = (f"server 203.0.113.10\nzone mobile.test\nupdate delete mn.mobile.test A\n"
              f"update add mn.mobile.test 5 A {addr}\nsend\n")
    cp = netns.run(testbed_lab.state.ns("mn"), ["nsupdate", "-k", str(keyfile)], input=script)
    assert cp.returncode == 0, cp.stderr
    assert dig(testbed_lab, "cn", "mn.mobile.test") == [addr]
    # and an unsigned update is refused: the zone only takes signed ones
    bad = netns.run(testbed_lab.state.ns("mn"), ["nsupdate"], input=script.replace(addr, "192.0.2.99"),
                    check=False)
    assert bad.returncode != 0 and "REFUSED" in bad.stdout + bad.stderr


@BOTH
def test_second_up_is_refused(testbed_lab):
    cp = cli("--lab", testbed_lab.state.lab, "up", check=False)
    assert cp.returncode == 1 and "already up" in cp.stderr
    assert LabState.load(testbed_lab.state.lab).status == "up"


def test_down_leaves_nothing(testbed_fresh_lab_name):
    lab = testbed_fresh_lab_name
    cli("--lab", lab, "up")
    during = leftovers(lab)
    assert len(during["netns"]) == 6 and during["procs"]
    cli("--lab", lab, "down")
    assert leftovers(lab) == {k: [] for k in during}


def test_sigint_during_up_leaves_nothing(testbed_fresh_lab_name):
    lab = testbed_fresh_lab_name
    p = subprocess.Popen([sys.executable, "-m", "testbed", "--lab", lab, "up"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = lab_dir(lab) / "state.json"
    deadline = time.monotonic() + 30
    # interrupt once daemons are starting: namespaces, links and some processes exist
    while time.monotonic() < deadline:
        try:
            if json.loads(state.read_text()).get("services"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    else:
        p.kill()
        pytest.fail("the lab never reached its daemons")
    os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert leftovers(lab) == {k: [] for k in leftovers(lab)}


def test_bad_topology_fails_with_one_line_and_creates_nothing(tmp_path, testbed_fresh_lab_name):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "topologies/two-ar.yaml").read_text().replace("b: dns,", "b: dnz,"))
    cp = cli("--lab", testbed_fresh_lab_name, "up", str(bad), check=False)
    assert cp.returncode == 2
    assert cp.stderr.strip().count("\n") == 0, cp.stderr
    assert f"{bad}: links.2.b: unknown node 'dnz'" in cp.stderr
    assert leftovers(testbed_fresh_lab_name)["netns"] == []
    assert not lab_dir(testbed_fresh_lab_name).exists()


def test_clean_removes_a_crashed_lab_only(testbed_lab, testbed_fresh_lab_name):
    lab = testbed_fresh_lab_name
    # a builder killed with SIGKILL cannot tear down: that is what `testbed clean` is for
    p = subprocess.Popen([sys.executable, "-m", "testbed", "--lab", lab, "up"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = lab_dir(lab) / "state.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if len(json.loads(state.read_text()).get("services", [])) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    p.kill()
    p.wait()
    assert leftovers(lab)["netns"]
    cp = cli("clean")
    assert lab in cp.stderr
    assert leftovers(lab) == {k: [] for k in leftovers(lab)}
    assert LabState.load(testbed_lab.state.lab).status == "up"  # the healthy lab is untouched
    assert all(netns.exists(ns) for ns in testbed_lab.state.netns)


def test_a_test_session_removes_the_labs_a_killed_one_of_its_prefix_left(testbed_lab, testbed_fresh_lab_name,
                                                                          tmp_path):
    from testbed.host.procs import start_time

    stale, held = testbed_fresh_lab_name, testbed_fresh_lab_name + "h"
    # the holders: a "tbq" session killed before its teardown (a process that has ended) and
    # one still running side by side (a process that runs)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended_tag = f"pytest:tbq:{ended.pid}:{start_time(ended.pid)}"
    ended.wait()
    running = subprocess.Popen(["sleep", "300"])
    try:
        for lab, tag in ((stale, ended_tag), (held, f"pytest:tbq:{running.pid}:{start_time(running.pid)}")):
            subprocess.run([sys.executable, "-m", "testbed", "--lab", lab, "up"], cwd=ROOT, check=True,
                           env={**os.environ, "TESTBED_LAB_HOLDER": tag}, capture_output=True)
        assert LabState.load(stale).holder == ended_tag
        (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
        cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            cwd=tmp_path, env={**os.environ, "TESTBED_LAB_PREFIX": "tbq"},
                            capture_output=True, text=True, timeout=120)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert f"removed lab {stale!r}, left up by an earlier test session" in cp.stdout
        assert leftovers(stale) == {k: [] for k in leftovers(stale)}
        assert LabState.load(held).status == "up"  # its holder still runs
        assert LabState.load(testbed_lab.state.lab).status == "up"  # another prefix's lab
    finally:
        running.kill()
        if LabState.exists(held):
            Lab.open(held).down()
