"""A kernel node in User-Mode Linux: its own Linux kernel (with SCTP) as a host process.

UML runs guest user space natively and pays only for system calls and process starts (it
traces its processes with ptrace), so a kernel-SCTP node boots in about two seconds and moves
packets with sub-millisecond latency. How a node is put together:

* **Process tree.** ``start()`` spawns a supervisor (``uml_relay``) through the node's
  launcher, the runtime its backend gives the node (``ip netns exec`` for a namespace node,
  the engine's exec for a container); it is UML's parent. UML's NICs are
  ``vecN:transport=raw,ifname=X``: a raw packet socket on the host-side interface X the lab
  made in that netns, so the guest NIC sits on the lab's segment with no TAP or bridge. The
  init renames ``vecN`` to X. The socket carries virtio-net headers and the NIC takes GSO
  packets whole (``gro=1``): a Linux peer's TCP segments arrive as one large frame.
* **Files.** The guest's root is its supervisor's / over hostfs, read-only: the host's (this
  venv's python) on a namespace node, the image's in a container (``UmlConfig.root`` names
  its python, package and init script). ``cfg.shares()`` are mounted read-write at their
  paths (the lab's run dir has the same path on both sides); /tmp /run /var/tmp and /dev/shm
  are tmpfs. The guest's /etc/resolv.conf is its supervisor's, which is the lab's per-netns
  one (``ip netns exec`` binds it; a container mounts it). Modules come from the kernel's own
  tree by ``modprobe -d``. The init is ``images/uml-init.sh``, as the root holds it.
* **Agent channel.** The guest agent serves UML console ``con1`` (/dev/tty1 in the guest, in
  raw mode); the relay multiplexes it for any number of host clients on ``agent.sock``, which
  it binds itself in the node's state dir (see ``uml_relay``).
* **Memory.** The guest's RAM is an unlinked file (UML opens it with O_TMPFILE) in TMPDIR:
  a private directory this node makes on an exec-able tmpfs of its root (``root.mem_parent``,
  else the state dir or /dev/shm when they are tmpfs), so nothing is named on disk and the
  space is freed when the last UML process exits.
* **Carrier.** The vector driver has no carrier of its own, and a raw socket whose host
  interface goes down puts the driver into an error state that only closing the guest NIC
  clears. So ``set_link`` moves the host-side interface (what the peer sees as carrier) and the
  guest interface's admin state together: up = host first, then the guest NIC (re)opened, so
  its first Router Solicitation and DHCP packet leave on a live link; down = host, then guest.
* **Clock.** UML takes its wall clock from the host's CLOCK_REALTIME at boot and, once its
  clocksource is the host's CLOCK_MONOTONIC, advances at the host's rate: no drift. But the
  early boot keeps time in jiffies (10 ms ticks at HZ=100), and the guest comes up trailing the
  host by a few ms (1-15 ms measured; up to ~0.2 s when several nodes boot at once on a busy
  host), constant from then on. ``start()`` removes it with atomic relative steps
  (``sync_clock``), leaving guest and host wall time equal to within the agent round trip's
  half (~0.2-0.3 ms here); ``clock_offset()`` measures it at any time.

Pids: the relay reports UML's pid in its own pid namespace (a container's); the node keeps
host pids (the launcher's pid, and UML's found among the relay's children), so the host signals
and measures them whatever the pid namespace.

Host resources a node makes: the supervisor and UML processes, ``agent.sock`` and UML's umid
directory, the memory-file directory, and ``boot/`` (init parameters, fstab, module-tree link)
in its state dir. ``shutdown()`` and the supervisor's own exit path remove all of them; the
console log and the exit record stay in the state dir.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import ConfigError, TestbedError
from testbed.host import netns as ns
from testbed.host.procs import alive, child_with_ns_pid
from testbed.runtimes import hostmem
from testbed.runtimes.base import KernelInfo, NodeRuntime
from testbed.runtimes.channels import AgentError, GuestAgentClient
from testbed.runtimes.guest import GuestBootError, GuestConfig, GuestNode
from testbed.runtimes.namespace import NamespaceNode
from testbed.runtimes.node_root import NodeRoot
from testbed.runtimes.uml_boot import (
    AGENT_TTY,
    BOOT_MODULES,
    RELAY_MODULE,
    boot_env,
    check_kernel,
    console_digest,
    explain,
    fstab,
    ip_batch,
    kernel_label,
    relay_argv,
    relay_env,
    share_list,
    uml_argv,
)
from testbed.runtimes.uml_kernels import UmlKernel


@dataclass
class UmlConfig(GuestConfig):
    """A kernel node in UML: the kernel build, extra modules, where the guest RAM lives."""

    kernel: UmlKernel | None = None  # its paths are in ``root``
    extra_modules: Sequence[str] = ()  # e.g. ("veth", "bridge", "sch_netem")
    root: NodeRoot = field(default_factory=NodeRoot)  # the filesystem the supervisor runs in
    # starts the supervisor in the node's netns and root; None: ``ip netns exec`` on the host
    launcher: NodeRuntime | None = None
    # host directories the guest may change, each an overlay whose changes stay in the guest
    # (a lab machine writes /etc/netns and the like); needs the overlay module
    overlays: Sequence[Path] = ()


@dataclass(frozen=True)
class ClockOffset:
    """Guest wall clock minus host wall clock, with the bound the round trip puts on it."""

    offset_s: float
    uncertainty_s: float


def memory_parent(root: NodeRoot, state_dir: Path, memory_mb: int, label: str) -> Path:
    """The tmpfs directory (in ``root``) that holds the guest-RAM file's private directory.

    The root's own choice (a container's exec-able tmpfs) must be a tmpfs of that root's mount
    table, mounted without noexec (UML maps the file executable) and with room for the guest's
    memory; otherwise the state dir or /dev/shm when they are such a tmpfs, else the state dir."""
    if root.mem_parent is not None:
        _, fstype, opts = root.mount_of(root.mem_parent)
        if fstype != "tmpfs" or "noexec" in opts:
            raise ConfigError(label, "memory file", f"{root.mem_parent} is {fstype or 'not mounted'}"
                              f"{' noexec' if 'noexec' in opts else ''} in the node's root",
                              "mount an exec-able tmpfs there (UML maps its memory file executable)")
        free = root.free_mb(root.mem_parent)
        if free < memory_mb:
            raise ConfigError(label, "memory file", f"{root.mem_parent} has {free} MiB free, the guest "
                              f"needs {memory_mb} MiB", "give that tmpfs a larger size= or lower memory_mb")
        return root.mem_parent
    for cand in (state_dir, Path("/dev/shm")):  # a container's /dev/shm is 64 MiB and noexec
        _, fstype, opts = root.mount_of(cand)
        if (fstype == "tmpfs" and "noexec" not in opts and root.host_path(cand).is_dir()
                and root.free_mb(cand) >= memory_mb):
            return cand
    return state_dir  # a file on disk: UML pages it out like any mapping


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait (pidfd, no polling) up to ``timeout`` s for ``pid`` to exit; True when it has (and
    reaped, when it is this process's child)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if alive(pid):
            select.select([fd], [], [], max(0.0, timeout))
    finally:
        os.close(fd)
    return not alive(pid)


class UmlNode(GuestNode):
    """A kernel node in UML. ``start()`` boots it; ``shutdown()`` removes all it made."""

    cfg: UmlConfig

    def __init__(self, cfg: UmlConfig) -> None:
        super().__init__(cfg)
        self.root = cfg.root
        self.launcher: NodeRuntime = cfg.launcher or NamespaceNode(cfg.name, cfg.netns)
        self.relay_pid = 0
        self.uml_pid = 0
        self.sock_dir: Path | None = None
        self.mem_dir: Path | None = None
        self.boot_clock_offset: ClockOffset | None = None  # what sync_clock removed at boot

    # ---- paths ---------------------------------------------------------------------------
    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    @property
    def exit_file(self) -> Path:
        return self.state_dir / "exit.json"

    @property
    def boot_dir(self) -> Path:
        return self.state_dir / "boot"

    @property
    def agent_socket(self) -> Path:
        return (self.sock_dir or self.state_dir) / "agent.sock"

    @property
    def ready_fifo(self) -> Path:
        return self.boot_dir / "relay.ready"

    def _label(self) -> str:
        k = self.cfg.kernel
        return f"UML node {self.name} ({kernel_label(k) if k else 'no kernel'})"

    # ---- lab state ------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """What the lab state keeps to reconnect to (and shut down) this node from another process."""
        return {"node": self.name, "stack": "uml", "relay_pid": self.relay_pid, "uml_pid": self.uml_pid,
                "sock_dir": str(self.sock_dir), "mem_dir": str(self.mem_dir), "release": self._release,
                "boot_seconds": round(self.boot_seconds, 2)}

    @classmethod
    def attach(cls, cfg: UmlConfig, record: dict[str, Any]) -> UmlNode:
        """Connect to a node another process booted; any number of processes may at once."""
        self = cls(cfg)
        self.relay_pid, self.uml_pid = int(record["relay_pid"]), int(record["uml_pid"])
        self.sock_dir, self.mem_dir = Path(record["sock_dir"]), Path(record["mem_dir"])
        self._release = record.get("release", "")
        self.boot_seconds = float(record.get("boot_seconds", 0.0))
        try:
            self.agent = GuestAgentClient(self.agent_socket)
            self._release = self.agent.request("ping", timeout=10.0)["release"]
        except (OSError, AgentError) as e:
            self.close()
            raise GuestBootError(f"{self._label()}: its agent does not answer ({e}); the node is down "
                                 f"({self._exit_summary() or 'see ' + str(self.console_log)})") from e
        return self

    # ---- boot ------------------------------------------------------------------------------
    def start(self) -> UmlNode:
        """Boot and wait (bounded by ``boot_timeout``) for the agent; on failure remove
        everything made so far and raise with the console's last lines."""
        kernel = check_kernel(self.cfg.kernel, root=self.root)
        if not ns.exists(self.netns):
            raise ConfigError(self._label(), "netns", f"{self.netns} does not exist", "create it first")
        for n in self.cfg.nics:
            if len(n) > 15 or not n.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ConfigError(self._label(), "nic", f"{n!r} is not a valid interface name")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for f in (self.console_log, self.exit_file):
            f.unlink(missing_ok=True)
        t0 = time.monotonic()
        try:
            self._host_links()
            self._make_dirs()
            self._write_boot_files(kernel)
            ready = self._spawn_relay(kernel)
            self._wait_listening(ready, t0 + self.cfg.boot_timeout)
            self._wait_agent(t0 + self.cfg.boot_timeout)
            self.boot_seconds = time.monotonic() - t0
            self.boot_clock_offset = self.sync_clock()
            self._check_sctp(kernel)
            self.apply_sysctls()
        except BaseException:
            self.shutdown(grace=0)
            raise
        return self

    def _host_links(self) -> None:
        """The host-side interfaces: present, no addresses, IPv6 off (so the host never
        autoconfigures or sends RS/NS/MLD there: only the guest is a host on the segment),
        and up, so the guest NIC opens on a live link."""
        if not self.cfg.nics:
            return
        cp = ns.run(None, ["ip", "-n", self.netns, "-j", "link", "show"], timeout=10)
        have = {link["ifname"] for link in json.loads(cp.stdout or "[]")}
        missing = [n for n in self.cfg.nics if n not in have]
        if missing:
            raise ConfigError(self._label(), "nics", f"{', '.join(missing)} not in netns {self.netns} "
                              f"(it has {', '.join(sorted(have))})", "create the links before booting")
        ns.run(self.netns, ["sysctl", "-q", "-w",
                            *(f"net.ipv6.conf.{n}.disable_ipv6=1" for n in self.cfg.nics)], timeout=10)
        batch = "".join(f"addr flush dev {n}\nlink set dev {n} up\n" for n in self.cfg.nics)
        ns.run(None, ["ip", "-n", self.netns, "-batch", "-"], input=batch, timeout=10)

    def _make_dirs(self) -> None:
        """Socket dir (AF_UNIX paths are limited to 108 bytes: a short private dir when the
        state dir is deep) and the memory file's private dir on tmpfs, made from the host in
        the node's root."""
        longest = self.state_dir / "umid" / self.name / "mconsole"
        if len(str(longest)) < 100:
            self.sock_dir = self.state_dir
        elif self.root.is_host:
            self.sock_dir = Path(tempfile.mkdtemp(prefix=f"tbuml-{self.name}-", dir="/run"))
        else:  # the relay binds the socket where host and node both see it: the state dir
            raise ConfigError(self._label(), "state dir", f"{self.state_dir} is too long for a Unix "
                              "socket path (108 bytes)", "use a shorter TESTBED_RUN_ROOT or lab name")
        self.agent_socket.unlink(missing_ok=True)
        parent = memory_parent(self.root, self.state_dir, self.cfg.memory_mb, self._label())
        made = Path(tempfile.mkdtemp(prefix=f"tbuml-{self.name}-mem-", dir=self.root.host_path(parent)))
        self.mem_dir = self.root.real(parent / made.name)

    def _write_boot_files(self, kernel: UmlKernel) -> None:
        cfg, boot = self.cfg, self.boot_dir
        shutil.rmtree(boot, ignore_errors=True)
        (boot / "modroot" / "lib").mkdir(parents=True)
        # modprobe -d wants <dir>/lib/modules/<release>: a link to the build's module root
        # (a path in the node's root, where the guest follows it)
        modules_root = self.root.real(kernel.modules_root)
        (boot / "modroot" / "lib" / "modules").symlink_to(modules_root)
        # what the guest reads after its tmpfs mounts: the package, the module tree, the venv
        needed = [self.root.package_root, modules_root, Path(self.root.python).parent.parent]
        rw, ro = share_list(cfg.shares(), needed)
        (boot / "fstab").write_text(fstab(rw, ro))
        (boot / "ip.batch").write_text(ip_batch(cfg.nics))
        helper = boot / "modprobe"  # kernel.modprobe: on-demand module loads use the same tree
        helper.write_text(f"#!/bin/sh\nexec modprobe -d {boot / 'modroot'} -S {kernel.release} \"$@\"\n")
        helper.chmod(0o755)
        modules = list(dict.fromkeys((*BOOT_MODULES, *cfg.extra_modules,
                                      *(("overlay",) if cfg.overlays else ()))))
        (boot / "boot.env").write_text(boot_env({
            "TB_HOST": self.name,
            "TB_FSTAB": str(boot / "fstab"),
            "TB_MODROOT": str(boot / "modroot"),
            "TB_RELEASE": kernel.release,
            "TB_MODULES": " ".join(modules),
            "TB_MODPROBE": str(helper),
            "TB_IPBATCH": str(boot / "ip.batch"),
            "TB_PORT": AGENT_TTY,
            "TB_PYTHON": self.root.python,
            "TB_PYTHONPATH": str(self.root.package_root),
            "TB_OVERLAYS": " ".join(str(p) for p in cfg.overlays),
        }))

    def _spawn_relay(self, kernel: UmlKernel) -> int:
        """Start the relay through the launcher; returns the read end of its ready FIFO, opened
        before the relay starts so its announcement cannot be missed."""
        assert self.sock_dir is not None and self.mem_dir is not None
        argv = uml_argv(kernel.binary, umid=self.name, uml_dir=self.sock_dir / "umid",
                        memory_mb=self.cfg.memory_mb, netns=self.netns, nics=self.cfg.nics,
                        boot=self.boot_dir / "boot.env", init=self.root.init_script)
        remove = [self.agent_socket, self.sock_dir / "umid", self.mem_dir, self.boot_dir]
        if self.sock_dir != self.state_dir:
            remove.append(self.sock_dir)
        relay_cfg = {"argv": argv, "env": {"TMPDIR": str(self.mem_dir)}, "console": str(self.console_log),
                     "exit_file": str(self.exit_file), "remove": [str(p) for p in remove],
                     "links": list(self.cfg.nics)}
        cfg_file = self.boot_dir / "relay.json"
        cfg_file.write_text(json.dumps(relay_cfg, indent=1))
        os.mkfifo(self.ready_fifo, 0o600)
        ready = os.open(self.ready_fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.relay_pid = self.launcher.spawn(
                relay_argv(self.root.python, cfg_file, self.agent_socket, self.ready_fifo),
                log=self.state_dir / "relay.log", env=relay_env(self.root))
        except BaseException:
            os.close(ready)
            raise
        return ready

    def _wait_listening(self, ready: int, deadline: float) -> None:
        """Until the relay says its socket listens, or it exits (pidfd), or the deadline."""
        try:
            pidfd = os.pidfd_open(self.relay_pid)
        except ProcessLookupError:
            pidfd = -1
        try:
            while True:
                watch = [ready] + ([pidfd] if pidfd >= 0 else [])
                readable, _, _ = select.select(watch, [], [], max(0.0, deadline - time.monotonic()))
                if ready in readable:
                    try:
                        if os.read(ready, 64):
                            return
                    except BlockingIOError:
                        continue
                if pidfd < 0 or pidfd in readable or time.monotonic() >= deadline:
                    break
        finally:
            os.close(ready)
            if pidfd >= 0:
                os.close(pidfd)
            self.ready_fifo.unlink(missing_ok=True)
        log = self.state_dir / "relay.log"
        if alive(self.relay_pid):
            why = (f"its agent did not answer within boot_timeout={self.cfg.boot_timeout:g} s (its "
                   "supervisor was not listening yet)")
            raise GuestBootError(self._boot_failure(why, f"raise boot_timeout (a boot takes about 2 s) "
                                                         f"or see {log}"))
        raise GuestBootError(self._boot_failure("its supervisor exited before listening", f"see {log}"))

    def _wait_agent(self, deadline: float) -> None:
        """One ``ping``: the relay holds it until the agent announces itself, and fails it at
        once if the guest goes down first. No polling."""
        try:
            self.agent = GuestAgentClient(self.agent_socket)
            reply = self.agent.request("ping", timeout=max(0.1, deadline - time.monotonic()))
        except (OSError, AgentError) as e:
            timed_out = time.monotonic() >= deadline
            if not timed_out and self.relay_pid:
                _wait_exit(self.relay_pid, 10.0)  # the guest went down: UML's exit record follows
            if self._exit_record():
                why, fix = "the kernel exited during boot", f"see {self.console_log}"
            elif timed_out:
                why = f"its agent did not answer within boot_timeout={self.cfg.boot_timeout:g} s"
                fix = f"raise boot_timeout (a boot takes about 2 s) or see {self.console_log}"
            else:
                why, fix = f"its agent is unreachable ({e})", f"see {self.state_dir / 'relay.log'}"
            raise GuestBootError(self._boot_failure(why, fix)) from e
        self._release = reply["release"]
        info = self.agent.request("relay", timeout=5.0)
        # the relay sees its own pid namespace (a container's): find UML's host pid among its
        # children, so the host can signal and measure it
        self.uml_pid = child_with_ns_pid(self.relay_pid, int(info["uml_pid"])) or 0

    def _check_sctp(self, kernel: UmlKernel) -> None:
        try:
            self.read_file("/proc/sys/net/sctp/auth_enable")
        except AgentError as e:
            raise GuestBootError(self._boot_failure(
                "no SCTP in the guest (modprobe sctp failed)",
                f"build it with CONFIG_IP_SCTP=m and install its modules into {kernel.modules_dir}")) from e

    def _exit_record(self) -> dict[str, Any]:
        try:
            return json.loads(self.exit_file.read_text())
        except (OSError, ValueError):
            return {}

    def _exit_summary(self) -> str:
        rec = self._exit_record()
        if not rec:
            return ""
        how = f"signal {rec['signal']}" if rec.get("signal") else f"status {rec.get('returncode')}"
        return f"UML exited with {how}"

    def _console_lines(self) -> list[str]:
        """The console's last lines (the exit record's copy when the log is gone)."""
        try:
            with open(self.console_log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
            return [ln for ln in text.splitlines() if ln.strip()]
        except OSError:
            return list(self._exit_record().get("console_tail", []))

    def _boot_failure(self, why: str, fix: str) -> str:
        lines = self._console_lines()
        hint = explain(lines)
        summary = self._exit_summary()
        parts = [f"{self._label()}: {why}" + (f" ({summary})" if summary else "")]
        if hint:
            parts.append(f"likely cause: {hint}")
        parts.append(f"fix: {fix}" if fix else "")
        msg = "; ".join(p for p in parts if p)
        return f"{msg}; console: {' | '.join(console_digest(lines)) or '(empty)'}"

    # ---- teardown --------------------------------------------------------------------------
    def _is_relay(self, pid: int) -> bool:
        """Is ``pid`` still this node's relay (not a recycled pid)?"""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            return False
        return RELAY_MODULE.encode() in cmd and str(self.boot_dir).encode() in cmd and alive(pid)

    def shutdown(self, grace: float = 3.0) -> None:
        """Halt the guest through its agent (grace s), else SIGTERM the relay (UML cleans up),
        else SIGKILL relay and UML's process group; then remove what is left on the host."""
        pid = self.relay_pid
        if pid and self._is_relay(pid):
            if self.agent is not None and grace > 0:
                try:
                    self.agent.request("shutdown", timeout=min(grace, 2.0))
                except AgentError:
                    pass
                _wait_exit(pid, grace)
            if self._is_relay(pid):
                os.kill(pid, signal.SIGTERM)
                _wait_exit(pid, 4.0)
            if self._is_relay(pid):
                os.kill(pid, signal.SIGKILL)
                _wait_exit(pid, 2.0)
        if self.uml_pid:
            try:
                os.killpg(self.uml_pid, signal.SIGKILL)  # only if the relay could not clean up
            except (ProcessLookupError, PermissionError):
                pass
        self.close()
        mem = self.root.host_path(self.mem_dir) if self.mem_dir else None
        for p in (self.agent_socket, self.boot_dir, mem, self.sock_dir / "umid" if self.sock_dir else None):
            if p is not None:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if self.sock_dir is not None and self.sock_dir != self.state_dir:
            shutil.rmtree(self.sock_dir, ignore_errors=True)

    def __enter__(self) -> UmlNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- NodeRuntime (the rest is GuestNode's) -------------------------------------------
    def set_link(self, ifname: str, up: bool) -> None:
        """Carrier as the peer sees it (the host-side interface) and the guest NIC's state.

        Up: the host side first, then the guest NIC; when the host side was down the guest NIC
        is closed and reopened even if it was up, since a raw socket that saw its interface
        down leaves the vector driver stuck until it is reopened. Down: host side, then guest.
        The peer's own interface is never touched (a DHCP server bound to it keeps working).
        Two ioctls in the relay and two in the agent: no process start (~2 ms in all)."""
        if ifname not in self.cfg.nics:
            raise ConfigError(self._label(), "set_link", f"{ifname!r} is not one of its NICs "
                              f"({', '.join(self.cfg.nics)})")
        agent = self._agent()
        was_up = agent.request("hostlink", ifname=ifname, up=up, timeout=10.0)["was_up"]
        agent.request("link", ifname=ifname, up=up, cycle=up and not was_up, timeout=10.0)

    def kernel(self) -> KernelInfo:
        return KernelInfo("uml", self._release)

    # ---- measurements ----------------------------------------------------------------------
    def clock_offset(self, samples: int = 1) -> ClockOffset:
        """Guest minus host wall clock: the midpoint estimate of the agent round trip with the
        smallest uncertainty among ``samples`` (the channel's two directions differ by less
        than the round trip, so the error is within ``uncertainty_s``)."""
        best: ClockOffset | None = None
        for _ in range(max(1, samples)):
            t0 = time.time()
            guest = float(self._agent().request("ping", timeout=5.0)["t"])
            t1 = time.time()
            o = ClockOffset(guest - (t0 + t1) / 2, (t1 - t0) / 2)
            best = o if best is None or o.uncertainty_s < best.uncertainty_s else best
        assert best is not None
        return best

    def sync_clock(self, samples: int = 10, rounds: int = 3) -> ClockOffset:
        """Remove the guest's wall-clock offset with relative steps (``stepclock``) until what
        is left is within the measurement's uncertainty (or ``rounds`` steps were made);
        returns the offset found first."""
        first = off = self.clock_offset(samples)
        for _ in range(rounds):
            if abs(off.offset_s) <= max(off.uncertainty_s, 0.0002):
                break
            self._agent().request("stepclock", delta=-off.offset_s, timeout=5.0)
            off = self.clock_offset(samples)
        return first

    def memory(self) -> hostmem.NodeMemory:
        """Host memory of this node: PSS of its host processes plus its memory file."""
        if not self.relay_pid:
            raise TestbedError(f"{self._label()} is not running")
        return hostmem.node_memory(self.relay_pid, self.mem_dir)
