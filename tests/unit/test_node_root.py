"""Where a kernel node's supervisor runs: paths in its root as the host reaches them, the memory
file's tmpfs checked in that root's own mount table, pids across pid namespaces, kernels
resolved in the root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.errors import ConfigError
from testbed.host.procs import child_with_ns_pid
from testbed.runtimes import uml_kernels
from testbed.runtimes.guest import GuestConfig, GuestNode
from testbed.runtimes.node_root import HOST_INIT_SCRIPT, NodeRoot
from testbed.runtimes.uml import memory_parent

# this process's own root, reached the way the host reaches a container's
SELF = NodeRoot(pid=os.getpid())


def test_host_root_is_this_checkout_and_paths_stay() -> None:
    root = NodeRoot()
    assert root.is_host and root.python == sys.executable and root.init_script == HOST_INIT_SCRIPT
    assert (root.package_root / "testbed" / "runtimes" / "node_root.py").is_file()
    assert root.host_path("/run/x") == Path("/run/x") and root.mountinfo == Path("/proc/self/mountinfo")


def test_another_root_is_reached_through_proc() -> None:
    assert not SELF.is_host
    assert SELF.host_path("/etc/hostname") == Path(f"/proc/{os.getpid()}/root/etc/hostname")
    assert SELF.host_path("/proc/self/mountinfo").is_file()
    assert SELF.real("/a/../b/./c") == Path("/b/c")  # no host symlinks followed for another root


def test_mount_of_reads_the_roots_own_table() -> None:
    assert SELF.mount_of("/proc/self")[:2] == ("/proc", "proc")
    assert SELF.mount_of("/dev/shm/x")[1] == "tmpfs"


def test_memory_parent_must_be_an_execable_tmpfs_with_room(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc: noexec inside a container
    with pytest.raises(ConfigError, match=r"/proc is proc( noexec)? in the node's root \(mount an exec-able"):
        memory_parent(NodeRoot(mem_parent=Path("/proc"), pid=os.getpid()), tmp_path, 192, "n")
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(NodeRoot, "mount_of", lambda self, p: (str(shm), "tmpfs", {"rw"}) if
                        Path(p).is_relative_to(shm) else ("/", "ext4", {"rw"}))
    monkeypatch.setattr(NodeRoot, "free_mb", lambda self, p: 100)
    with pytest.raises(ConfigError, match=rf"{shm} has 100 MiB free, the guest needs 192 MiB"):
        memory_parent(NodeRoot(mem_parent=shm, pid=os.getpid()), tmp_path, 192, "n")
    assert memory_parent(NodeRoot(mem_parent=shm, pid=os.getpid()), tmp_path, 64, "n") == shm
    # no choice of the root's: the state dir when it is such a tmpfs, else /dev/shm, else the
    # state dir on disk
    assert memory_parent(NodeRoot(), shm, 64, "n") == shm
    assert memory_parent(NodeRoot(), tmp_path / "st", 192, "n") == tmp_path / "st"


def test_memory_parent_passes_over_a_noexec_or_small_dev_shm(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker's /dev/shm: 64 MiB, noexec; the state dir on disk serves instead."""
    monkeypatch.setattr(NodeRoot, "mount_of", lambda self, p: ("/dev/shm", "tmpfs", {"rw", "noexec"})
                        if str(p).startswith("/dev/shm") else ("/", "overlay", {"rw"}))
    monkeypatch.setattr(NodeRoot, "free_mb", lambda self, p: 64)
    assert memory_parent(NodeRoot(), tmp_path, 192, "n") == tmp_path
    monkeypatch.setattr(NodeRoot, "mount_of", lambda self, p: ("/dev/shm", "tmpfs", {"rw"})
                        if str(p).startswith("/dev/shm") else ("/", "overlay", {"rw"}))
    assert memory_parent(NodeRoot(), tmp_path, 192, "n") == tmp_path  # exec-able, too small
    assert memory_parent(NodeRoot(), tmp_path, 32, "n") == Path("/dev/shm")


def test_memory_parent_refuses_noexec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NodeRoot, "mount_of", lambda self, p: ("/dev/shm", "tmpfs", {"rw", "noexec"}))
    with pytest.raises(ConfigError, match="is tmpfs noexec in the node's root"):
        memory_parent(NodeRoot(mem_parent=Path("/dev/shm"), pid=1), Path("/x"), 64, "n")


def test_child_with_ns_pid_finds_this_processes_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child_with_ns_pid(os.getpid(), child.pid) == child.pid  # one pid namespace here
        assert child_with_ns_pid(os.getpid(), 0) is None
    finally:
        child.kill()
        child.wait()


def test_kernel_resolved_in_another_root_keeps_its_paths(tmp_path: Path) -> None:
    binary, mods = tmp_path / "usr/bin/linux.uml", tmp_path / "usr/lib/uml/modules"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (mods / "6.1.9").mkdir(parents=True)
    (mods / "6.1.9" / "modules.dep").write_text("")
    k = uml_kernels.resolve(None, debian_binary=binary, debian_modules=mods, root=SELF)
    assert (k.release, k.binary, k.modules_dir) == ("6.1.9", binary, mods / "6.1.9")
    with pytest.raises(ConfigError, match=r"not found in the node's image \(install the Debian package "
                                          r"'user-mode-linux' in the node's image\)"):
        uml_kernels.resolve(None, debian_binary=tmp_path / "none", debian_modules=mods, root=SELF)


def test_the_guest_runs_python_modules_with_its_roots_interpreter(tmp_path: Path) -> None:
    node = GuestNode(GuestConfig("mn", "ns", tmp_path, python="/opt/testbed/venv/bin/python"))
    assert node.guest_argv([sys.executable, "-m", "x", sys.executable]) == [
        "/opt/testbed/venv/bin/python", "-m", "x", "/opt/testbed/venv/bin/python"]
    assert GuestNode(GuestConfig("mn", "ns", tmp_path)).guest_argv([sys.executable]) == [sys.executable]
