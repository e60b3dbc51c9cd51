"""Kernel nodes in a lab: which stack a node's ``sctp:`` setting gets, and booting them.

``stack: auto`` picks the host kernel when it opens an SCTP socket, else User-Mode Linux when
it is installed, else QEMU. ``vm`` is the older name of ``qemu``. The backend builds a kernel
node's namespace and links like any other, and says where its kernel runs (``KernelHost``: the
runtime that starts the kernel's supervisor, and the filesystem root it sees: the host's for a
namespace, the image's for a container); here its kernel is booted there, with one guest NIC
per link, and the node's addresses, routes and sysctls are set in the guest.
From then on its ``NodeRuntime`` is the guest, so services, capture and moves treat it as any
node.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from testbed.errors import ConfigError
from testbed.model.addressing import NodePlan
from testbed.model.topology import SctpSettings, Topology
from testbed.runtimes.base import NodeRuntime
from testbed.runtimes.channels import AgentError
from testbed.runtimes.guest import SCTP_SYSCTLS, GuestConfig, GuestNode
from testbed.runtimes.node_root import NodeRoot

IPPROTO_SCTP = 132
KERNEL_STACKS = ("uml", "qemu")


def host_has_sctp() -> bool:
    """Can the host kernel open an SCTP socket? (errno 93 where CONFIG_IP_SCTP is off.)"""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP).close()
        return True
    except OSError:
        return False


def uml_available() -> bool:
    from testbed.runtimes import uml_kernels

    return uml_kernels.available()


def stack_of(spec: SctpSettings) -> str:
    """"host", "uml", "qemu", "usrsctp" or "none" for a node's SCTP setting."""
    if spec.stack == "usrsctp" and host_has_sctp():
        raise ConfigError("topology", "sctp.stack", "usrsctp runs over raw IP, and this host's "
                          "kernel has SCTP, which would answer the same packets itself",
                          "run the correspondent on stack: uml or qemu here")
    if spec.stack == "auto":
        if host_has_sctp():
            return "host"
        return "uml" if uml_available() else "qemu"
    if spec.stack == "host" and not host_has_sctp():
        raise ConfigError("topology", "sctp.stack", "host asked, but the host kernel has no SCTP",
                          "use stack: uml, qemu or auto")
    return "qemu" if spec.stack == "vm" else spec.stack


