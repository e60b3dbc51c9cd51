"""The docker backend's parts without an engine: image inputs and hashes, labels, the image
check, the container runtime's command building, engine errors, backend choice."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.backends import docker as dockerb
from testbed.backends import engine, images
from testbed.errors import CommandError, ConfigError
from testbed.lab import Lab
from testbed.model import loader
from testbed.model.topology import Role
from testbed.runtimes import container
from testbed.runtimes.container import ContainerNode
from testbed.state import LabState

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ images
def test_digest_is_stable_and_follows_every_input():
    files = {"Dockerfile": b"FROM x\n", "a/b.txt": b"1"}
    d = images.digest_of(files, "sha256:base")
    assert d == images.digest_of(dict(reversed(list(files.items()))), "sha256:base")
    assert d != images.digest_of({**files, "a/b.txt": b"2"}, "sha256:base")
    assert d != images.digest_of({"Dockerfile": b"FROM x\n", "a/c.txt": b"1"}, "sha256:base")
    assert d != images.digest_of(files, "sha256:other-base")


@pytest.fixture
def no_pip(tmp_path, monkeypatch):
    """Wheels come from the host's pip; here a directory with one made-up wheel."""
    d = tmp_path / "wheels"
    d.mkdir()
    (d / "x-1.0-py3-none-any.whl").write_bytes(b"wheel")
    monkeypatch.setattr(images, "wheels", lambda reqs: d)
    return d


def test_context_of_a_daemon_role_is_its_directory_only(no_pip):
    files = images.context_files(Role.DNS)
    assert "Dockerfile" in files and b"bookworm-backports" in files["Dockerfile"]
    assert not any(n.startswith(("src/", "wheels/")) for n in files)


def test_context_of_the_mobile_node_carries_the_package_and_its_wheels(no_pip):
    files = images.context_files(Role.MOBILE)
    assert "src/testbed/mobility/agent.py" in files
    assert not any("__pycache__" in n for n in files)
    assert files["wheels/x-1.0-py3-none-any.whl"] == b"wheel"
    reqs = files["requirements.txt"].decode()
    assert "pyroute2" in reqs and "mininet" not in reqs


def test_package_change_changes_the_mobile_tag_not_the_dns_tag(no_pip, monkeypatch, tmp_path):
    pkg = tmp_path / "testbed"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(images, "PACKAGE_DIR", pkg)
    mn1, dns1 = images.role_image(Role.MOBILE, "b"), images.role_image(Role.DNS, "b")
    (pkg / "sub" / "m.py").write_text("x = 2\n")
    mn2, dns2 = images.role_image(Role.MOBILE, "b"), images.role_image(Role.DNS, "b")
    assert mn1.ref != mn2.ref and dns1.ref == dns2.ref
    assert mn2.ref == f"testbed/mn:{mn2.digest[:12]}" and mn2.python == images.IMAGE_PYTHON
    assert mn2.labels() == {"testbed.role": "mobile", "testbed.hash": mn2.digest,
                            "testbed.python": images.IMAGE_PYTHON,
                            "testbed.pythonpath": images.IMAGE_PYTHONPATH,
                            "testbed.uml_init": images.IMAGE_UML_INIT}
    assert "testbed.python" not in dns2.labels() and "testbed.uml_init" not in dns2.labels()


def test_every_role_has_a_recipe():
    for role, d in images.ROLE_DIRS.items():
        text = (images.IMAGES_DIR / d / "Dockerfile").read_text()
        assert "FROM ${BASE}" in text, role
        # without a network apt-get update fails yet exits 0: each recipe refuses that
        assert "apt-get update --error-on=any" in text, role


def test_context_tar_is_deterministic():
    files = {"Dockerfile": b"FROM x\n", "src/a.py": b"print(1)\n"}
    a, b = images.context_tar(files).getvalue(), images.context_tar(files).getvalue()
    assert a == b
    with tarfile.open(fileobj=images.context_tar(files)) as t:
        assert sorted(t.getnames()) == sorted(files)


def test_image_requirements_are_the_runtime_lock():
    reqs = images.requirements()
    assert "dnspython==" in reqs and "--hash=sha256:" in reqs and "mininet" not in reqs


def test_base_recipe_tag_follows_its_fields():
    a, b = images.BaseRecipe(), images.BaseRecipe(include=("iproute2",))
    assert a.ref == images.BaseRecipe().ref and a.ref != b.ref
    assert a.ref.startswith("testbed/base:")


# ------------------------------------------------------------------------------ labels, checks
def test_container_labels_name_the_lab_and_run_root(run_root):
    assert dockerb.labels("tbx") == {"testbed.lab": "tbx", "testbed.run_root": str(run_root.resolve())}
    full = dockerb.labels("tbx", "mn", "mobile")
    assert full["testbed.node"] == "mn" and full["testbed.role"] == "mobile"


