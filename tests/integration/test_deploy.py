"""``testbed deploy`` over SSH to a bare lab: the playbooks, not the lab, configure every host;
then ``testbed run --inventory`` plays the default handover there and judges what it fetched,
as a lab of the topology judges the same scenario, rule for rule.

One bare lab of two-ar-sctp for the module (containers of the bare host image, the MN and CN
User-Mode Linux machines in theirs, a management network from the controller's namespace);
the controller (``testbed deploy``, ``testbed run --inventory``) runs in that namespace, as
``ip netns exec <lab>-ctl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from testbed.host import netns
from testbed.lab import Lab, teardown_leftover
from testbed.pytest_plugin import lab_name, require_lab_prerequisites
from tests.integration.test_docker import docker_engine  # noqa: F401 - fixture
from tests.integration.test_lab import ROOT, cli
from tests.support.verdicts import differences, on_lab

# here the module fixture (a bare lab up and one deploy) takes ~1 min, the second deploy and
# the run ~40 s each
pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.timeout(900)]
LAB = lab_name("dep")
HOSTS = {"mn", "cn", "dns", "ar1", "ar2", "core"}


def controller(*args: str, timeout: float = 600, lab: str = LAB):
    """``testbed ARGS`` as the controller runs it: in the bare lab's controller namespace."""
    import subprocess
    import sys

    argv = netns.exec_argv(f"{lab}-ctl", [sys.executable, "-m", "testbed", *args])
    t0 = time.monotonic()
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return cp, time.monotonic() - t0


def deploy(inventory: Path, out: Path, *extra: str, timeout: float = 600):
    return controller("deploy", str(inventory), "--out", str(out), *extra, timeout=timeout)


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def bare(docker_engine, tmp_path_factory):  # noqa: F811 - the imported fixture
    require_lab_prerequisites()
    teardown_leftover(LAB)  # a previous run crashed: its leftovers are ours to remove
    d = tmp_path_factory.mktemp("deploy")
    cli("--lab", LAB, "up", "two-ar-sctp", "--bare", timeout=600)
    try:
        inv = d / "inventory.yml"
        cli("--lab", LAB, "inventory", "two-ar-sctp", "-o", str(inv))
        cp, seconds = deploy(inv, d / "first")
        yield inv, d, cp, seconds
    finally:
        cli("--lab", LAB, "down", check=False, timeout=180)


def test_deploy_configures_every_role_over_ssh(bare):
    inv, d, cp, seconds = bare
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    s = summary(d / "first")
    assert s["ok"] and set(s["hosts"]) == HOSTS, s
    assert all(h["failed"] == 0 and h["unreachable"] == 0 for h in s["hosts"].values()), s
    assert (Path(s["artifacts"]) / "stdout").exists()  # the runner's record beside the summary
    print(f"first deploy: {seconds:.1f} s")
    lab = Lab.open(LAB)
    try:
        # named serves the zone with the MN's KEY record; the private key exists on the MN only
        dns = lab.runtime("dns").run(["dig", "+short", "@203.0.113.10", "mn.mobile.test", "KEY"]).stdout
        assert dns.strip(), "no KEY record for the MN in the deployed zone"
        find = ["sh", "-c", "find /etc /var/lib /opt /root -name 'Kmn.mobile.test.*.private' 2>/dev/null"]
        assert lab.runtime("mn").run(find).stdout.strip()
        assert not lab.runtime("dns").run(find, check=False).stdout.strip()
        # the MN holds a lease and a SLAAC address from ar1, which the playbooks configured
        addrs = lab.runtime("mn").run(["ip", "-br", "addr", "show", "dev", "mn-ar1"]).stdout
        assert "192.0.2." in addrs and "2001:db8:a1:" in addrs, addrs
        # kernel SCTP with ASCONF and AUTH, set by the network role on the correspondent
        assert lab.runtime("cn").run(["cat", "/proc/sys/net/sctp/addip_enable"]).stdout.strip() == "1"
    finally:
        lab.close()


