"""What each node replays of the run's traces (pure data, no I/O): per shaped interface the
quality from each time on, and for a mobile node the §3 metric updates its agent gets.

Times are seconds from the run's replay start. Each change carries the whole quality of its
interface (rate, delay, loss), so a replayer applies it without knowing what came before; a
column the trace lacks keeps the interface's static shape (``shape:``).

Metrics go to the agent as few as the policy needs: the signal in whole dB, the loss in whole
percent, the rate when it moved by a tenth; at most one update per network every
``METRIC_GAP_S`` (what changed meanwhile is sent together, the latest value of each), so a
trace cannot fill the agent's event queue, which drops its oldest event when full
(mobility.agent), whatever that was.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from testbed.errors import ConfigError
from testbed.model.addressing import LabPlan, ifname
from testbed.model.topology import Shaping
from testbed.model.trace import NetworkTrace, Series

METRIC_GAP_S = 0.1  # at most 10 metric events per second per network
RATE_STEP = 0.1  # a rate metric is sent when it moved by this share of the last one sent


@dataclass(frozen=True)
class Quality:
    """An interface's egress quality; ``rate_kbit`` None: no rate limit; 0: nothing passes."""

    rate_kbit: float | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0

    @classmethod
    def of(cls, shape: Shaping | None) -> Quality:
        if shape is None:
            return cls()
        return cls(shape.rate_kbit, shape.delay_ms, shape.jitter_ms, shape.loss)


@dataclass(frozen=True)
class Change:
    t: float
    quality: Quality


@dataclass(frozen=True)
class IfaceReplay:
    """One direction of one network, on the node whose egress it is."""

    node: str
    ifname: str
    network: str  # the access router
    direction: str  # down | up
    netem: bool  # the node's kernel has netem (else tbf for the rate, nftables for the loss)
    base: Quality  # the static shape, restored at the end
    changes: tuple[Change, ...]
    loop_s: float | None = None


@dataclass(frozen=True)
class MetricUpdate:
    t: float
    ifname: str
    network: str
    values: Mapping[str, float]


@dataclass(frozen=True)
class NodeReplay:
    node: str
    ifaces: tuple[IfaceReplay, ...] = ()
    metrics: tuple[MetricUpdate, ...] = ()
    agent_socket: str = ""  # where a mobile node's agent takes set-metrics
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NodeReplay:
        d = json.loads(text)
        ifaces = tuple(IfaceReplay(**{**i, "base": Quality(**i["base"]),
                                      "changes": tuple(Change(c["t"], Quality(**c["quality"]))
                                                       for c in i["changes"])})
                       for i in d["ifaces"])
        metrics = tuple(MetricUpdate(**m) for m in d["metrics"])
        return cls(d["node"], ifaces, metrics, d["agent_socket"], d.get("extra", {}))


def changes(series: Series, base: Quality) -> tuple[Change, ...]:
    """The series as whole qualities over ``base`` (an absent value keeps the one before)."""
    out: list[Change] = []
    q = base
    for s in series.steps:
        q = Quality(s.rate_kbit if s.rate_kbit is not None else q.rate_kbit,
                    s.delay_ms if s.delay_ms is not None else q.delay_ms, q.jitter_ms,
                    s.loss if s.loss is not None else q.loss)
        if out and out[-1].quality == q:
            continue
        out.append(Change(s.t, q))
    return tuple(out)


def check_netem(traces: Mapping[str, NetworkTrace], plan: LabPlan, netem: Callable[[str], bool]) -> None:
    """A trace with delay on an interface whose node has no netem fails here, before anything."""
    topo = plan.topology
    for ar, tr in traces.items():
        for mn in topo.mobiles:
            for node, series in ((ar, tr.down), (mn, tr.up)):
                step = series.first_delay()
                if step is not None and not netem(node):
                    raise ConfigError(series.source, f"line {step.line}" if step.line else "-",
                                      f"a delay on {node} ({ifname(node, mn if node == ar else ar)}) "
                                      "needs netem, which the host kernel lacks (CONFIG_NET_SCH_NETEM)",
                                      "drop the delay column, give the node a kernel of its own "
                                      "(sctp: {stack: uml}), or run the lab with --machine uml")


