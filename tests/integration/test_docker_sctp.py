"""The default handover on the docker backend: kernel-SCTP nodes (MN, CN) whose User-Mode Linux
kernels run inside their containers, over the images' roots. The verdict passes every rule, as
on the mininet backend, and ``down`` leaves nothing.

One lab for the module, brought up by ``testbed run trash-handover --backend docker`` itself
(the command a user types); the last test takes it down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testbed.backends import engine
from testbed.lab import Lab, teardown_leftover
from testbed.pytest_plugin import require_lab_prerequisites
from testbed.state import LabState
from tests.integration.test_docker import docker_engine, docker_leftovers  # noqa: F401 - fixture
from tests.integration.test_lab import ROOT, cli

pytestmark = [pytest.mark.integration, pytest.mark.vm]
LAB = "tbdks"
KERNEL_NODES = ("mn", "cn")


@pytest.fixture(scope="module")
def handover(docker_engine, tmp_path_factory):  # noqa: F811 - the imported fixture
    require_lab_prerequisites()
    teardown_leftover(LAB)  # a previous run crashed: its leftovers are ours to remove
    out = tmp_path_factory.mktemp("docker-trash")
    networks = sorted(n["Id"] for n in docker_engine.client.api.networks())
    cp = cli("--lab", LAB, "run", "trash-handover", "--backend", "docker", "--out", str(out),
             check=False, timeout=900)
    try:
        yield cp, out, networks
    finally:
        if LabState.exists(LAB):
            cli("--lab", LAB, "down", check=False, timeout=120)


def test_the_default_handover_passes_every_rule(handover):
    cp, out, _ = handover
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["passed"]
    assert [r["id"] for r in verdict["rules"] if r["status"] != "pass"] == [], verdict["rules"]
    assert {"asconf.auth", "order.trash", "continuity.new_path", "timeline.set_primary_acked"} <= {
        r["id"] for r in verdict["rules"]}
    lab = verdict["lab"]
    assert lab["backend"] == "docker"
    for node in KERNEL_NODES:
        assert lab["nodes"][node]["stack"] == "uml" and lab["nodes"][node]["kernel"].startswith("6.")
    # the images' daemons: BIND from bookworm-backports in the dns image, UML in the mn image
    assert lab["packages"]["bind9"].startswith("1:9.20") and "user-mode-linux" in lab["packages"]


def test_uml_runs_in_its_container_over_the_images_root(handover, docker_engine):  # noqa: F811
    lab = Lab.open(LAB)
    try:
        containers = {r["node"]: r for r in lab.state.containers}
        records = {r["node"]: r for r in lab.state.kernel_nodes}
        for node in KERNEL_NODES:
            c = docker_engine.client.api.inspect_container(containers[node]["id"])
            init = c["State"]["Pid"]
            for pid in (records[node]["relay_pid"], records[node]["uml_pid"]):  # host pids
                assert c["Id"] in Path(f"/proc/{pid}/cgroup").read_text(), (node, pid)
            # the image's kernel binary, not the host's
            image_uml = os.stat(f"/proc/{init}/root/usr/bin/linux.uml")
            assert os.stat(f"/proc/{records[node]['uml_pid']}/exe").st_ino == image_uml.st_ino
            # Docker's default seccomp profile and capabilities suffice for UML's ptrace
            assert not any("seccomp" in o for o in c["HostConfig"]["SecurityOpt"] or [])
            assert "SYS_PTRACE" not in (c["HostConfig"]["CapAdd"] or [])
            # the guest's root is the image's: its venv, and none of this checkout
            rt = lab.runtime(node)
            guest = rt.run(["sh", "-c", f"test -x {containers[node]['python']} && echo venv; "
                                        f"test -e {ROOT}/pyproject.toml && echo checkout; uname -r"]).stdout
            assert guest.split() == ["venv", records[node]["release"]], guest
            # the guest's RAM is a file on the container's tmpfs, counted in the node's memory
            assert records[node]["mem_dir"].startswith("/run/uml/")
            assert rt.memory().memfile_kib > 1024  # type: ignore[attr-defined]
        agent = next(r for r in lab.state.service_records() if r.service == "agent")
        cmdline = lab.runtime("mn").read_file(f"/proc/{agent.pid}/cmdline")  # type: ignore[attr-defined]
        assert cmdline.split(b"\0")[0] == containers["mn"]["python"].encode()
    finally:
        lab.close()


def test_down_leaves_no_container_process_netns_or_file(handover, docker_engine):  # noqa: F811
    _, _, networks = handover
    cli("--lab", LAB, "down", timeout=120)
    left = docker_leftovers(docker_engine, LAB)
    assert left == {k: [] for k in left}
    assert sorted(n["Id"] for n in docker_engine.client.api.networks()) == networks
    assert engine.find() is not None  # the module holds the engine: down did not stop it under us
