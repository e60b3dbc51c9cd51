"""Lab machines: the default handover with every node on one UML kernel's host stack.

``--machine uml`` is how the `stack: host` path (what `auto` gives on any kernel with SCTP) is
exercised on a host whose kernel has no SCTP: the lab runs inside one User-Mode-Linux kernel
and its nodes are namespaces there. Later commands find the lab without the flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from testbed.host import netns, packages
from testbed.state import LabState, lab_dir

pytestmark = pytest.mark.integration
LAB = "tbmach"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run([sys.executable, "-m", "testbed.cli.main", "--lab", LAB, *args],
                        capture_output=True, text=True, timeout=600)
    if check and cp.returncode != 0:
        raise AssertionError(f"testbed {' '.join(args)} exited {cp.returncode}: {cp.stdout[-2000:]}"
                             f"{cp.stderr[-2000:]}")
    return cp


@pytest.fixture(scope="module")
def machine_run(tmp_path_factory):
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    if LabState.exists(LAB):
        cli("clean", "--all", check=False)
    out = tmp_path_factory.mktemp("machine") / "run"
    try:
        yield cli("run", "trash-handover", "--machine", "uml", "--out", str(out)), out
    finally:
        cli("down", check=False)


def test_default_handover_on_the_machines_host_stack(machine_run):
    cp, out = machine_run
    verdict = json.loads((out / "verdict.json").read_text())
    failed = [r["id"] for r in verdict["rules"] if r["status"] == "fail"]
    assert verdict["passed"], failed
    assert verdict["lab"]["machine"] == "uml"
    assert {n["stack"] for name, n in verdict["lab"]["nodes"].items() if name in ("mn", "cn")} == {"host"}
    # the machine boots on the host's root: its daemons are the host's packages
    host = packages.installed(packages.VERDICT_PACKAGES)
    assert {k: verdict["lab"]["packages"].get(k) for k in ("bind9", "radvd", "dhcpcd-base")} == {
        k: host[k] for k in ("bind9", "radvd", "dhcpcd-base")}
    assert (out / "report.html").exists() and list((out / "pcaps").glob("*.pcap"))


def test_later_commands_find_the_machine_lab(machine_run):
    st = json.loads(cli("status", "--json").stdout)
    assert st["machine"] == "uml" and st["status"] == "up"
    mn = next(n for n in st["nodes"] if n["name"] == "mn")
    assert mn["stack"] == "host" and mn["sctp"]["addip_enable"] == 1
    assert "6.1." in cli("exec", "mn", "--", "uname", "-r").stdout
    # nothing of the inner lab is on the host: only the machine's own namespace
    assert [n for n in netns.list_names() if n.startswith(f"{LAB}-")] == [f"{LAB}-machine"]


def test_down_removes_the_machine(machine_run):
    cli("down")
    assert not netns.exists(f"{LAB}-machine")
    assert not lab_dir(LAB).exists()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _in_ns(p, f"{LAB}-machine")]


def _in_ns(pid: str, name: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink(f"/run/netns/{name}")
    except OSError:
        return False