def plan(plan: LabPlan, traces: Mapping[str, NetworkTrace], netem: Callable[[str], bool], seed: int,
         agent_socket: Callable[[str], str]) -> dict[str, NodeReplay]:
    """Every node's replay: the access router's ports toward each MN (downlink), each MN's
    interface toward the router (uplink) and each MN's metric updates."""
    topo = plan.topology
    ifaces: dict[str, list[IfaceReplay]] = {}
    metrics: dict[str, list[MetricUpdate]] = {}
    for acc in topo.access_networks:
        tr = traces.get(acc.router)
        if tr is None:
            continue
        base = Quality.of(acc.shape)
        signal = noisy_signal(tr, seed, acc.router)
        for mn in topo.mobiles:
            ends = ((acc.router, mn, "down", tr.down), (mn, acc.router, "up", tr.up))
            for node, peer, direction, series in ends:
                ifaces.setdefault(node, []).append(IfaceReplay(
                    node, ifname(node, peer), acc.router, direction, netem(node), base,
                    changes(series, base), series.loop_s))
            metrics.setdefault(mn, []).extend(metric_updates(ifname(mn, acc.router), acc.router, signal, tr))
    out = {}
    for node in dict.fromkeys([*ifaces, *metrics]):
        ms = tuple(sorted(metrics.get(node, []), key=lambda m: m.t))
        out[node] = NodeReplay(node, tuple(ifaces.get(node, [])), ms, agent_socket(node) if ms else "")
    return out


def noisy_signal(tr: NetworkTrace, seed: int, network: str) -> list[tuple[float, float]]:
    """The signal as replayed: the file's, with Gaussian noise of ``noise_db`` drawn from the
    scenario's seed (one stream per network, so adding a network changes no other's noise)."""
    rng = random.Random(f"{seed}/{network}")
    return [(p.t, p.dbm + (rng.gauss(0.0, tr.noise_db) if tr.noise_db else 0.0)) for p in tr.signal]


def metric_updates(ifname_: str, network: str, signal: list[tuple[float, float]],
                   tr: NetworkTrace) -> list[MetricUpdate]:
    """The §3 metric events of one network (see the module docstring for the steps)."""
    cands: list[tuple[float, dict[str, float]]] = [(t, {"signal": float(round(v))}) for t, v in signal]
    if tr.down.loop_s is None:  # a looping (mahimahi) trace changes its rate every 100 ms: not sent
        q_loss: float | None = None
        q_rate: float | None = None
        for s in tr.down.steps:
            vals: dict[str, float] = {}
            if s.loss is not None and s.loss != q_loss:
                q_loss = s.loss
                vals["loss"] = float(round(s.loss))
            if s.rate_kbit is not None and s.rate_kbit != q_rate:
                q_rate = s.rate_kbit
                vals["rate_kbit"] = float(round(s.rate_kbit))
            if vals:
                cands.append((s.t, vals))
    cands.sort(key=lambda c: c[0])
    out: list[MetricUpdate] = []
    sent: dict[str, float] = {}
    pending: dict[str, float] = {}
    ready: float | None = None  # when the oldest pending change came
    last = -math.inf

    def flush(at: float) -> None:
        nonlocal pending, ready, last
        out.append(MetricUpdate(round(at, 6), ifname_, network, dict(sorted(pending.items()))))
        sent.update(pending)
        pending, ready, last = {}, None, at

    for t, vals in cands:
        if pending and ready is not None and max(ready, last + METRIC_GAP_S) < t:
            flush(max(ready, last + METRIC_GAP_S))
        for name, v in vals.items():
            if _same(name, sent.get(name), v):
                pending.pop(name, None)
            else:
                pending[name] = v
        if pending and ready is None:
            ready = t
        elif not pending:
            ready = None
    if pending and ready is not None:
        flush(max(ready, last + METRIC_GAP_S))
    return out


def _same(name: str, old: float | None, new: float) -> bool:
    if old is None:
        return False
    if name == "rate_kbit":
        return (old == 0) == (new == 0) and abs(new - old) < RATE_STEP * max(old, 1.0)
    return old == new
