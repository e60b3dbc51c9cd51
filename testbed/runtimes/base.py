"""What the rest of the lab needs from a node, whatever runs it.

Services, capture, moves, traffic and the mobility agent only talk to a node through
``NodeRuntime``. A node whose stack is a kernel of its own (User-Mode Linux, a QEMU VM) is then,
for them, an ordinary node: no caller checks the node's kind or probes for methods.

Process handles are pids in the node's own process space: host pids for a namespace node,
guest pids for a kernel node (``own_kernel``), which end with that kernel.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

Stack = Literal["host", "uml", "qemu"]


@dataclass(frozen=True)
class KernelInfo:
    """What kernel carries a node's packets (``testbed status`` and the verdict's ``lab`` block)."""

    stack: Stack
    release: str  # `uname -r` as the node sees it
    accelerator: str = ""  # qemu: "kvm" or "tcg"; empty for host and uml

    def to_dict(self) -> dict[str, str]:
        return {"stack": self.stack, "kernel": self.release, "accelerator": self.accelerator}


@runtime_checkable
class NodeRuntime(Protocol):
    """A place where commands run with the node's network stack."""

    name: str  # lab node name, e.g. "mn"
    netns: str  # named netns on the host holding the node's links (and its emulator, if any)
    own_kernel: bool  # True when pids are the node's own kernel's (UML, QEMU)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion in the node's stack, capturing text output."""
        ...

    def spawn(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              err_log: Path | None = None) -> int:
        """Start a long-running process in its own session; its output goes to ``log``, and its
        standard error too unless ``err_log`` is given (then that file gets it)."""
        ...

    def wait(self, handle: int, timeout: float) -> int | None:
        """Exit status of a spawned process, or None while it still runs after ``timeout`` s.
        A process this runtime cannot see (gone, or reaped elsewhere) reads as exit status 0."""
        ...

    def signal(self, handle: int, sig: int) -> None:
        """Send a signal to a spawned process (nothing if it is gone)."""
        ...

    def stop(self, handle: int, *, grace: float = 2.0) -> None:
        """Stop a spawned process: TERM, then KILL after ``grace`` seconds."""
        ...

    def set_link(self, ifname: str, up: bool) -> None:
        """Carrier on/off as the node and its peer see it (radio association, cable plug)."""
        ...

    def set_sysctl(self, key: str, value: str) -> None:
        """Write a sysctl in the node's stack (``net.sctp.addip_enable``)."""
        ...

    def set_sysctls(self, values: Mapping[str, str]) -> None:
        """Write several at once (one process at most)."""
        ...

    def get_sysctl(self, key: str) -> str:
        ...

    def unix_request(self, path: str, msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """One JSON line to a Unix socket inside the node, its one-line JSON reply back."""
        ...

    def kernel(self) -> KernelInfo:
        ...

    def close(self) -> None:
        """Release this process's connections to the node; the node keeps running."""
        ...