class KernelNode(Protocol):
    """What the lab does with a kernel node beyond ``NodeRuntime``: boot, record, reattach."""

    name: str
    boot_seconds: float

    def start(self) -> Any: ...
    def shutdown(self, grace: float = 3.0) -> None: ...
    def record(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class KernelHost:
    """Where a node's kernel runs: the runtime that starts its supervisor (in the node's netns
    and filesystem) and that filesystem's root."""

    launcher: NodeRuntime | None = None  # None: ``ip netns exec`` on the host
    root: NodeRoot = NodeRoot()


@dataclass(frozen=True)
class KernelKind:
    """How to configure, boot and reattach one kind of kernel node."""

    config: Callable[[GuestConfig, str | None, KernelHost], GuestConfig]  # base, kernel spec, host
    boot: Callable[[GuestConfig], GuestNode]
    attach: Callable[[GuestConfig, dict[str, Any]], GuestNode]


def _qemu_kind() -> KernelKind:
    from testbed.runtimes import accel, kernels
    from testbed.runtimes.qemu import QemuConfig, QemuNode

    def config(base: GuestConfig, spec: str | None, host: KernelHost) -> GuestConfig:
        if not host.root.is_host:
            raise ConfigError(f"node {base.name}", "sctp.stack", "QEMU nodes run on namespace "
                              "nodes only (not in a container)", "use stack: uml, or backend: mininet")
        k = kernels.resolve(spec)
        return QemuConfig(**vars(base), kernel=k, accel=accel.choose(k))

    return KernelKind(config, QemuNode, QemuNode.attach)  # type: ignore[arg-type]


def _uml_kind() -> KernelKind:
    from testbed.runtimes import uml_kernels
    from testbed.runtimes.uml import UmlConfig, UmlNode

    def config(base: GuestConfig, spec: str | None, host: KernelHost) -> GuestConfig:
        return UmlConfig(**vars(base), kernel=uml_kernels.resolve(spec, root=host.root),
                         root=host.root, launcher=host.launcher)

    return KernelKind(config, UmlNode, UmlNode.attach)  # type: ignore[arg-type]


KINDS: dict[str, Callable[[], KernelKind]] = {"qemu": _qemu_kind, "uml": _uml_kind}


def kernel_nodes(topo: Topology) -> dict[str, str]:
    """Node name -> "uml" | "qemu" for every node that runs a kernel of its own."""
    out = {}
    for n, spec in topo.nodes.items():
        stack = stack_of(spec.sctp)
        if stack in KERNEL_STACKS:
            out[n] = stack
    return out


def sctp_sysctls(spec: SctpSettings) -> dict[str, str]:
    """A node's net.sctp settings: per network namespace and never inherited, so every node
    with SCTP gets each one set explicitly (a new netns starts at the kernel's defaults, which
    have ASCONF and AUTH off)."""
    return {f"net.sctp.{k}": str(v) for k, v in sctp_settings(spec).items()}


def sctp_settings(spec: SctpSettings) -> dict[str, int]:
    """net.sctp.* name -> value; the UDP encapsulation ports only where asked for (RFC 6951:
    the node listens on ``udp_port`` and sends every packet to that port)."""
    out = {k: int(getattr(spec, k)) for k in SCTP_SYSCTLS}
    if spec.udp_port:
        out.update(udp_port=spec.udp_port, encap_port=spec.udp_port)
    return out


def config_for(topo: Topology, node: NodePlan, stack: str, netns: str, node_dir: Path,
               host: KernelHost | None = None) -> GuestConfig:
    """The node's guest configuration; resolving its kernel (in ``host``'s root) fails here,
    before anything boots."""
    spec = topo.nodes[node.name].sctp
    host = host or KernelHost()
    base = GuestConfig(
        name=node.name,
        netns=netns,
        state_dir=node_dir / "kernel",
        nics=[i.ifname for i in node.ifaces],
        sctp=sctp_settings(spec),
        rw_dirs=[node_dir],  # every service of the node writes under it, inside the guest too
        python=host.root.python,
    )
    return KINDS[stack]().config(base, spec.kernel, host)


def attach(stack: str, cfg: GuestConfig, record: dict[str, Any]) -> GuestNode:
    return KINDS[stack]().attach(cfg, record)


def boot_all(
    stacks: dict[str, str], configs: list[GuestConfig]
) -> tuple[list[GuestNode], list[BaseException]]:
    """Boot kernel nodes in parallel; returns the booted ones and the errors."""
    booted: list[GuestNode] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(cfg: GuestConfig) -> None:
        node = KINDS[stacks[cfg.name]]().boot(cfg)
        try:
            node.start()  # type: ignore[attr-defined]
            with lock:
                booted.append(node)
        except BaseException as e:  # noqa: BLE001 - collected, re-raised by the caller
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=one, args=(c,), name=f"boot-{c.name}") for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return booted, errors


def configure_guest(node: GuestNode, plan: NodePlan, mobile: bool, optimistic_dad: bool) -> None:
    """The node's L3 plan, applied inside the guest (one ``ip -batch`` and direct sysctls).

    The mobile node's access interfaces stay down: the lab attaches it with ``set_link``, which
    raises the host side first (a UML vector NIC opened on a downed host interface stays dead).
    """
    cmds = []
    for i in plan.ifaces:
        for a in i.addresses:
            cmds.append(f"addr add {a} dev {i.ifname}" + (" nodad" if a.version == 6 else ""))
        if not (mobile and i.access_router):
            cmds.append(f"link set dev {i.ifname} up")
    cmds += [f"route add {r.dst} via {r.via} dev {r.dev}" for r in plan.routes]
    for i in plan.ifaces:
        base = f"net.ipv6.conf.{i.ifname}"
        if mobile:
            node.set_sysctl(f"{base}.router_solicitation_delay", "0")
            node.set_sysctl(f"{base}.accept_ra", "2")
            if optimistic_dad:
                _usable_at_once(node, base)
        else:
            node.set_sysctl(f"{base}.accept_ra", "0")
            node.set_sysctl(f"{base}.accept_dad", "0")
    if plan.forwards:
        node.set_sysctl("net.ipv4.ip_forward", "1")
        node.set_sysctl("net.ipv6.conf.all.forwarding", "1")
    node.run(["ip", "-batch", "-"], input="\n".join(cmds) + "\n")


def _usable_at_once(node: GuestNode, base: str) -> None:
    """A SLAAC address usable at once: optimistic DAD (RFC 4429) where the kernel has it;
    Debian's UML build lacks CONFIG_IPV6_OPTIMISTIC_DAD (no such sysctl), so there DAD is
    skipped instead (the lab's access networks hold no duplicate)."""
    try:
        node.set_sysctl(f"{base}.optimistic_dad", "1")
        node.set_sysctl(f"{base}.use_optimistic", "1")
    except AgentError:
        node.set_sysctl(f"{base}.accept_dad", "0")