def test_check_script_asks_for_what_the_role_runs():
    dns = dockerb.check_script(Role.DNS, "", agent=True)
    assert "named named-checkconf" in dns and "named -v" in dns
    mn = dockerb.check_script(Role.MOBILE, "/opt/py", agent=True)
    assert "dhcpcd" in mn and '"/opt/py" -c "import testbed.mobility.agent"' in mn
    assert "import testbed" not in dockerb.check_script(Role.MOBILE, "/opt/py", agent=False)
    assert "linux.uml" not in mn and "uml-init" not in mn
    kernel = dockerb.check_script(Role.HOST, "/opt/py", agent=True, uml_init="/opt/i.sh")
    assert "linux.uml modprobe mount" in kernel and 'test -x "/opt/i.sh" || echo no-uml-init' in kernel


@pytest.mark.parametrize(("role", "output", "words"), [
    (Role.ACCESS_ROUTER, "missing radvd\n", ["lacks radvd", "'radvd'"]),
    (Role.DNS, "missing named-checkconf\n", ["lacks named-checkconf", "'bind9-utils'"]),
    (Role.MOBILE, "no-package\n", ["cannot import the testbed package", "testbed.python"]),
    (Role.HOST, "missing linux.uml\n", ["lacks linux.uml", "'user-mode-linux'"]),
    (Role.MOBILE, "missing modprobe\n", ["lacks modprobe", "'kmod'"]),
    (Role.HOST, "no-uml-init\n", ["no UML init script", "testbed.uml_init", "images/uml-init.sh"]),
    (Role.DNS, "BIND 9.18.28-1~deb12u2-Debian (Extended Support Version) <id:>\n",
     ["BIND 9.18.28-1~deb12u2-Debian", "too old for SIG(0)", "bookworm-backports"]),
])
def test_an_image_lacking_what_its_role_needs_is_one_clear_error(role, output, words):
    with pytest.raises(ConfigError) as e:
        dockerb.check_output("n1", role, "my/img:1", output, "topo.yaml")
    msg = str(e.value)
    assert msg.startswith("topo.yaml: nodes.n1.image: image my/img:1") and "\n" not in msg
    for w in words:
        assert w in msg


def test_a_complete_image_passes_the_check():
    dockerb.check_output("dns", Role.DNS, "testbed/dns:x", "BIND 9.20.23-1~bpo12+1-Debian (Stable)\n", "t")


def test_qemu_nodes_are_refused_before_the_engine_is_touched(run_root, monkeypatch):
    monkeypatch.setattr(engine, "using", lambda: pytest.fail("engine used"))
    raw = yaml.safe_load((loader.resolve("two-ar-sctp")).read_text())
    raw["nodes"]["cn"]["sctp"] = {"stack": "qemu"}
    topo = loader.from_dict(raw, "topo.yaml")
    from testbed.model import addressing

    state = LabState("tbk", "topo.yaml", topo.model_dump(mode="json"), backend="docker")
    with pytest.raises(ConfigError, match=r"nodes\.cn\.sctp\.stack: QEMU nodes do not run on the docker "
                                          r"backend \(use stack: uml"):
        dockerb.DockerBackend().build(addressing.plan(topo), state, lambda m: None, frozenset({"mn", "cn"}))
    assert state.containers == [] and state.netns == []


# ------------------------------------------------------------------------------ runtime
class FakeApi:
    """The few engine calls the container runtime makes, answered from a script."""

    def __init__(self, exit_code: int = 0, out: bytes = b"out", err: bytes = b"") -> None:
        self.created: list[tuple[str, list[str], dict[str, str] | None]] = []
        self.exit_code, self.out, self.err = exit_code, out, err
        self.closed = False

    def exec_create(self, container: str, cmd: list[str], environment=None) -> dict[str, str]:
        self.created.append((container, cmd, environment))
        return {"Id": f"e{len(self.created)}"}

    def exec_start(self, exec_id: str, detach: bool = False, demux: bool = False) -> Any:
        return None if detach else (self.out, self.err)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {"ExitCode": self.exit_code, "Pid": 4242, "Running": True}

    def close(self) -> None:
        self.closed = True


def node(api: FakeApi, python: str = "/opt/testbed/venv/bin/python") -> ContainerNode:
    return ContainerNode("mn", "tbx-mn", "c0ffee", lambda timeout: api, python=python)


def test_host_interpreter_becomes_the_images():
    rt = node(FakeApi())
    assert rt.argv(["env", "A=1", sys.executable, "-m", "x"]) == \
        ["env", "A=1", "/opt/testbed/venv/bin/python", "-m", "x"]
    assert node(FakeApi(), python="").argv([sys.executable]) == [sys.executable]