def test_a_second_deploy_changes_nothing(bare):
    inv, d, _, _ = bare
    cp, seconds = deploy(inv, d / "second")
    assert cp.returncode == 0, cp.stdout[-4000:]
    s = summary(d / "second")
    assert {n: h["changed"] for n, h in s["hosts"].items()} == dict.fromkeys(HOSTS, 0), s
    print(f"second deploy: {seconds:.1f} s")


def test_the_handover_runs_on_the_deployed_hosts_and_passes_on_their_captures(bare):
    inv, d, cp, _ = bare
    assert cp.returncode == 0, "the deploy failed: see test_deploy_configures_every_role_over_ssh"
    out = d / "handover"
    cp, seconds = controller("run", "--inventory", str(inv), "trash-handover", "--out", str(out), timeout=600)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    print(f"handover on the deployed hosts: {seconds:.1f} s")
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["passed"], [r for r in verdict["rules"] if r["status"] != "pass"]
    status = {r["id"]: r["status"] for r in verdict["rules"]}
    for rule in ("asconf.ack", "order.trash", "dns.signed", "dns.answered", "continuity.tsn"):
        assert status.get(rule) == "pass", (rule, status)
    # the pcaps came back from the hosts that captured them: the ARs' ports and the core's links
    assert {p.name for p in (out / "pcaps").glob("*.pcap")} == {
        "ar1-mn.pcap", "ar2-mn.pcap", "core-ar1.pcap", "core-ar2.pcap", "core-dns.pcap", "core-cn.pcap"}
    lab = verdict["lab"]
    assert lab["backend"] == "ssh" and set(lab["clocks"]["hosts"]) == HOSTS, lab
    assert all(c["uncertainty_s"] <= lab["clocks"]["max_error_s"] for c in lab["clocks"]["hosts"].values())
    assert (out / "report.html").exists() and (out / "hosts" / "mn" / "agent-events.jsonl").exists()


def test_the_handover_on_the_hosts_gives_the_labs_verdict_rule_for_rule(bare):
    """The same scenario through the same runner on a lab of the topology (up beside the idle
    bare lab): the same rules, each with the same status."""
    inv, d, _, _ = bare
    path = d / "handover" / "verdict.json"
    assert path.exists(), "no run on the hosts: see test_the_handover_runs_on_the_deployed_hosts…"
    lab = on_lab("two-ar-sctp", ["trash-handover"], d / "lab", lab_name("dpl"))["trash-handover"]
    hosts = json.loads(path.read_text())
    assert not differences(hosts, lab), ("rule: (on the hosts, on the lab)", differences(hosts, lab))


def test_an_unreachable_host_is_named_and_fails_the_deploy_without_hanging(bare):
    inv, d, _, _ = bare
    data = yaml.safe_load(inv.read_text())
    data["all"]["children"]["routers"]["hosts"]["core"]["ansible_host"] = "203.0.113.250"  # nobody
    bad = d / "unreachable.yml"
    bad.write_text(yaml.safe_dump(data))
    cp, seconds = deploy(bad, d / "unreachable", "--limit", "core", timeout=300)
    assert cp.returncode != 0
    h = summary(d / "unreachable")["hosts"]["core"]
    assert h["unreachable"] == 1 and h["error"], h
    said = cp.stdout + cp.stderr  # the recap, wherever the console writes it
    assert "core" in said and "unreachable=1" in said, said[-2000:]
    assert seconds < 180, seconds


def test_a_failing_task_is_named_per_host(bare):
    inv, d, _, _ = bare
    data = yaml.safe_load(inv.read_text())
    data["all"]["children"]["routers"]["hosts"]["core"]["ansible_python_interpreter"] = "/bin/false"
    bad = d / "failing.yml"
    bad.write_text(yaml.safe_dump(data))
    cp, _ = deploy(bad, d / "failing", "--limit", "core", timeout=300)
    assert cp.returncode != 0
    s = summary(d / "failing")
    assert not s["ok"] and s["hosts"]["core"]["failed"] == 1 and s["hosts"]["core"]["error"], s
