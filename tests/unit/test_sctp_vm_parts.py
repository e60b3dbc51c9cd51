"""Pure parts of the VM backend: kernel spec resolution, initramfs cpio, module ordering."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testbed.errors import ConfigError
from testbed.runtimes import initramfs
from testbed.runtimes import kernels as kernel
from testbed.runtimes.qemu import mac_for

DEP = (
    "kernel/net/sctp/sctp.ko: kernel/net/ipv6/ip6_udp_tunnel.ko kernel/net/ipv4/udp_tunnel.ko "
    "kernel/lib/libcrc32c.ko\n"
    """\
kernel/lib/libcrc32c.ko:
kernel/net/ipv4/udp_tunnel.ko:
kernel/net/ipv6/ip6_udp_tunnel.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz
kernel/net/9p/9pnet.ko.xz:
"""
)


def test_module_order_puts_dependencies_first_once() -> None:
    t = initramfs.parse_modules_dep(DEP)
    order = initramfs.module_order(t, ["crc32c-intel", "sctp", "libcrc32c", "9p"])
    assert order[0] == "kernel/arch/x86/crypto/crc32c-intel.ko"  # '-' and '_' are one name
    assert order.index("kernel/lib/libcrc32c.ko") < order.index("kernel/net/sctp/sctp.ko")
    assert order.index("kernel/net/9p/9pnet.ko.xz") < order.index("kernel/fs/9p/9p.ko.xz")
    assert len(order) == len(set(order)) == 7


def test_module_order_skips_builtin() -> None:
    t = initramfs.parse_modules_dep(DEP)
    order = initramfs.module_order(t, ["virtio_pci", "9p"], builtin=["kernel/drivers/virtio/virtio_pci.ko"])
    assert order == ["kernel/net/9p/9pnet.ko.xz", "kernel/fs/9p/9p.ko.xz"]


def test_module_order_unknown_module() -> None:
    with pytest.raises(ConfigError, match="nope"):
        initramfs.module_order(initramfs.parse_modules_dep(DEP), ["nope"])


def test_cpio_newc_is_readable_by_cpio(tmp_path: Path) -> None:
    data = initramfs.cpio_newc(
        [
            initramfs.CpioEntry("dev", 0o040755),
            initramfs.CpioEntry("dev/console", 0o020600, rdev=(5, 1)),
            initramfs.CpioEntry("init", 0o100755, b"#!/bin/sh\n"),
            initramfs.CpioEntry("bin/sh", 0o120777, b"busybox"),
        ]
    )
    assert data.startswith(b"070701") and len(data) % 4 == 0
    out = subprocess.run(["cpio", "-itv"], input=data, capture_output=True, check=True).stdout
    names = [line.split()[-1] for line in out.decode().splitlines()]
    assert names[:3] == ["dev", "dev/console", "init"] and "busybox" in names[-1]


def test_resolve_cached_release(tmp_path: Path) -> None:
    root = tmp_path / "kernels" / "6.1.0-99-amd64"
    (root / "lib/modules/6.1.0-99-amd64").mkdir(parents=True)
    (root / "vmlinux").write_bytes(b"\x7fELF....")
    (root / ".complete").touch()
    k = kernel.resolve("6.1.0-99", cache=tmp_path)
    assert k.release == "6.1.0-99-amd64" and k.pvh and k.image.name == "vmlinux"
    assert kernel.resolve(None, cache=tmp_path) == k


def test_resolve_missing_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fetch-kernel.sh 6.12.117"):
        kernel.resolve("6.12.117+deb12-amd64", cache=tmp_path)
    with pytest.raises(ConfigError, match="make setup"):
        kernel.resolve(None, cache=tmp_path)


def test_resolve_user_build_needs_depmod(tmp_path: Path) -> None:
    img = tmp_path / "bzImage"
    img.write_bytes(b"MZ")
    mods = tmp_path / "lib/modules/6.18.0-test"
    mods.mkdir(parents=True)
    with pytest.raises(ConfigError, match="depmod"):
        kernel.resolve(str(img), modules=mods)
    (mods / "modules.dep").write_text("")
    k = kernel.resolve(str(img), modules=mods)
    assert k.release == "6.18.0-test" and not k.pvh
    assert kernel.resolve(str(img)) == k  # the module tree beside the image


def test_resolve_user_build_without_modules_names_the_fix(tmp_path: Path) -> None:
    img = tmp_path / "bzImage"
    img.write_bytes(b"MZ")
    with pytest.raises(ConfigError, match="no module tree beside it.*modules_install"):
        kernel.resolve(str(img))


def test_mac_is_stable_and_local() -> None:
    assert mac_for("mn", "a0") == mac_for("mn", "a0") != mac_for("mn", "b0")
    assert mac_for("mn", "a0").startswith("52:54:00:")
