"""A kernel node in a QEMU VM: a distribution's kernel build (with SCTP), KVM or TCG.

QEMU runs inside the node's named netns. Each guest NIC is a TAP in that netns, bridged to the
host-side interface the lab already made there (a veth end), so the guest sits on the same L2
segment as the rest of the lab. The guest mounts the host's / read-only over 9p (it runs the
same venv python), gets writable shares at their host paths, and is driven through a guest
agent on virtio-serial. Host resources created here carry the ifalias ``testbed-vm:<name>``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.errors import ConfigError, MissingDependency, TestbedError
from testbed.host import netns as ns
from testbed.runtimes import initramfs
from testbed.runtimes.base import KernelInfo
from testbed.runtimes.channels import AgentError, GuestAgentClient, Qmp
from testbed.runtimes.guest import GuestBootError, GuestConfig, GuestNode
from testbed.runtimes.kernels import KernelFiles

QEMU = "qemu-system-x86_64"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Kernel options that shorten a TCG boot: skip self-tests, timer calibration and CPU-bug
# mitigations (the guest runs only lab code), one UART.
BOOT_FAST = (
    "mitigations=off tsc=reliable no_timer_check cryptomgr.notests 8250.nr_uarts=1 random.trust_cpu=on"
)
GUEST_TMPFS = tuple(Path(p) for p in ("/tmp", "/run", "/var/tmp", "/dev/shm"))  # see images/init.sh


@dataclass
class QemuConfig(GuestConfig):
    """A kernel node in QEMU: the kernel's files, the accelerator, extra modules."""

    kernel: KernelFiles | None = None
    extra_modules: Sequence[str] = ()  # e.g. ("sch_netem",)
    accel: str = "tcg"  # "kvm" only where KVM really boots a stock kernel (runtimes.accel)


def mac_for(name: str, ifname: str) -> str:
    """A stable locally administered MAC for a VM NIC (52:54:00 is QEMU's own prefix)."""
    h = hashlib.sha256(f"{name}/{ifname}".encode()).digest()
    return f"52:54:00:{h[0]:02x}:{h[1]:02x}:{h[2]:02x}"


