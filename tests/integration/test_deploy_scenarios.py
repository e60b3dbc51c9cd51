"""Every scenario kind on deployed hosts judged as on a lab: for each topology one bare lab, one
deploy (``testbed deploy``, over SSH, the real daemons) and its scenarios with ``testbed run
--inventory``; then a lab of the same topology plays the same scenarios through the same
runner. Each gives the same verdict on both, rule for rule (rule ids and statuses, and per
mobile node where there are several).

One topology at a time, the bare lab down before the lab comes up: two cores hold one of them
comfortably, not both. The default handover (trash-handover on two-ar-sctp) is compared in
``test_deploy.py``, beside the deploy's own tests, on that module's bare lab.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from testbed.lab import teardown_leftover
from testbed.pytest_plugin import lab_name, require_lab_prerequisites
from tests.integration.test_deploy import controller
from tests.integration.test_docker import docker_engine  # noqa: F401 - fixture
from tests.integration.test_lab import cli
from tests.support.verdicts import differences, on_lab

pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.timeout(1500)]

# topology -> the scenarios played on its hosts and on its lab, in this order on one deploy and
# one lab (a fault that kills a daemon last: nothing restarts it)
CASES = {
    "two-ar-mptcp": ["mptcp-handover"],
    "two-ar-dhcpv6": ["dhcpv6-handover"],
    "two-ar-nat-sctp": ["nat-handover"],
    "two-ar-bcp38": ["ingress-filter-handover"],  # the AR's ingress filter, nftables on its host
    # an attack from the attackers group, a flapped link, a daemon killed on its host
    "two-ar-sec": ["rogue-ra", "fault-link-flap", "fault-named"],
    "many-mn-3": ["many-mn-3"],
}


def on_hosts(topology: str, scenarios: list[str], d: Path, lab: str) -> dict[str, dict]:
    """A bare lab of ``topology``, one deploy, each scenario on its hosts: their verdicts."""
    teardown_leftover(lab)  # a previous run crashed: its leftovers are ours to remove
    t0 = time.monotonic()
    cli("--lab", lab, "up", topology, "--bare", timeout=600)
    try:
        inv = d / "inventory.yml"
        cli("--lab", lab, "inventory", topology, "-o", str(inv))
        cp, seconds = controller("deploy", str(inv), "--out", str(d / "deploy"), lab=lab)
        assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
        up = time.monotonic() - t0 - seconds
        print(f"{topology}: bare lab up in {up:.1f} s, deployed in {seconds:.1f} s")
        out = {}
        for name in scenarios:
            cp, seconds = controller("run", "--inventory", str(inv), name, "--out", str(d / name), lab=lab)
            verdict = json.loads((d / name / "verdict.json").read_text())
            assert verdict["lab"]["backend"] == "ssh", verdict["lab"]
            assert cp.returncode == (0 if verdict["passed"] else 1), cp.stdout[-4000:] + cp.stderr[-2000:]
            print(f"{name} on the hosts: {seconds:.1f} s")
            out[name] = verdict
        return out
    finally:
        cli("--lab", lab, "down", check=False, timeout=180)


@pytest.mark.parametrize("topology", list(CASES))
def test_the_hosts_give_the_labs_verdict_rule_for_rule(topology, docker_engine, tmp_path):  # noqa: F811
    require_lab_prerequisites()
    t0 = time.monotonic()
    hosts = on_hosts(topology, CASES[topology], tmp_path / "hosts", lab_name("dps"))
    lab = on_lab(topology, CASES[topology], tmp_path / "lab", lab_name("dpl"))
    print(f"{topology}: {time.monotonic() - t0:.1f} s in all")
    for sc in CASES[topology]:
        assert not differences(hosts[sc], lab[sc]), (sc, "rule: (on the hosts, on the lab)",
                                                     differences(hosts[sc], lab[sc]))
        assert hosts[sc]["passed"] == lab[sc]["passed"], sc
