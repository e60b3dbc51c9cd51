"""Pure parts of the UML runtime: command line, boot files, kernel checks, error messages."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from testbed.errors import ConfigError
from testbed.runtimes import uml_boot, uml_relay
from testbed.runtimes.node_root import HOST_INIT_SCRIPT
from testbed.runtimes.uml import UmlConfig, UmlNode
from testbed.runtimes.uml_kernels import UmlKernel

GOOD_CONFIG = {"CONFIG_HOSTFS": "y", "CONFIG_UML_NET_VECTOR": "y", "CONFIG_IP_SCTP": "m",
               "CONFIG_BINFMT_SCRIPT": "y"}


def _kernel(tmp_path: Path, *, binary: bool = True, dep: bool = True) -> UmlKernel:
    mods = tmp_path / "lib/modules/6.1.99"
    mods.mkdir(parents=True)
    if dep:
        (mods / "modules.dep").write_text("")
    linux = tmp_path / "linux"
    if binary:
        linux.write_text("#!/bin/sh\nexit 0\n")
        linux.chmod(0o755)
    return UmlKernel("6.1.99", linux, mods)


def test_argv_has_consoles_nics_init_and_boot_file(tmp_path: Path) -> None:
    argv = uml_boot.uml_argv(Path("/usr/bin/linux.uml"), umid="mn", uml_dir=tmp_path / "umid", memory_mb=192,
                        netns="tbu-mn", nics=["a0", "b0"], boot=tmp_path / "boot.env",
                        init=HOST_INIT_SCRIPT)
    assert argv[0] == "/usr/bin/linux.uml"
    for a in ("umid=mn", f"uml_dir={tmp_path}/umid", "mem=192M", "rootfstype=hostfs", "rootflags=/", "ro",
              f"init={HOST_INIT_SCRIPT}", "con=null", "ssl=null", "con0=null,fd:1", "con1=fd:3",
              f"TB_BOOT={tmp_path}/boot.env", "initcall_blacklist=raid6_select_algo"):
        assert a in argv, a
    vecs = [a for a in argv if a.startswith("vec")]
    assert vecs == [f"vec0:transport=raw,ifname=a0,mac={uml_boot.mac_for('tbu-mn', 'a0')},gro=1",
                    f"vec1:transport=raw,ifname=b0,mac={uml_boot.mac_for('tbu-mn', 'b0')},gro=1"]
    assert uml_boot.CHANNEL_FD == uml_relay.CHANNEL_FD == 3
    assert HOST_INIT_SCRIPT.is_file() and os.access(HOST_INIT_SCRIPT, os.X_OK)


def test_mac_is_stable_local_unicast() -> None:
    mac = uml_boot.mac_for
    a = mac("tbu-mn", "a0")
    assert a == mac("tbu-mn", "a0") != mac("tbu-mn", "b0") != mac("tbu-x", "a0")
    first = int(a.split(":")[0], 16)
    assert first & 0b10 and not first & 0b1  # locally administered, unicast
    assert len(a.split(":")) == 6


def test_shares_nested_collapse_and_hidden_paths_get_read_only_shares() -> None:
    rw, ro = uml_boot.share_list(
        [Path("/run/tb/lab/mn/kernel"), Path("/run/tb/lab/mn")],
        [Path("/work/repo"), Path("/tmp/build/modules"), Path("/run/tb/lab/mn/x")],
    )
    assert rw == [Path("/run/tb/lab/mn")]  # the state dir lies inside the node dir
    assert ro == [Path("/tmp/build/modules")]  # /work is visible; /tmp gets a tmpfs in the guest
    with pytest.raises(ConfigError, match="space, comma"):
        uml_boot.share_list([Path("/tmp/a,b")], [])


def test_fstab_mounts_tmpfs_then_shares() -> None:
    text = uml_boot.fstab([Path("/run/tb/mn")], [Path("/tmp/mods")])
    lines = text.splitlines()
    assert lines[0].startswith("proc /proc proc")
    for d in ("/tmp", "/run", "/var/tmp", "/dev/shm"):
        assert any(ln.split()[1] == d and ln.split()[2] == "tmpfs" for ln in lines), d
    assert "hostfs /run/tb/mn hostfs /run/tb/mn,X-mount.mkdir 0 0" in lines
    assert "hostfs /tmp/mods hostfs ro,/tmp/mods,X-mount.mkdir 0 0" in lines
    assert lines.index("hostfs /run/tb/mn hostfs /run/tb/mn,X-mount.mkdir 0 0") > [
        ln.split()[1] for ln in lines].index("/run")  # a share under /run after /run's tmpfs


def test_ip_batch_names_nics_in_command_line_order() -> None:
    assert uml_boot.ip_batch(["a0", "b0"]) == (
        "link set dev vec0 name a0\nlink set dev vec1 name b0\nlink set dev lo up\n")


def test_boot_env_is_sourced_verbatim(tmp_path: Path) -> None:
    f = tmp_path / "boot.env"
    f.write_text(uml_boot.boot_env({"TB_A": "it's $HOME `x`", "TB_MODULES": "hmac sctp"}))
    out = subprocess.run(["sh", "-c", f'. {f}; printf "%s|%s" "$TB_A" "$TB_MODULES"'],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert out == "it's $HOME `x`|hmac sctp"


def test_boot_modules_put_hmac_before_sctp() -> None:
    mods = list(uml_boot.BOOT_MODULES)
    assert mods.index("hmac") < mods.index("sctp") and "ipv6" in mods


def test_check_kernel_missing_binary_names_kernel_and_fix(tmp_path: Path) -> None:
    k = _kernel(tmp_path, binary=False)
    with pytest.raises(ConfigError) as e:
        uml_boot.check_kernel(k, GOOD_CONFIG)
    msg = str(e.value)
    assert "UML kernel 6.1.99" in msg and str(k.binary) in msg and "user-mode-linux" in msg
    assert "\n" not in msg


def test_check_kernel_missing_module_tree(tmp_path: Path) -> None:
    k = _kernel(tmp_path, dep=False)
    with pytest.raises(ConfigError, match=r"no module tree.*depmod"):
        uml_boot.check_kernel(k, GOOD_CONFIG)


@pytest.mark.parametrize(("option", "value", "fix"), [
    ("CONFIG_HOSTFS", None, "CONFIG_HOSTFS=y"),
    ("CONFIG_IP_SCTP", None, "CONFIG_IP_SCTP=m"),
    ("CONFIG_UML_NET_VECTOR", "m", "CONFIG_UML_NET_VECTOR=y"),
])
def test_check_kernel_config_without_what_a_node_needs(tmp_path: Path, option: str, value: str | None,
                                                        fix: str) -> None:
    cfg = dict(GOOD_CONFIG)
    if value is None:
        del cfg[option]
    else:
        cfg[option] = value
    with pytest.raises(ConfigError) as e:
        uml_boot.check_kernel(_kernel(tmp_path), cfg)
    assert option in str(e.value) and fix in str(e.value) and "UML kernel 6.1.99" in str(e.value)


def test_check_kernel_accepts_good_config_and_unknown_config(tmp_path: Path) -> None:
    k = _kernel(tmp_path)
    assert uml_boot.check_kernel(k, GOOD_CONFIG) == k
    assert uml_boot.kernel_config(k.binary) is None  # prints no config: checked at boot instead
    assert uml_boot.check_kernel(k) == k


def test_kernel_config_reads_showconfig(tmp_path: Path) -> None:
    linux = tmp_path / "linux"
    linux.write_text('#!/bin/sh\n[ "$1" = --showconfig ] && '
                     'printf "#\\nCONFIG_HOSTFS=y\\n# CONFIG_X is not set\\n"\n')
    linux.chmod(0o755)
    assert uml_boot.kernel_config(linux) == {"CONFIG_HOSTFS": "y"}


def test_console_explains_boot_failures() -> None:
    assert "hostfs" in uml_boot.explain(["VFS: Cannot open root device \"root\" or unknown-block(0,0)"])
    assert "BINFMT_SCRIPT" in uml_boot.explain(["Kernel panic - not syncing: No working init found."])
    assert uml_boot.explain(["all fine"]) == ""


def test_start_with_bad_kernel_creates_nothing(tmp_path: Path) -> None:
    k = _kernel(tmp_path / "k", binary=False)
    node = UmlNode(UmlConfig("mn", "tbu-none", tmp_path / "state", nics=["a0"], kernel=k))
    with pytest.raises(ConfigError, match="UML kernel"):
        node.start()
    assert not (tmp_path / "state").exists()
    with pytest.raises(ConfigError, match="no kernel given"):
        UmlNode(UmlConfig("mn", "tbu-none", tmp_path / "state")).start()


def test_set_link_unknown_nic(tmp_path: Path) -> None:
    node = UmlNode(UmlConfig("mn", "tbu-none", tmp_path, nics=["a0"], kernel=_kernel(tmp_path)))
    with pytest.raises(ConfigError, match="'b0' is not one of its NICs"):
        node.set_link("b0", True)


def test_boot_failure_message_is_one_line_with_kernel_fix_and_console(tmp_path: Path) -> None:
    node = UmlNode(UmlConfig("mn", "tbu-none", tmp_path, kernel=_kernel(tmp_path)))
    (tmp_path / "exit.json").write_text('{"returncode": -6, "signal": "SIGABRT"}')
    trace = [f" [<6069{i:04x}>] ? some_function+0x0/0x94" for i in range(30)]
    (tmp_path / "console.log").write_text("\n".join([
        "tb-init: 0.6 s: mounted", "Kernel panic - not syncing: VFS: Unable to mount root fs on "
        "unknown-block(0,0)", *trace]) + "\n")
    msg = node._boot_failure("the kernel exited during boot", "rebuild it")
    assert "\n" not in msg
    assert msg.startswith("UML node mn (UML kernel 6.1.99 (")
    assert "UML exited with signal SIGABRT" in msg and "fix: rebuild it" in msg
    assert "likely cause: could not mount the host root over hostfs" in msg
    assert msg.endswith("console: tb-init: 0.6 s: mounted | Kernel panic - not syncing: VFS: Unable to "
                        "mount root fs on unknown-block(0,0)")  # not crowded out by the stack trace


def test_console_digest_falls_back_to_the_tail_without_noise() -> None:
    assert uml_boot.console_digest([f"line {i}" for i in range(10)], keep=2) == ["line 8", "line 9"]
    noisy = ["Failed to initialize ubd device 0 :Couldn't determine size", "Kernel panic - not syncing: x",
             " [<606931e5>] panic+0x197/0x376"]
    assert uml_boot.console_digest(noisy) == ["Kernel panic - not syncing: x"]


def test_record_carries_what_attach_needs(tmp_path: Path) -> None:
    node = UmlNode(UmlConfig("mn", "tbu-none", tmp_path, kernel=_kernel(tmp_path)))
    node.relay_pid, node.uml_pid, node.sock_dir, node.mem_dir = 11, 12, tmp_path, tmp_path / "m"
    rec = node.record()
    assert rec["node"] == "mn" and rec["stack"] == "uml"
    assert {"relay_pid", "uml_pid", "sock_dir", "mem_dir", "release", "boot_seconds"} <= set(rec)
