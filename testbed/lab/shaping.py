"""Path quality in the running lab: each shaped interface's egress, by what its kernel has.

Where the node's kernel has netem (a UML or QEMU node's own kernel loads ``sch_netem`` on
demand; every node under ``--machine uml``), one ``netem`` qdisc gives delay, jitter, loss and
rate. The host kernel here has tbf/htb and nftables but no netem: there the rate is a ``tbf``
qdisc and the loss an nftables rule on the interface's egress hook dropping that share of
packets at random; delay and jitter cannot be had and are refused before anything is built.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache

from testbed.errors import ConfigError, TestbedError
from testbed.model.addressing import LabPlan
from testbed.model.shaping import ShapedIface, shaped
from testbed.model.topology import Shaping
from testbed.runtimes.base import NodeRuntime

TABLE = "testbed_shape"
_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}


@cache
def host_has_netem() -> bool:
    """Can this kernel make a netem qdisc? Probed in a throwaway network namespace."""
    cp = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                         "delay", "1ms"], capture_output=True, text=True, check=False, timeout=10)
    return cp.returncode == 0


def check(plan: LabPlan, kernel_nodes: frozenset[str], source: str) -> None:
    """Refuse delay/jitter on a node whose kernel has no netem, before anything is made (inside
    a UML lab machine the probe finds the machine's netem)."""
    for s in shaped(plan):
        if s.shape.needs_netem and s.node not in kernel_nodes and not host_has_netem():
            raise ConfigError(source, s.field, f"delay/jitter on {s.node} ({s.ifname}) needs netem, "
                              "which the host kernel lacks (CONFIG_NET_SCH_NETEM)",
                              "keep rate and loss only, give the node a kernel of its own "
                              "(sctp: {stack: uml}), or run the lab with --machine uml")


def bits_per_second(rate: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", rate)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"rate {rate!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def netem_argv(ifname: str, shape: Shaping) -> list[str]:
    argv = ["tc", "qdisc", "replace", "dev", ifname, "root", "netem"]
    if shape.needs_netem:
        argv += ["delay", f"{shape.delay_ms:g}ms"] + ([f"{shape.jitter_ms:g}ms"] if shape.jitter_ms else [])
    if shape.loss:
        argv += ["loss", f"{shape.loss:g}%"]
    if shape.rate:
        argv += ["rate", shape.rate]
    return argv


def tbf_argv(ifname: str, rate: str) -> list[str]:
    # the bucket holds at least 20 ms at the rate and 16 full frames (tbf needs >= rate/HZ)
    burst = max(bits_per_second(rate) // 8 // 50, 16 * 1514)
    return ["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", rate, "burst", str(burst),
            "latency", "100ms"]


def loss_rules(ifname: str, loss: float) -> str:
    """nft commands: drop ``loss`` percent of ``ifname``'s egress at random (netdev egress hook)."""
    chain = f"egress_{ifname.replace('-', '_')}"
    hook = f'type filter hook egress device "{ifname}" priority 0;'
    return (f"add table netdev {TABLE}\n"
            f"add chain netdev {TABLE} {chain} {{ {hook} }}\n"
            f"add rule netdev {TABLE} {chain} numgen random mod 10000 < {round(loss * 100)} drop\n")


def apply(rt: NodeRuntime, s: ShapedIface, netem: bool) -> None:
    if netem:
        rt.run(netem_argv(s.ifname, s.shape))
        return
    if s.shape.needs_netem:  # check() refused it already; a guard for callers that skipped it
        raise TestbedError(f"{s.field}: {s.node} has no netem for delay/jitter")
    if s.shape.rate:
        rt.run(tbf_argv(s.ifname, s.shape.rate))
    if s.shape.loss:
        rt.run(["nft", "-f", "-"], input=loss_rules(s.ifname, s.shape.loss))


def apply_all(plan: LabPlan, runtime, kernel_nodes: frozenset[str]) -> None:
    """Shape every interface the topology asks for; ``runtime(node)`` gives its NodeRuntime."""
    for s in shaped(plan):
        apply(runtime(s.node), s, netem=s.node in kernel_nodes or host_has_netem())
