"""What the lab needs from a lab backend: nodes and links built from a plan, then removed.

A backend (mininet: named network namespaces; docker: containers) makes each node's network
namespace, pinned as ``<lab>-<node>``, and the links between them, and labels what it makes so
that ``clean`` finds exactly that, even when the lab's state file is gone. Everything above a
node's namespace (daemons, kernel nodes, the mobility agent) is the same for every backend.
"""

from __future__ import annotations

from typing import Any, Protocol

from testbed.model.addressing import LabPlan
from testbed.progress import Progress
from testbed.runtimes.base import NodeRuntime
from testbed.runtimes.kernel_nodes import KernelHost
from testbed.state import LabState


class LabBackend(Protocol):
    name: str

    def build(self, plan: LabPlan, state: LabState, progress: Progress,
              kernel_nodes: frozenset[str] = frozenset()) -> None:
        """Nodes, links, and the L3 set-up of every node not in ``kernel_nodes`` (theirs lives
        in their own kernel). Records every resource in ``state`` before creating it."""
        ...

    def runtime(self, state: LabState, node: str) -> NodeRuntime:
        """The runtime of a node whose stack is the host kernel."""
        ...

    def kernel_host(self, state: LabState, node: str) -> KernelHost:
        """Where a kernel node's emulator runs: the runtime that starts it in the node's
        namespace, and the filesystem root it and its guest see."""
        ...

    def terminal_argv(self, state: LabState, node: str, argv: list[str], tty: bool) -> list[str]:
        """The argv that runs ``argv`` on a host-kernel node with the caller's terminal
        (``testbed exec``)."""
        ...

    def info(self, state: LabState) -> dict[str, Any]:
        """What ``testbed status`` shows of the backend: ``{"nodes": {node: {...}}, ...}``."""
        ...

    def teardown(self, state: LabState, progress: Progress) -> None:
        """Remove what ``state`` records that this backend made."""
        ...

    def labs(self) -> set[str]:
        """Labs of this run root owning something this backend makes, by label (no state)."""
        ...

    def sweep(self, lab: str) -> list[str]:
        """Remove what carries ``lab``'s label, without a state file; returns what went."""
        ...
