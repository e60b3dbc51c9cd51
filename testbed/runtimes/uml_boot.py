"""What a User-Mode Linux node's boot is made of: the UML command line, the files its init reads
(boot parameters, fstab, NIC names), the kernel checks made before boot and the reading of the
console after a failed one. Pure functions (no processes, except asking a kernel binary for its
configuration), so they are unit-tested; ``testbed.runtimes.uml`` runs them.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from testbed.errors import ConfigError
from testbed.runtimes.node_root import NodeRoot
from testbed.runtimes.uml_kernels import UmlKernel

RELAY_MODULE = "testbed.runtimes.uml_relay"
GUEST_TMPFS = tuple(Path(p) for p in ("/tmp", "/run", "/var/tmp", "/dev/shm"))
AGENT_TTY = "/dev/tty1"  # UML console con1 in the guest
CHANNEL_FD = 3  # the relay hands UML the agent channel on this fd (uml_relay.CHANNEL_FD)
# hmac first: with net.sctp.auth_enable=1 an SCTP socket needs hmac(sha1), and the request the
# kernel makes for it on demand would fail before the module helper is set up. cryptomgr is
# built in on Debian's build (modprobe skips built-ins) but a module in others. sctp pulls in
# ipv6 (a module in Debian's UML build) through modules.dep; it is named for clarity.
BOOT_MODULES = ("hmac", "cryptomgr", "ipv6", "sctp")
# Debian's build has btrfs built in, hence RAID-6 parity with CONFIG_RAID6_PQ_BENCHMARK=y: its
# initcall benchmarks the parity functions for ~0.85 s of every boot. A node has no block
# devices (nothing calls them), so the initcall is skipped; a kernel without it ignores this.
BOOT_SKIP = ("initcall_blacklist=raid6_select_algo",)
# What a node cannot do without, with the fix (checked from `linux --showconfig` before boot).
REQUIRED_CONFIG: dict[str, tuple[tuple[str, ...], str]] = {
    "CONFIG_HOSTFS": (("y",), "the guest's root is the host's / over hostfs: build with CONFIG_HOSTFS=y"),
    "CONFIG_UML_NET_VECTOR": (("y",), "the NICs are vector raw sockets: build with CONFIG_UML_NET_VECTOR=y"),
    "CONFIG_IP_SCTP": (("y", "m"), "build with CONFIG_IP_SCTP=m (or y) and install its modules"),
    "CONFIG_BINFMT_SCRIPT": (("y",), "the init is a shell script: build with CONFIG_BINFMT_SCRIPT=y"),
}
# Console lines that explain a boot failure better than "the kernel exited".
CONSOLE_HINTS = (
    ("Cannot open root device", "could not mount the host root over hostfs (CONFIG_HOSTFS=y missing?)"),
    ("Unable to mount root fs", "could not mount the host root over hostfs (CONFIG_HOSTFS=y missing?)"),
    ("No working init found", "could not run the init script uml-init.sh (CONFIG_BINFMT_SCRIPT=y "
     "missing, or the script absent from the node's root?)"),
    ("Out of memory", "the guest ran out of memory (raise memory_mb)"),
)
CONSOLE_KEYWORDS = ("tb-init", "panic", "vfs:", "modprobe", "error", "fail", "not found", "cannot")
# Printed by every boot of Debian's build and harmless: no ubd disk (the root is hostfs), no iomem
# mapper, SELinux's deprecation notice, epoll refusing the console log (a regular file).
CONSOLE_NOISE = ("ubd device 0", "mmapper_init", "SELinux", "epollctl add err")
_CONFIG_CACHE: dict[tuple[str, int, int], dict[str, str] | None] = {}


def mac_for(netns: str, ifname: str) -> str:
    """A stable locally administered unicast MAC for a guest NIC (fe:fd: as UML's own)."""
    h = hashlib.sha256(f"{netns}/{ifname}".encode()).digest()
    return "fe:fd:" + ":".join(f"{b:02x}" for b in h[:4])


def kernel_config(binary: Path) -> dict[str, str] | None:
    """The build configuration a UML binary prints with ``--showconfig`` (None if it cannot)."""
    st = binary.stat()
    key = (str(binary), int(st.st_mtime), st.st_size)
    if key not in _CONFIG_CACHE:
        try:
            out = subprocess.run([str(binary), "--showconfig"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        cfg = dict(ln.split("=", 1) for ln in out.splitlines() if ln.startswith("CONFIG_") and "=" in ln)
        _CONFIG_CACHE[key] = cfg or None
    return _CONFIG_CACHE[key]


def kernel_label(kernel: UmlKernel) -> str:
    return f"UML kernel {kernel.release} ({kernel.binary})"


def check_kernel(kernel: UmlKernel | None, config: dict[str, str] | None = None,
                 root: NodeRoot | None = None) -> UmlKernel:
    """Bad input fails here, before anything is created: a missing binary or module tree, or a
    build without what a node needs (when the binary tells its configuration). The kernel's
    paths are in ``root`` (the host's by default), which the host reaches through its view."""
    root = root or NodeRoot()
    if kernel is None:
        raise ConfigError("uml", "kernel", "no kernel given", "resolve one with testbed.runtimes."
                          "uml_kernels.resolve (Debian's: install the package 'user-mode-linux')")
    label = kernel_label(kernel)
    binary = root.host_path(kernel.binary)
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ConfigError(label, "binary", "not found or not executable",
                          "install the Debian package 'user-mode-linux' or give the path of a linux "
                          "binary built with ARCH=um")
    if not root.host_path(kernel.modules_dir / "modules.dep").is_file():
        raise ConfigError(label, "modules", f"no module tree at {kernel.modules_dir}",
                          "install the build's modules (make ARCH=um modules_install) and run depmod")
    config = config if config is not None else kernel_config(binary)
    for option, (values, fix) in REQUIRED_CONFIG.items() if config else ():
        if config.get(option) not in values:  # type: ignore[union-attr]
            have = config.get(option, "not set")  # type: ignore[union-attr]
            raise ConfigError(label, option, f"is {have}", fix)
    return kernel


def explain(console: Sequence[str]) -> str:
    """The likely cause of a boot failure from the console's last lines ('' if none is known)."""
    text = "\n".join(console)
    for needle, why in CONSOLE_HINTS:
        if needle in text:
            return why
    return ""


def console_digest(lines: Sequence[str], keep: int = 6) -> list[str]:
    """The console lines worth a one-line error: the init's own and the kernel's complaints
    (a panic's stack trace would crowd them out of a plain tail), else the last lines. Lines
    every boot prints are left out."""
    lines = [ln.strip() for ln in lines
             if not any(n in ln for n in CONSOLE_NOISE) and not ln.lstrip().startswith("[<")]  # stack frames
    key = [ln for ln in lines if any(w in ln.lower() for w in CONSOLE_KEYWORDS)]
    return (key or lines)[-keep:]


# ---- boot files (pure text, unit-tested) --------------------------------------------------------
def share_list(rw: Sequence[Path], needed: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(read-write shares, read-only shares) to mount in the guest, parents first.

    A share inside another is covered by it. A path the guest needs (this checkout, the module
    tree) that lies under a guest tmpfs would be hidden: it gets a read-only share."""
    rw_out: list[Path] = []
    for p in sorted({Path(p) for p in rw}, key=lambda p: len(p.parts)):
        if not any(p.is_relative_to(q) for q in rw_out):
            rw_out.append(p)
    ro_out: list[Path] = []
    for p in needed:
        hidden = any(p.is_relative_to(t) for t in GUEST_TMPFS)
        if hidden and not any(p.is_relative_to(q) for q in (*rw_out, *ro_out)):
            ro_out.append(p)
    for p in (*rw_out, *ro_out):
        if any(c in str(p) for c in " ,\t\n\\'\""):
            raise ConfigError("uml", "share", f"{p} has a space, comma or quote", "use a plainer path")
    return rw_out, ro_out


def fstab(rw: Sequence[Path], ro: Sequence[Path]) -> str:
    """What the init mounts with one ``mount -a``: kernel filesystems, tmpfs, hostfs shares."""
    lines = [
        "proc /proc proc nosuid,nodev,noexec 0 0",
        "sysfs /sys sysfs nosuid,nodev,noexec 0 0",
        "devpts /dev/pts devpts gid=5,mode=620,ptmxmode=666,X-mount.mkdir 0 0",
        "tmpfs /tmp tmpfs mode=1777 0 0",
        "tmpfs /run tmpfs mode=755 0 0",
        "tmpfs /var/tmp tmpfs mode=1777 0 0",
        "tmpfs /dev/shm tmpfs mode=1777,X-mount.mkdir 0 0",
    ]
    # hostfs takes the host directory as its mount data; X-mount.mkdir makes the mount point
    # (it may lie in a fresh tmpfs)
    lines += [f"hostfs {p} hostfs {p},X-mount.mkdir 0 0" for p in rw]
    lines += [f"hostfs {p} hostfs ro,{p},X-mount.mkdir 0 0" for p in ro]
    return "\n".join(lines) + "\n"


def ip_batch(nics: Sequence[str]) -> str:
    """The guest's NICs take the lab's names (vecN is the N-th ``vecN:`` on the command line)."""
    return "".join(f"link set dev vec{i} name {n}\n" for i, n in enumerate(nics)) + "link set dev lo up\n"


def boot_env(values: dict[str, str]) -> str:
    """Shell assignments the init sources (TB_BOOT points at this file)."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def uml_argv(binary: Path, *, umid: str, uml_dir: Path, memory_mb: int, netns: str, nics: Sequence[str],
             boot: Path, init: Path) -> list[str]:
    """The UML command line. Consoles: con0 (the init's stdout) to fd 1 (the console log), con1
    the agent channel, every other console and serial line null (no host ptys or xterms)."""
    argv = [
        str(binary),
        f"umid={umid}",
        f"uml_dir={uml_dir}",
        f"mem={memory_mb}M",
        "root=/dev/root",
        "rootfstype=hostfs",
        "rootflags=/",
        "ro",
        f"init={init}",
        "con=null",
        "ssl=null",
        "con0=null,fd:1",
        f"con1=fd:{CHANNEL_FD}",
    ]
    # gro=1: receive buffers of 64 KiB. The raw socket hands the guest whole GSO packets (a
    # Linux TCP sender on the segment builds them, and veth passes them on unsegmented); with
    # the default MTU-sized buffers the vector driver truncates them (IpExtInTruncatedPkts)
    # and only the sender's single-segment retransmissions arrive: bulk TCP into a UML node
    # crawled at ~1 MB a minute (an SSH file copy), and runs at tens of Mbit/s with it.
    argv += [f"vec{i}:transport=raw,ifname={n},mac={mac_for(netns, n)},gro=1" for i, n in enumerate(nics)]
    argv += [*BOOT_SKIP, "quiet", f"TB_BOOT={boot}"]
    return argv


def relay_argv(python: str, config: Path, listen: Path, ready: Path) -> list[str]:
    """The relay's command: the root's python without site (it needs only the standard
    library). It binds ``listen`` itself and says so on the FIFO ``ready``."""
    return [python, "-S", "-m", RELAY_MODULE, "--config", str(config), "--listen", str(listen),
            "--ready", str(ready)]


def relay_env(root: NodeRoot) -> dict[str, str]:
    """What the relay's environment adds: the package on its path (``-S`` skips the venv's
    site, hence its .pth files)."""
    return {"PYTHONPATH": str(root.package_root), "PYTHONDONTWRITEBYTECODE": "1"}
