"""``NetnsNode``: the runtime of a node whose stack is the host kernel in a named netns."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.backends import netns


@dataclass
class NetnsNode:
    name: str
    netns: str

    def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return netns.run(self.netns, argv, timeout=timeout, check=check)

    def spawn(self, argv: Sequence[str], *, log: Path) -> int:
        return netns.spawn(self.netns, argv, log=log).pid

    def stop(self, handle: int, *, grace: float = 2.0) -> None:
        stop_pid(handle, grace)

    def set_link(self, ifname: str, up: bool) -> None:
        netns.run(self.netns, ["ip", "link", "set", "dev", ifname, "up" if up else "down"])


def stop_pid(pid: int, grace: float = 2.0) -> None:
    """TERM the process group led by ``pid`` (spawned in its own session), then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.01)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (reaps it if it is our zombie child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
