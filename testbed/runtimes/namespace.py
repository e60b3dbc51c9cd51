"""``NamespaceNode``: a node whose stack is the host kernel, in a named netns; ``HostStack``: what
every such node does the same way, whatever starts its processes (a container node too)."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.errors import TestbedError
from testbed.host import jsonlines, netns
from testbed.host.poll import poll_until
from testbed.host.procs import alive, signal_pid, stop_pid
from testbed.runtimes.base import KernelInfo


class HostStack:
    """``NodeRuntime`` operations of a node on the host kernel in a pinned netns, whose process
    handles are host pids: waiting, signals, carrier, sysctls, Unix sockets (in the filesystem,
    reachable from here at their paths)."""

    name: str
    netns: str

    def wait(self, handle: int, timeout: float) -> int | None:
        """Exit status (0 once the pid is gone: reaped by its parent, maybe not this process),
        None while it runs."""
        if timeout <= 0:
            return None if alive(handle) else 0
        return None if poll_until(lambda: not alive(handle), timeout, interval=0.01,
                                  backoff=2, max_interval=0.1) is None else 0

    def signal(self, handle: int, sig: int) -> None:
        signal_pid(handle, sig)

    def stop(self, handle: int, *, grace: float = 2.0) -> None:
        stop_pid(handle, grace)

    def set_link(self, ifname: str, up: bool) -> None:
        netns.run(self.netns, ["ip", "link", "set", "dev", ifname, "up" if up else "down"])

    def set_sysctl(self, key: str, value: str) -> None:
        netns.run(self.netns, ["sysctl", "-q", "-w", f"{key}={value}"])

    def set_sysctls(self, values: Mapping[str, str]) -> None:
        """Several at once, in one process."""
        if values:
            netns.run(self.netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])

    def get_sysctl(self, key: str) -> str:
        return netns.run(self.netns, ["sysctl", "-n", key]).stdout.strip()

    def unix_request(self, path: str, msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        try:
            return jsonlines.request(path, msg, timeout)
        except jsonlines.RequestError as e:
            raise TestbedError(f"{self.name}: {e}") from e

    def kernel(self) -> KernelInfo:
        return KernelInfo("host", platform.release())


@dataclass
class NamespaceNode(HostStack):
    name: str
    netns: str
    own_kernel: bool = False

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return netns.run(self.netns, argv, timeout=timeout, check=check, input=input)

    def spawn(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              err_log: Path | None = None) -> int:
        full_env = None
        if env:
            import os

            full_env = {**os.environ, **env}
        return netns.spawn(self.netns, argv, log=log, env=full_env, err_log=err_log).pid

    def close(self) -> None:
        pass
