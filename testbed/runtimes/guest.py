"""What every kernel node (UML, QEMU) shares: its configuration, and the ``NodeRuntime``
operations carried by the guest agent (``testbed.runtimes.guest_agent``) inside it.

A kernel node runs its own kernel inside the node's named netns on the host; the lab's links
reach the guest's NICs there. The guest sees its root read-only (the host's, where it runs
this venv's python, or a container image's, with the image's python) and the node's run
directory read-write at the same path, so logs, pid files and agent state written in the guest
are read on the host directly. Services start Python modules with the host's interpreter
(``sys.executable``); in an argv for the guest it stands for the guest's (``python``).
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import CommandError, ConfigError, TestbedError
from testbed.runtimes.channels import GuestAgentClient

SCTP_SYSCTLS = ("addip_enable", "auth_enable", "addip_noauth_enable", "default_auto_asconf")
# how long a guest may take, beyond the work a request asks of it, before its answer counts as
# lost: a User-Mode Linux guest on 2 cores at a load average of 5-8 was seen silent for 5-20 s
GUEST_SLACK = 30.0


class GuestBootError(TestbedError):
    """The emulator exited or the guest agent never answered; the message has the console tail."""


@dataclass
class GuestConfig:
    """Everything both kinds of kernel node need (inert data)."""

    name: str  # lab node name
    netns: str  # existing named netns holding the node's host-side interfaces
    state_dir: Path  # writable, shared into the guest at the same path
    nics: Sequence[str] = ()  # host-side ifnames in netns; the guest NIC takes the same name
    sctp: Mapping[str, int] = field(default_factory=lambda: {
        "addip_enable": 1, "auth_enable": 1, "addip_noauth_enable": 0, "default_auto_asconf": 0})
    sysctls: Mapping[str, str] = field(default_factory=dict)  # more, e.g. net.ipv4.ip_forward
    rw_dirs: Sequence[Path] = ()  # more writable shares (same path in the guest)
    memory_mb: int = 192
    boot_timeout: float = 60.0
    python: str = sys.executable  # the testbed package's interpreter in the guest's root

    def all_sysctls(self) -> dict[str, str]:
        """net.sctp.* is per netns and starts at the kernel defaults: set every one explicitly."""
        return {**{f"net.sctp.{k}": str(v) for k, v in self.sctp.items()}, **self.sysctls}

    def shares(self) -> list[Path]:
        return [self.state_dir.resolve(), *(Path(p).resolve() for p in self.rw_dirs)]


class GuestNode:
    """``NodeRuntime`` operations through the guest agent; subclasses boot and link the guest."""

    own_kernel = True

    def __init__(self, cfg: GuestConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.netns = cfg.netns
        self.state_dir = cfg.state_dir.resolve()
        self.agent: GuestAgentClient | None = None
        self._release = ""
        self.boot_seconds = 0.0

    # ---- the agent ------------------------------------------------------------------------
    def _agent(self) -> GuestAgentClient:
        if self.agent is None:
            raise TestbedError(f"kernel node {self.name} is not running (start it first)")
        return self.agent

    def close(self) -> None:
        """Drop this process's agent connection; the node keeps running."""
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    # ---- NodeRuntime ----------------------------------------------------------------------
    def guest_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as the guest runs it: the host's interpreter becomes the guest's."""
        return [self.cfg.python if a == sys.executable else a for a in argv]

    def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        # the agent enforces ``timeout``; the host waits a little longer for the reply
        r = self._agent().request(
            "run", argv=self.guest_argv(argv), timeout=timeout + GUEST_SLACK, run_timeout=timeout,
            input=input or "")
        cp = subprocess.CompletedProcess(list(argv), r["rc"], r["stdout"], r["stderr"])
        if r.get("timeout"):
            raise CommandError([f"[{self.name}]", *argv], -1, f"timed out after {timeout:g} s")
        if check and cp.returncode != 0:
            raise CommandError([f"[{self.name}]", *argv], cp.returncode, cp.stderr or cp.stdout)
        return cp

    def spawn(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              err_log: Path | None = None) -> int:
        """Start a guest process; ``log`` (and ``err_log``) must lie in a writable share (the
        state dir, rw_dirs)."""
        logs = [Path(p).resolve() for p in (log, err_log) if p is not None]
        for p in logs:
            if not any(p.is_relative_to(s) for s in self.cfg.shares()):
                raise ConfigError(f"kernel node {self.name}", "spawn log", f"{p} is not in a writable "
                                  "share", f"put it under {self.state_dir}")
            p.parent.mkdir(parents=True, exist_ok=True)
        extra = {"err_log": str(logs[1])} if err_log is not None else {}
        return int(self._agent().request("spawn", argv=self.guest_argv(argv), log=str(logs[0]),
                                         env=dict(env or {}), **extra)["pid"])

    def wait(self, handle: int, timeout: float) -> int | None:
        rc = self._agent().request("wait", pid=handle, wait_s=timeout, timeout=timeout + GUEST_SLACK)
        return rc["rc"] if rc.get("known", True) else 0

    def signal(self, handle: int, sig: int) -> None:
        self._agent().request("kill", pid=handle, sig=int(sig))

    def stop(self, handle: int, *, grace: float = 2.0) -> None:
        agent = self._agent()
        agent.request("kill", pid=handle, sig=int(signal.SIGTERM))
        # the request timeouts leave room beyond the wait itself for a guest starved of CPU by
        # other labs on the host (an answer 7 s late was seen with four UML guests on 2 cores)
        if agent.request("wait", pid=handle, wait_s=grace, timeout=grace + 15)["rc"] is None:
            agent.request("kill", pid=handle, sig=int(signal.SIGKILL))
            agent.request("wait", pid=handle, wait_s=2.0, timeout=20.0)

    def unix_request(self, path: str, msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """The guest's Unix sockets are in its own tmpfs: the agent relays one request."""
        r = self._agent().request("unix", path=path, msg=msg, wait_s=timeout, timeout=timeout + GUEST_SLACK)
        return r["reply"]

    def set_sysctl(self, key: str, value: str) -> None:
        """Written straight to /proc/sys by the agent: no process start in the guest."""
        self._agent().request("write", path="/proc/sys/" + key.replace(".", "/"), data=str(value))

    def set_sysctls(self, values: Mapping[str, str]) -> None:
        for k, v in values.items():
            self.set_sysctl(k, v)

    def get_sysctl(self, key: str) -> str:
        return self.read_file("/proc/sys/" + key.replace(".", "/")).decode().strip()

    def read_file(self, path: str, max_bytes: int = 1 << 20) -> bytes:
        return base64.b64decode(self._agent().request("read", path=path, max=max_bytes)["data"])

    def apply_sysctls(self) -> None:
        for k, v in self.cfg.all_sysctls().items():
            self.set_sysctl(k, v)

    def sctp_sysctls(self) -> dict[str, int]:
        """The guest's live net.sctp values that matter for ASCONF (for `testbed status`)."""
        return {k: int(self.get_sysctl(f"net.sctp.{k}")) for k in SCTP_SYSCTLS}