def test_network_stack_commands_go_through_the_pinned_netns(monkeypatch):
    calls = []
    monkeypatch.setattr(container.netns, "run", lambda ns, argv, **kw: calls.append((ns, argv)))
    api = FakeApi()
    rt = node(api)
    rt.run(["ip", "-j", "addr"])
    rt.set_link("mn-ar1", False)
    rt.set_sysctl("net.ipv6.conf.all.forwarding", "1")
    rt.set_sysctls({"net.sctp.addip_enable": "1", "net.sctp.auth_enable": "1"})
    assert calls == [("tbx-mn", ["ip", "-j", "addr"]),
                     ("tbx-mn", ["ip", "link", "set", "dev", "mn-ar1", "down"]),
                     ("tbx-mn", ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]),
                     ("tbx-mn", ["sysctl", "-q", "-w", "net.sctp.addip_enable=1", "net.sctp.auth_enable=1"])]
    assert api.created == []  # no engine round trip


def test_other_commands_run_in_the_container_under_a_deadline():
    api = FakeApi(out=b"9.20")
    cp = node(api).run(["named", "-v"], timeout=7)
    assert cp.stdout == "9.20" and cp.returncode == 0
    assert api.created == [("c0ffee", ["timeout", "-k", "2", "7", "named", "-v"], None)]


def test_a_failing_container_command_raises_with_its_words():
    with pytest.raises(CommandError, match="exited 1: bad config"):
        node(FakeApi(exit_code=1, err=b"bad config")).run(["radvd", "-c"])
    cp = node(FakeApi(exit_code=124)).run(["sleep", "9"], timeout=1, check=False)
    assert cp.returncode == 124 and "timed out after 1 s" in cp.stderr


def test_input_reaches_the_command_through_the_environment():
    api = FakeApi()
    node(api).run(["nsupdate"], input="send\n")
    _, cmd, env = api.created[0]
    assert cmd[:3] == ["sh", "-c", 'printf "%s" "$TESTBED_INPUT" | "$@"'] and cmd[-1] == "nsupdate"
    assert env == {"TESTBED_INPUT": "send\n"}


def test_spawn_appends_to_the_log_and_returns_the_host_pid(tmp_path):
    api = FakeApi()
    prog = "import sys; print('out'); print('err', file=sys.stderr)"
    pid = node(api).spawn([sys.executable, "-c", prog], log=tmp_path / "a.log", env={"K": "v"})
    assert pid == 4242
    _, cmd, env = api.created[0]
    assert cmd[-3:] == ["/opt/testbed/venv/bin/python", "-c", prog]
    assert env == {"K": "v"}
    # the command the container runs, run here with this interpreter: both streams in the log
    subprocess.run([*cmd[:-3], sys.executable, *cmd[-2:]], check=True)
    assert (tmp_path / "a.log").read_text() == "out\nerr\n"


def test_spawn_with_an_error_log_keeps_stderr_apart(tmp_path):
    api = FakeApi()
    prog = "import sys; print('out'); print('err', file=sys.stderr)"
    node(api).spawn([sys.executable, "-c", prog], log=tmp_path / "a.log", err_log=tmp_path / "a.err")
    _, cmd, _ = api.created[0]
    subprocess.run([*cmd[:-3], sys.executable, *cmd[-2:]], check=True)
    assert (tmp_path / "a.log").read_text() == "out\n"
    assert (tmp_path / "a.err").read_text() == "err\n"


def test_terminal_argv_is_docker_exec_on_the_recorded_engine(run_root):
    st = LabState("tbx", "t.yaml", {}, backend="docker", engine="unix:///run/x.sock",
                  containers=[{"node": "mn", "name": "tbx-mn", "id": "abc", "image": "i", "python": "/py"}])
    argv = dockerb.DockerBackend().terminal_argv(st, "mn", [sys.executable, "-V"], tty=True)
    assert argv == ["docker", "-H", "unix:///run/x.sock", "exec", "-i", "-t", "abc", "/py", "-V"]


