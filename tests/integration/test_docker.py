"""The docker backend on a real engine: nodes are labelled containers of the role images, daemons
run from the images, and nothing outlives ``down`` or ``clean`` but what the user made.

One docker lab serves the module (the plugin's session lab, parametrized to docker); the tests
that need a lab of their own (down, SIGKILL + clean, a bad image) bring one up each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.backends import engine, images
from testbed.host.poll import poll_until
from testbed.state import LabState, lab_dir, run_root
from tests.integration.test_lab import ROOT, cli, leftovers

pytestmark = pytest.mark.integration
DOCKER = pytest.mark.parametrize("testbed_lab", ["docker"], indirect=True)


@pytest.fixture(scope="module")
def docker_engine():
    """The engine, held in use for the module: a lab's ``down`` must not stop it under us."""
    with engine.using() as eng:
        yield eng
    engine.stop_if_idle()


def labelled(eng, lab: str) -> list[dict]:
    return eng.client.api.containers(all=True, filters={"label": [f"testbed.lab={lab}",
                                                                    f"testbed.run_root={run_root()}"]})


def docker_leftovers(eng, lab: str) -> dict[str, list[str]]:
    """``leftovers`` plus the containers carrying the lab's label."""
    return {**leftovers(lab), "containers": [c["Id"] for c in labelled(eng, lab)]}


def wait_for_state(lab: str, done, timeout: float = 120.0) -> bool:
    """Until the lab's state file satisfies ``done`` (it is rewritten atomically: no event)."""
    def probe():
        try:
            return done(json.loads((lab_dir(lab) / "state.json").read_text()))
        except (OSError, ValueError):
            return False

    return bool(poll_until(probe, timeout, interval=0.01))


@DOCKER
def test_nodes_are_labelled_containers_of_the_role_images(testbed_lab):
    lab = testbed_lab.state.lab
    st = json.loads(cli("--lab", lab, "status", "--json").stdout)
    assert st["backend"] == "docker" and st["engine"]["kind"] in ("system", "private")
    eng = engine.at(st["engine"]["url"])
    assert eng is not None
    try:
        base_id = images.base_image(eng.client, testbed_lab.topo.images.base)
        for n in st["nodes"]:
            c = eng.client.api.inspect_container(n["container"])
            role = testbed_lab.topo.nodes[n["name"]].role
            assert c["Config"]["Labels"]["testbed.lab"] == lab
            assert c["Config"]["Labels"]["testbed.node"] == n["name"]
            assert c["Config"]["Labels"]["testbed.run_root"] == str(run_root())
            assert c["HostConfig"]["NetworkMode"] == "none"
            assert c["Config"]["Image"] == images.role_image(role, base_id).ref
            # the pinned netns is the container's own
            pid = c["State"]["Pid"]
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{lab}-{n['name']}").st_ino
    finally:
        eng.client.close()


@DOCKER
def test_daemons_run_from_the_images(testbed_lab):
    st = json.loads(cli("--lab", testbed_lab.state.lab, "status", "--json").stdout)
    containers = {n["name"]: n["container"] for n in st["nodes"]}
    eng = engine.at(st["engine"]["url"])
    try:
        for rec in testbed_lab.state.service_records():
            init = eng.client.api.inspect_container(containers[rec.node])["State"]["Pid"]
            # in the container's cgroup (started by the engine), running the image's own binary
            assert containers[rec.node] in Path(f"/proc/{rec.pid}/cgroup").read_text(), rec
            exe = os.readlink(f"/proc/{rec.pid}/exe")
            assert os.stat(f"/proc/{rec.pid}/exe").st_ino == os.stat(f"/proc/{init}/root{exe}").st_ino, rec
    finally:
        eng.client.close()
    agent = next(r for r in testbed_lab.state.service_records() if r.service == "agent")
    assert Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")[0] == images.IMAGE_PYTHON.encode()
    named = testbed_lab.runtime("dns").run(["named", "-v"]).stdout
    assert named.startswith("BIND 9.2"), named
    # and `testbed exec` runs in the container: the image's python, not the host's
    cp = cli("--lab", testbed_lab.state.lab, "exec", "mn", "--", "sh", "-c",
             f"test -x {images.IMAGE_PYTHON} && echo in-image")
    assert cp.stdout.strip() == "in-image"