class QemuNode(GuestNode):
    """A kernel node in a QEMU VM. ``start()`` boots; ``shutdown()`` tears everything down."""

    cfg: QemuConfig

    def __init__(self, cfg: QemuConfig) -> None:
        super().__init__(cfg)
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock_dir: Path | None = None
        self._links: list[str] = []  # host-side TAPs/bridges this VM created
        self.qemu_pid = 0

    def record(self) -> dict[str, Any]:
        """What the lab state keeps to reconnect to this VM from another process."""
        return {"node": self.name, "stack": "qemu", "pid": self.qemu_pid, "sock_dir": str(self.sock_dir),
                "release": self._release, "accelerator": self.cfg.accel,
                "boot_seconds": round(self.boot_seconds, 2)}

    @classmethod
    def attach(cls, cfg: QemuConfig, record: dict[str, Any]) -> QemuNode:
        """Reconnect to a VM another process booted (the lab keeps VMs across CLI commands).

        The agent port accepts one client at a time: a second process waits until the first
        closes its connection (every CLI command does so when it exits).
        """
        self = cls(cfg)
        self.qemu_pid, self.sock_dir = int(record["pid"]), Path(record["sock_dir"])
        sock_dir = self.sock_dir
        try:
            self.agent = GuestAgentClient(sock_dir / "agent.sock")
            self._release = self.agent.request("ping", timeout=10.0)["release"]
        except (OSError, AgentError) as e:
            raise GuestBootError(f"VM {cfg.name}: its guest agent does not answer ({e}): another "
                              f"testbed process may be using it (one at a time), or the VM is down "
                              f"(see {self.console_log})") from e
        return self

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    def _socket_dir(self) -> Path:
        # unix socket paths are limited to 108 bytes: fall back to a short private dir
        if len(str(self.state_dir / "agent.sock")) < 100:
            return self.state_dir
        return Path(tempfile.mkdtemp(prefix=f"tbvm-{self.name}-", dir="/run"))

    def start(self) -> QemuNode:
        """Boot the VM and wait (bounded) for its agent; on failure clean up and raise."""
        if shutil.which(QEMU) is None:
            raise MissingDependency(QEMU, "qemu-system-x86")
        if not ns.exists(self.netns):
            raise ConfigError("vm " + self.name, "netns", f"{self.netns} does not exist")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.console_log.unlink(missing_ok=True)
        self.sock_dir = self._socket_dir()
        for s in ("agent.sock", "qmp.sock"):
            (self.sock_dir / s).unlink(missing_ok=True)
        t0 = time.monotonic()
        try:
            self._make_links()
            if self.cfg.kernel is None:
                raise ConfigError(f"vm {self.name}", "kernel", "no kernel given", "resolve one with "
                                  "testbed.runtimes.kernels.resolve")
            initrd = initramfs.build(self.cfg.kernel, self.cfg.extra_modules)
            self.proc = ns.spawn(self.netns, self.qemu_argv(initrd), log=self.state_dir / "qemu.log")
            self.qemu_pid = self.proc.pid
            self._wait_agent(t0 + self.cfg.boot_timeout)
            self.boot_seconds = time.monotonic() - t0
            self.sync_clock()
            self.apply_sysctls()
        except BaseException:
            self.shutdown(grace=0)
            raise
        return self

    def qemu_argv(self, initrd: Path) -> list[str]:
        cfg, sock = self.cfg, self.sock_dir or self.state_dir
        assert cfg.kernel is not None
        shares = cfg.shares()
        # the guest mounts tmpfs over these: a checkout (and its venv) below one needs a share
        if any(REPO_ROOT.is_relative_to(m) for m in GUEST_TMPFS) and not any(
            REPO_ROOT.is_relative_to(p) for p in shares
        ):
            shares.append(REPO_ROOT)
        for p in shares:
            if " " in str(p) or "," in str(p):
                raise ConfigError("vm " + self.name, "rw dir", f"{p} has a space or comma")
        ifmap = ",".join(f"{mac_for(self.netns, ifname)}@{ifname}" for ifname in cfg.nics)
        rw = ",".join(f"rw{i}:{p}" for i, p in enumerate(shares))
        append = (
            f"console=ttyS0 panic=-1 quiet {BOOT_FAST} tb.host={self.name} tb.py={cfg.python} "
            f"tb.pp={REPO_ROOT} tb.rw={rw}" + (f" tb.if={ifmap}" if ifmap else "")
        )
        accel = "tcg,tb-size=32" if cfg.accel == "tcg" else cfg.accel
        argv = [
            QEMU,
            "-name",
            f"tbvm-{self.name}",
            "-M",
            "pc",
            "-accel",
            accel,
            "-cpu",
            "max",
            "-m",
            str(cfg.memory_mb),
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(cfg.kernel.image),
            "-initrd",
            str(initrd),
            "-append",
            append,
            "-serial",
            f"file:{self.console_log}",
            "-fsdev",
            "local,id=root,path=/,readonly=on,security_model=none,multidevs=remap",
            "-device",
            "virtio-9p-pci,fsdev=root,mount_tag=root",
            "-chardev",
            f"socket,id=agent,path={sock / 'agent.sock'},server=on,wait=off",
            "-device",
            "virtio-serial-pci",
            "-device",
            "virtserialport,chardev=agent,name=tb.agent",
            "-qmp",
            f"unix:{sock / 'qmp.sock'},server=on,wait=off",
        ]
        for i, p in enumerate(shares):
            argv += [
                "-fsdev",
                f"local,id=rw{i},path={p},security_model=none,multidevs=remap",
                "-device",
                f"virtio-9p-pci,fsdev=rw{i},mount_tag=rw{i}",
            ]
        for i, ifname in enumerate(cfg.nics):
            mac = mac_for(self.netns, ifname)
            argv += [
                "-netdev",
                f"tap,id=net{i},ifname=tbt{i},script=no,downscript=no",
                "-device",
                f"virtio-net-pci,netdev=net{i},mac={mac},id=nic{i},romfile=",
            ]
        return argv

    def _make_links(self) -> None:
        """Per NIC: TAP tbtN + bridge tbbN in the node's netns, with the lab's ifname as a port.

        IPv6 is disabled on the host side of the segment so it never autoconfigures or sends
        RS/NS/MLD into the lab: only the guest is a host on that segment.
        """
        cmds: list[str] = []
        sysctl: list[str] = []
        for i, ifname in enumerate(self.cfg.nics):
            tap, br = f"tbt{i}", f"tbb{i}"
            alias = f"testbed-vm:{self.name}"
            cmds += [
                f"tuntap add dev {tap} mode tap",
                f"link add {br} type bridge forward_delay 0 mcast_snooping 0",
                f"link set {tap} alias {alias}",
                f"link set {br} alias {alias}",
            ]
            self._links += [tap, br]
            for dev in (tap, br, ifname):
                sysctl.append(f"net.ipv6.conf.{dev}.disable_ipv6=1")
            cmds += [
                f"link set {tap} master {br}",
                f"link set {ifname} master {br}",
                f"link set {tap} up",
                f"link set {br} up",
                f"link set {ifname} up",
            ]
        if not cmds:
            return
        pre = [c for c in cmds if "master" not in c and " up" not in c]
        post = [c for c in cmds if c not in pre]
        ns.run(None, ["ip", "-n", self.netns, "-batch", "-"], input="\n".join(pre) + "\n")
        ns.run(self.netns, ["sysctl", "-q", "-w", *sysctl])
        ns.run(None, ["ip", "-n", self.netns, "-batch", "-"], input="\n".join(post) + "\n")

    def _wait_agent(self, deadline: float) -> None:
        assert self.sock_dir is not None and self.proc is not None
        path = self.sock_dir / "agent.sock"
        while True:
            if self.proc.poll() is not None:
                raise GuestBootError(self._boot_failure(f"QEMU exited with {self.proc.returncode}"))
            if time.monotonic() > deadline:
                raise GuestBootError(self._boot_failure(f"agent silent after {self.cfg.boot_timeout:g} s"))
            if self.agent is None:
                try:
                    self.agent = GuestAgentClient(path)
                except OSError:
                    time.sleep(0.05)  # QEMU has not created the socket yet
                    continue
            try:
                self._release = self.agent.request("ping", timeout=0.5)["release"]
                return
            except AgentError:
                continue  # guest still booting: ping again (stale replies are dropped)

    def _boot_failure(self, why: str) -> str:
        tail = ""
        for f in (self.console_log, self.state_dir / "qemu.log"):
            if f.exists():
                tail += " | ".join(f.read_text(errors="replace").strip().splitlines()[-4:]) + " "
        return f"VM {self.name}: {why}; console: {tail.strip() or '(empty)'}"

    def shutdown(self, grace: float = 3.0) -> None:
        """Power the guest off (agent), then QMP quit, then SIGKILL; remove the TAPs/bridges."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            if self.agent is not None and grace > 0:
                try:
                    self.agent.request("shutdown", timeout=1.0)
                except AgentError:
                    pass
                _wait(proc, grace)
            if proc.poll() is None and self.sock_dir is not None:
                try:
                    Qmp(self.sock_dir / "qmp.sock").execute("quit", timeout=1.0)
                except (OSError, TestbedError):
                    pass
                _wait(proc, 1.0)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self._links and ns.exists(self.netns):
            cmds = "".join(f"link del {d}\n" for d in reversed(self._links))
            ns.run(None, ["ip", "-n", self.netns, "-force", "-batch", "-"], input=cmds, check=False)
        self._links = []
        if self.sock_dir is not None and self.sock_dir != self.state_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        self.proc = None

    def __enter__(self) -> QemuNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- NodeRuntime (the rest is GuestNode's) -------------------------------------------
    def set_link(self, ifname: str, up: bool) -> None:
        """Carrier of the guest NIC, as a cable pull would change it (QMP set_link), and the
        NIC's admin state in the guest, as for every kernel node: up = carrier, then admin up;
        down = admin down, then carrier."""
        idx = list(self.cfg.nics).index(ifname)
        assert self.sock_dir is not None
        if up:
            Qmp(self.sock_dir / "qmp.sock").execute("set_link", name=f"nic{idx}", up=True)
        self._agent().request("link", ifname=ifname, up=up, timeout=10.0)
        if not up:
            Qmp(self.sock_dir / "qmp.sock").execute("set_link", name=f"nic{idx}", up=False)

    # ---- guest state ---------------------------------------------------------------------
    def sync_clock(self) -> float:
        """Set the guest's wall clock to the host's, so guest-side timestamps (traffic stats)
        line up with host captures to within the agent's one-way latency (~ms). Returns the
        offset the guest had (guest - host, seconds)."""
        t = time.time()
        return float(self._agent().request("settime", t=t, timeout=5.0)["offset"])

    def kernel(self) -> KernelInfo:
        return KernelInfo("qemu", self._release, self.cfg.accel)

    def qemu_rss_kib(self) -> int:
        """Resident set size of the QEMU process (host side)."""
        pid = self.proc.pid if self.proc is not None else self.qemu_pid
        if not pid:
            return 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
