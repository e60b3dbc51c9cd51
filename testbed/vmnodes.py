"""Nodes whose network stack is a kernel under test in a VM (``sctp: {stack: vm}``).

The Mininet backend builds such a node's namespace and links like any other; here QEMU is
booted inside that namespace with one guest NIC per link (bridged to the link's veth end), and
the node's addresses, routes and sysctls are set inside the guest. From then on the node's
``NodeRuntime`` is the ``VmNode``, so services, capture and moves treat it as any node.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from testbed.errors import TestbedError
from testbed.model.addressing import NodePlan
from testbed.model.topology import SctpSettings, Topology
from testbed.sctp import kernel as kernels
from testbed.sctp.vm import VmConfig, VmNode, mac_for

IPPROTO_SCTP = 132


def host_has_sctp() -> bool:
    """Can the host kernel open an SCTP socket? (errno 93 here: no CONFIG_IP_SCTP)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP).close()
        return True
    except OSError:
        return False


def stack_of(spec: SctpSettings) -> str:
    """"host", "vm" or "none" for a node's SCTP setting (auto: host when it has SCTP)."""
    if spec.stack == "auto":
        return "host" if host_has_sctp() else "vm"
    if spec.stack == "host" and not host_has_sctp():
        raise TestbedError("sctp: host asked, but the host kernel has no SCTP; use stack: vm or auto")
    return spec.stack


def vm_nodes(topo: Topology) -> list[str]:
    return [n for n, spec in topo.nodes.items() if stack_of(spec.sctp) == "vm"]


def config_for(topo: Topology, node: NodePlan, netns: str, node_dir: Path) -> VmConfig:
    spec = topo.nodes[node.name].sctp
    return VmConfig(
        name=node.name,
        netns=netns,
        state_dir=node_dir / "vm",
        kernel=kernels.resolve(spec.kernel),
        nics=[(i.ifname, mac_for(netns, i.ifname)) for i in node.ifaces],
        addip_enable=spec.addip_enable,
        auth_enable=spec.auth_enable,
        addip_noauth_enable=spec.addip_noauth_enable,
        default_auto_asconf=spec.default_auto_asconf,
        rw_dirs=[node_dir],  # every service of the node writes under it, inside the guest too
    )


def record(vm: VmNode) -> dict[str, Any]:
    """What the lab state keeps to reconnect to a running VM from another process."""
    return {"node": vm.name, "qemu_pid": vm.qemu_pid, "sock_dir": str(vm._sock_dir or vm.state_dir),
            "release": vm.kernel_release(), "boot_seconds": round(vm.boot_seconds, 2)}


def boot_all(configs: list[VmConfig]) -> tuple[list[VmNode], list[BaseException]]:
    """Boot VMs in parallel (each is one TCG thread); returns the booted ones and the errors."""
    booted: list[VmNode] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(cfg: VmConfig) -> None:
        vm = VmNode(cfg)
        try:
            vm.start()
            with lock:
                booted.append(vm)
        except BaseException as e:  # noqa: BLE001 - collected, re-raised by the caller
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=one, args=(c,), name=f"boot-{c.name}") for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return booted, errors


def configure_guest(vm: VmNode, node: NodePlan, mobile: bool, optimistic_dad: bool) -> None:
    """The node's L3 plan, applied inside the guest (one ``ip -batch`` and direct sysctls)."""
    cmds = []
    for i in node.ifaces:
        for a in i.addresses:
            cmds.append(f"addr add {a} dev {i.ifname}" + (" nodad" if a.version == 6 else ""))
        cmds.append(f"link set dev {i.ifname} up")
    cmds += [f"route add {r.dst} via {r.via} dev {r.dev}" for r in node.routes]
    for i in node.ifaces:
        base = f"net.ipv6.conf.{i.ifname}"
        if mobile:
            vm.set_link(i.ifname, False)  # no carrier until the lab attaches the MN
            vm.set_sysctl(f"{base}.router_solicitation_delay", "0")
            vm.set_sysctl(f"{base}.accept_ra", "2")
            if optimistic_dad:
                vm.set_sysctl(f"{base}.optimistic_dad", "1")
                vm.set_sysctl(f"{base}.use_optimistic", "1")
        else:
            vm.set_sysctl(f"{base}.accept_ra", "0")
            vm.set_sysctl(f"{base}.accept_dad", "0")
    if node.forwards:
        vm.set_sysctl("net.ipv4.ip_forward", "1")
        vm.set_sysctl("net.ipv6.conf.all.forwarding", "1")
    vm.run(["ip", "-batch", "-"], input="\n".join(cmds) + "\n")