def test_down_leaves_no_container_link_netns_or_process(testbed_fresh_lab_name, docker_engine):
    lab = testbed_fresh_lab_name
    networks = sorted(n["Id"] for n in docker_engine.client.api.networks())
    cli("--lab", lab, "up", "--backend", "docker", timeout=300)
    during = docker_leftovers(docker_engine, lab)
    assert len(during["netns"]) == 6 and len(during["containers"]) == 6 and during["procs"]
    cli("--lab", lab, "down", timeout=120)
    assert docker_leftovers(docker_engine, lab) == {k: [] for k in during}
    assert sorted(n["Id"] for n in docker_engine.client.api.networks()) == networks  # none made


def test_sigkill_during_up_then_clean_removes_exactly_the_labelled(testbed_fresh_lab_name, docker_engine):
    lab = testbed_fresh_lab_name
    api = docker_engine.client.api
    base = images.BaseRecipe().ref
    # a container a user started by hand, named like the lab's nodes but without its labels
    hand = api.create_container(base, ["sleep", "infinity"], name=f"{lab}-hand",
                                host_config=api.create_host_config(network_mode="none"))["Id"]
    api.start(hand)
    try:
        p = subprocess.Popen([sys.executable, "-m", "testbed", "--lab", lab, "up", "--backend", "docker"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            reached = wait_for_state(lab, lambda s: s.get("services") and len(s["services"]) >= 2)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        assert reached, "the lab never reached its daemons"
        assert len(labelled(docker_engine, lab)) == 6 and leftovers(lab)["netns"]
        cp = cli("clean", timeout=120)
        assert lab in cp.stderr
        assert docker_leftovers(docker_engine, lab) == {k: [] for k in docker_leftovers(docker_engine, lab)}
        assert api.inspect_container(hand)["State"]["Running"]
    finally:
        api.remove_container(hand, force=True)


def test_an_image_lacking_its_roles_daemon_is_refused_and_nothing_stays(testbed_fresh_lab_name, tmp_path,
                                                                        docker_engine):
    lab = testbed_fresh_lab_name
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "topologies/two-ar.yaml").read_text()
    bad.write_text(text.replace("ar1:  {role: access_router}",
                                f"ar1:  {{role: access_router, image: '{images.BaseRecipe().ref}'}}")
                   + "backend: docker\n")
    cp = cli("--lab", lab, "up", str(bad), check=False, timeout=300)
    assert cp.returncode == 2, cp.stderr
    errors = [ln for ln in cp.stderr.splitlines() if ln.startswith("testbed up:")]  # not progress
    assert len(errors) == 1, cp.stderr
    msg = errors[0]
    assert f"nodes.ar1.image: image {images.BaseRecipe().ref} lacks radvd" in msg
    assert "install the Debian package 'radvd'" in msg
    assert docker_leftovers(docker_engine, lab) == {k: [] for k in docker_leftovers(docker_engine, lab)}
    assert not LabState.exists(lab)


def test_engine_is_named_and_uses_no_bridge(docker_engine):
    info = docker_engine.client.info()
    if docker_engine.kind == "private":
        assert info["DockerRootDir"] == str(engine.private_data())
        names = {n["Name"] for n in docker_engine.client.api.networks()}
        assert "bridge" not in names  # --bridge=none
        assert not [ln for ln in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                                                timeout=10).stdout.splitlines() if "docker0" in ln]


def test_a_users_container_with_a_nodes_name_is_left_alone(testbed_fresh_lab_name, docker_engine):
    lab = testbed_fresh_lab_name
    api = docker_engine.client.api
    mine = api.create_container(images.BaseRecipe().ref, ["sleep", "infinity"], name=f"{lab}-mn",
                                host_config=api.create_host_config(network_mode="none"))["Id"]
    api.start(mine)
    try:
        cp = cli("--lab", lab, "up", "--backend", "docker", check=False, timeout=300)
        assert cp.returncode == 1
        assert f"a container named {lab}-mn exists and does not belong to lab {lab}" in cp.stderr
        assert api.inspect_container(mine)["State"]["Running"]
        assert docker_leftovers(docker_engine, lab) == {k: [] for k in docker_leftovers(docker_engine, lab)}
    finally:
        api.remove_container(mine, force=True)


def test_ctrl_c_during_up_leaves_nothing(testbed_fresh_lab_name, docker_engine):
    lab = testbed_fresh_lab_name
    p = subprocess.Popen([sys.executable, "-m", "testbed", "--lab", lab, "up", "--backend", "docker"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # interrupt once daemons are starting: containers, links and some processes exist
        reached = wait_for_state(lab, lambda s: bool(s.get("services")))
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    assert reached, err
    assert p.returncode == 130, err
    assert docker_leftovers(docker_engine, lab) == {k: [] for k in docker_leftovers(docker_engine, lab)}
