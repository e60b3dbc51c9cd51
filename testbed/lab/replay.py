"""A run's link traces on the lab: which networks replay what, the replayers started on every
node with a traced interface (one each, resident), and stopped again, which restores the
static shaping; their records of what was applied and how late.

Traces come from the topology (``access_networks.*.replay``) or, over those, from the
scenario (``networks``). A trace with a delay on a node without netem is refused before
anything starts (``model.replay.check_netem``), as the build refuses a static one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.errors import ConfigError
from testbed.host import jsonlines
from testbed.lab import shaping
from testbed.lab.nodes import Nodes
from testbed.lab.wiring import Wiring
from testbed.model import replay, trace
from testbed.model.topology import TraceSource
from testbed.runtimes import kernel_nodes
from testbed.services.base import ServiceRecord
from testbed.services.replayer import Replayer

LEAD_S = 0.05  # from the replayers' start signal to the plan's time 0 (a signal reaches a
LEAD_KERNEL_S = 0.3  # namespace process at once, a kernel node's through its guest agent)


def sources(topo_networks: Mapping[str, TraceSource | None], scenario: Mapping[str, TraceSource],
            source: str) -> dict[str, TraceSource]:
    """The trace of each access network for a run: the scenario's over the topology's."""
    out = {ar: t for ar, t in topo_networks.items() if t is not None}
    for ar, t in scenario.items():
        if ar not in topo_networks:
            raise ConfigError(source, f"networks.{ar}", f"{ar!r} serves no access network of the "
                              "topology", f"name an access router ({', '.join(topo_networks)})")
        out[ar] = t
    return out


def netem_of(topo) -> Callable[[str], bool]:
    """Does ``node``'s kernel have netem: a kernel of its own, or the host's (a lab machine's)."""
    own = kernel_nodes.kernel_nodes(topo)
    return lambda node: node in own or shaping.host_has_netem()


def check(topo, specs: Mapping[str, TraceSource]) -> dict[str, trace.NetworkTrace]:
    """Parse the traces (a bad file fails naming its line) and check that each node can play
    its part; before anything is built."""
    from testbed.model.addressing import plan

    traces = {ar: trace.network_trace(s, trace.read_file) for ar, s in specs.items()}
    replay.check_netem(traces, plan(topo), netem_of(topo))
    return traces


@dataclass
class TraceReplay:
    nodes: Nodes
    wiring: Wiring
    traces: dict[str, trace.NetworkTrace]
    seed: int = 1
    records: list[dict[str, Any]] = field(default_factory=list)
    start_wall: float | None = None
    stop_wall: float | None = None
    _running: list[ServiceRecord] = field(default_factory=list)

    @classmethod
    def of(cls, nodes: Nodes, wiring: Wiring, specs: Mapping[str, TraceSource], seed: int) -> TraceReplay:
        """Parse the traces (a bad file fails here, naming its line) and check them against the
        lab's kernels, before anything starts."""
        return cls(nodes, wiring, check(nodes.topo, specs), seed)

    def netem(self, node: str) -> bool:
        return netem_of(self.nodes.topo)(node)

    def plans(self) -> dict[str, replay.NodeReplay]:
        return replay.plan(self.nodes.plan, self.traces, self.netem, self.seed,
                           lambda mn: str(self.wiring.for_mobile(mn).agent_socket))

    def start(self) -> float:
        """Launch every node's replayer, wait until each is ready, then start them all at one
        wall time, which is returned: the traces' 0."""
        plans = self.plans()
        lead = LEAD_KERNEL_S if any(self.nodes.own_kernel(n) for n in plans) else LEAD_S
        daemons = [Replayer(self.nodes.runtime(n), self.nodes.node_dir(n, "replayer"), p.to_json())
                   for n, p in plans.items()]
        launched = []
        for d in daemons:
            rec = d.launch()
            self.nodes.state.add_service(rec)
            self._running.append(rec)
            launched.append((d, rec))
        for d, rec in launched:
            d.settle(rec)
        self.start_wall = time.time() + lead
        for d, rec in launched:
            d.go(rec.pid, self.start_wall)
        return self.start_wall

    def stop(self) -> list[dict[str, Any]]:
        """Stop the replayers (each restores its interfaces' static shape) and read back what
        they applied, each record naming its node."""
        self.stop_wall = time.time()
        for rec in self._running:
            self.nodes.runtime(rec.node).stop(rec.pid, grace=5.0)
        state = self.nodes.state
        pids = {r.pid for r in self._running}
        state.services = [s for s in state.services if not (s["service"] == "replayer" and s["pid"] in pids)]
        state.save()
        for rec in self._running:
            path = self.nodes.node_dir(rec.node, "replayer") / "replay.jsonl"
            self.records += [{**r, "node": rec.node} for r in jsonlines.read(path)]
        self._running = []
        return self.records


def lateness(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How late the changes were applied, in ms: count, p50, p99, max (shaping and metrics)."""
    out: dict[str, Any] = {}
    for op in ("apply", "metric"):
        late = sorted(r["late_ms"] for r in records if r.get("op") == op)
        if not late:
            continue
        out[op] = {"count": len(late), "p50_ms": round(statistics.median(late), 3),
                   "p99_ms": round(late[min(len(late) - 1, int(0.99 * len(late)))], 3),
                   "max_ms": round(late[-1], 3)}
    return out
