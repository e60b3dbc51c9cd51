"""The lab's nodes as runtimes: namespace nodes from the backend, kernel nodes reattached
from their state records (another process may have booted them)."""

from __future__ import annotations

import threading
from pathlib import Path

from testbed.backends.base import LabBackend
from testbed.errors import TestbedError
from testbed.model.addressing import LabPlan
from testbed.model.topology import Topology
from testbed.runtimes import kernel_nodes
from testbed.runtimes.base import KernelInfo, NodeRuntime
from testbed.runtimes.guest import GuestNode
from testbed.state import LabState, ServiceRecord


class Nodes:
    """``runtime(name)`` for every node of a lab; holds this process's kernel-node connections."""

    def __init__(self, state: LabState, topo: Topology, plan: LabPlan, backend: LabBackend) -> None:
        self.state, self.topo, self.plan, self.backend = state, topo, plan, backend
        self._kernel: dict[str, GuestNode] = {}
        self.state_lock = threading.Lock()  # this process's threads writing the state (moves)

    def runtime(self, node: str) -> NodeRuntime:
        if node not in self.plan.nodes:
            raise TestbedError(f"no node {node!r} in lab {self.state.lab!r} ({', '.join(self.plan.nodes)})")
        if node in self._kernel:
            return self._kernel[node]
        rec = self.kernel_record(node)
        if rec is None:
            return self.backend.runtime(self.state, node)
        cfg = kernel_nodes.config_for(self.topo, self.plan.nodes[node], rec["stack"], self.state.ns(node),
                                      self.state.dir / node, self.backend.kernel_host(self.state, node))
        rt = kernel_nodes.attach(rec["stack"], cfg, rec)
        self._kernel[node] = rt
        return rt

    def adopt(self, node: GuestNode) -> None:
        """A kernel node this process booted: record it and use it."""
        self._kernel[node.name] = node
        self.state.kernel_nodes.append(node.record())  # type: ignore[attr-defined]
        self.state.save()

    def kernel_record(self, node: str) -> dict | None:
        return next((r for r in self.state.kernel_nodes if r["node"] == node), None)

    def own_kernel(self, node: str) -> bool:
        return self.kernel_record(node) is not None

    def kernel_info(self, node: str) -> KernelInfo:
        """From the state record where there is one: no connection to the guest needed."""
        rec = self.kernel_record(node)
        if rec is None:
            return self.backend.runtime(self.state, node).kernel()
        return KernelInfo(rec["stack"], rec.get("release", ""), rec.get("accelerator", ""))

    def service_running(self, rec: ServiceRecord) -> bool:
        """Is a recorded daemon alive? (Its node's runtime knows where the pid lives.)"""
        return self.runtime(rec.node).wait(rec.pid, 0) is None

    def node_dir(self, node: str, service: str) -> Path:
        return self.state.dir / node / service

    def close(self) -> None:
        for rt in self._kernel.values():
            rt.close()
        self._kernel.clear()