def test_a_kernel_node_boots_in_its_container_over_the_images_root(run_root):
    rec = {"node": "mn", "name": "tbx-mn", "id": "abc", "image": "i", "pid": "4242", "python": "/opt/py",
           "pythonpath": "/opt/src", "uml_init": "/opt/init.sh"}
    st = LabState("tbx", "t.yaml", {}, backend="docker", engine="unix:///run/x.sock", containers=[rec])
    backend = dockerb.DockerBackend()
    host = backend.kernel_host(st, "mn")
    assert host.launcher is backend.runtime(st, "mn")  # the engine's exec starts the supervisor
    root = host.root
    assert (root.python, root.package_root, root.init_script) == ("/opt/py", Path("/opt/src"),
                                                                  Path("/opt/init.sh"))
    assert root.mem_parent == Path(dockerb.UML_TMPFS) and root.pid == 4242
    assert root.host_path("/run/uml/x") == Path("/proc/4242/root/run/uml/x")
    assert root.mountinfo == Path("/proc/4242/mountinfo")
    # an image without the labels (a user's FROM an old testbed image): the images' own paths
    bare = {k: v for k, v in rec.items() if k not in dockerb.PACKAGE_LABELS}
    st.containers = [bare]
    root = dockerb.DockerBackend().kernel_host(st, "mn").root
    assert (root.python, str(root.package_root), str(root.init_script)) == (
        images.IMAGE_PYTHON, images.IMAGE_PYTHONPATH, images.IMAGE_UML_INIT)


# ------------------------------------------------------------------------------ engine
def test_no_engine_and_no_dockerd_is_one_line_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "find", lambda: None)
    monkeypatch.setattr(engine, "PRIVATE_RUN", tmp_path)
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    with pytest.raises(engine.EngineError) as e:
        engine.connect()
    assert "dockerd is not installed" in str(e.value) and "'docker.io'" in str(e.value)
    assert "\n" not in str(e.value)


def test_private_dockerd_leaves_the_firewall_alone():
    argv = engine.dockerd_argv()
    for flag in ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
                 "--ip-masq=false"):
        assert flag in argv
    assert argv[argv.index("--data-root") + 1] == str(engine.private_data())
    # outside the default run root, whose unknown directories `clean` takes for crashed labs
    assert engine.PRIVATE_URL.startswith("unix:///run/") and not engine.PRIVATE_RUN.is_relative_to(
        Path("/run/testbed"))


def test_the_image_cache_survives_a_reboot_and_avoids_overlayfs(monkeypatch):
    monkeypatch.delenv("TESTBED_DOCKER_DATA", raising=False)
    monkeypatch.setattr(engine, "fs_type", lambda p: "ext4")
    assert engine.private_data() == Path("/var/lib/testbed/docker")
    # inside a container /var/lib is an overlay: the nested engines' volume, else /tmp
    monkeypatch.setattr(engine, "fs_type",
                        lambda p: "overlay" if str(p).startswith("/var/lib/testbed") else "ext4")
    assert engine.private_data() == Path("/var/lib/docker/testbed")
    monkeypatch.setattr(engine, "fs_type", lambda p: "overlay" if str(p).startswith("/var") else "tmpfs")
    assert engine.private_data() == Path("/tmp/testbed-docker")
    monkeypatch.setenv("TESTBED_DOCKER_DATA", "/srv/images")
    assert engine.private_data() == Path("/srv/images")


def test_fs_type_reads_the_longest_mount_point():
    assert engine.fs_type(Path("/proc/self")) == "proc"


def test_stop_if_idle_never_touches_an_engine_it_did_not_start(monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "PRIVATE_RUN", tmp_path)  # no pid file: no private engine
    monkeypatch.setattr(engine, "_terminate", lambda pid: pytest.fail("would stop an engine"))
    assert engine.stop_if_idle() is False


# ------------------------------------------------------------------------------ lab seams
def test_topology_takes_a_backend_node_images_and_a_base():
    data = loader.yaml.safe_load((ROOT / "topologies/two-ar.yaml").read_text())
    data["backend"] = "docker"
    data["images"] = {"base": "debian:bookworm"}
    data["nodes"]["dns"]["image"] = "my/bind:9.20"
    topo = loader.from_dict(data, "t.yaml")
    assert topo.backend == "docker" and topo.images.base == "debian:bookworm"
    assert topo.nodes["dns"].image == "my/bind:9.20" and topo.nodes["mn"].image is None
    data["backend"] = "kvm"
    with pytest.raises(ConfigError, match="t.yaml: backend: Input should be 'mininet' or 'docker'"):
        loader.from_dict(data, "t.yaml")


def test_backend_name_from_the_environment_wins_over_the_topology(run_root, fake_backend, monkeypatch):
    monkeypatch.setenv("TESTBED_BACKEND", "fake")
    monkeypatch.setattr("testbed.lab.build.build", lambda *a: None)  # the choice is what counts
    lab = Lab.up(None, "tbenv")  # two-ar names no backend
    assert lab.state.backend == "fake" and lab.backend is fake_backend
    lab.down()
    assert ("backend", "teardown") in fake_backend.journal


def test_unknown_backend_name_is_a_config_error(run_root):
    with pytest.raises(ConfigError, match="unknown backend"):
        Lab.up(None, "tbbad", backend="lxc")

