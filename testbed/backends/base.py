"""What the rest of the lab needs from a node, whatever runs it (namespace, VM, container).

Services, capture and the mobility agent only talk to a node through ``NodeRuntime``, so a node
whose stack is a kernel under test in a VM is, for them, an ordinary node.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class NodeRuntime(Protocol):
    """A place where commands run with the node's network stack."""

    name: str  # lab node name, e.g. "mn"
    netns: str  # named netns on the host holding the node's links (for VM nodes: QEMU and TAPs)

    def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion in the node's stack, capturing text output."""
        ...

    def spawn(self, argv: Sequence[str], *, log: Path) -> int:
        """Start a long-running process in the node's stack; return an id usable by ``stop``."""
        ...

    def stop(self, handle: int, *, grace: float = 2.0) -> None:
        """Stop a process started with ``spawn`` (TERM, then KILL after ``grace``)."""
        ...

    def set_link(self, ifname: str, up: bool) -> None:
        """Carrier on/off as the node sees it (radio association, cable plug)."""
        ...
