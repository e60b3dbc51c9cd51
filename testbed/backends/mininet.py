"""Mininet backend: nodes are Mininet ``Host``s, links Mininet ``Link``s (veth pairs).

Mininet is the ecosystem's standard and its object model (nodes run commands, links join
nodes) is what we build on; we diverge where the host must stay clean:

* no switches and no ``Mininet`` object: ``Mininet.init`` rewrites host-wide sysctls and Open
  vSwitch is absent here. Links are node-to-node veth pairs, which Mininet creates from inside
  the first node's namespace with the peer placed straight into the second's, so no interface
  ever exists in the root namespace;
* each Host's namespace is pinned as a *named* netns (``ip netns attach``) so it outlives the
  Mininet shell, is reachable with ``ip netns exec <lab>-<node>`` and is removed by name only;
* addresses, routes and sysctls are set with ``ip``/``sysctl`` argv lists, not ifconfig
  (``l3``, shared with the docker backend).
"""

from __future__ import annotations

import functools
import os
import signal
from typing import Any

from testbed.backends import l3
from testbed.errors import MissingDependency, TestbedError
from testbed.host import netns
from testbed.host.tools import require
from testbed.model.addressing import LabPlan, VethPlan
from testbed.progress import Progress
from testbed.runtimes.kernel_nodes import KernelHost
from testbed.runtimes.namespace import NamespaceNode
from testbed.runtimes.node_root import NodeRoot
from testbed.state import LabState, namespace_label


class MininetBackend:
    """Builds a lab plan into named namespaces and veth links, recording everything in state.

    Labels: each namespace's loopback and each link end carry the alias ``testbed:<lab>``.
    """

    name = "mininet"

    def __init__(self) -> None:
        require("mnexec", "mininet")
        try:
            import mininet.link  # noqa: F401
            import mininet.node  # noqa: F401
        except ImportError as e:
            raise MissingDependency("python module mininet", "mininet (pip: mininet)") from e

    def build(
        self,
        plan: LabPlan,
        state: LabState,
        progress: Progress,
        kernel_nodes: frozenset[str] = frozenset(),
    ) -> None:
        """``kernel_nodes`` get their namespace and links only: their L3 lives in the guest."""
        from mininet.node import Host

        hosts: dict[str, Host] = {}
        try:
            progress("namespaces")
            for name in plan.nodes:
                ns = state.ns(name)
                if netns.exists(ns):
                    raise TestbedError(f"netns {ns} already exists: another lab? run `testbed clean`")
                state.netns.append(ns)  # write-ahead: a crash from here on leaves a record
                state.save()
                host = Host(name, inNamespace=True)
                hosts[name] = host
                netns.run(None, ["ip", "netns", "attach", ns, str(host.pid)])
                netns.run(None, ["ip", "-n", ns, "link", "set", "dev", "lo", "alias",
                                 namespace_label(state.lab)])
            progress("links")
            for v in plan.veths:
                indexed_link()(v, hosts[v.a], hosts[v.b], intfName1=v.a_ifname, intfName2=v.b_ifname)
        finally:
            # The namespaces are pinned by name now; the Mininet shells are no longer needed.
            for host in hosts.values():
                _close_shell(host)
        progress("addresses and routes")
        l3.configure_all(plan, state, kernel_nodes)

    def runtime(self, state: LabState, node: str) -> NamespaceNode:
        return NamespaceNode(node, state.ns(node))

    def kernel_host(self, state: LabState, node: str) -> KernelHost:
        """A kernel node's emulator runs on the host, in the node's namespace, over the host's root."""
        return KernelHost(self.runtime(state, node), NodeRoot())

    def terminal_argv(self, state: LabState, node: str, argv: list[str], tty: bool) -> list[str]:
        return netns.exec_argv(state.ns(node), argv)

    def info(self, state: LabState) -> dict[str, Any]:
        return {"nodes": {}}

    def teardown(self, state: LabState, progress: Progress) -> None:
        progress("removing namespaces")
        for ns in state.netns:
            netns.remove(ns)

    def labs(self) -> set[str]:
        return set()  # its only resources are labelled namespaces, which clean lists itself

    def sweep(self, lab: str) -> list[str]:
        gone = []
        for ns in netns.list_names():
            if ns.startswith(f"{lab}-") and netns.label_of(ns) == namespace_label(lab):
                netns.remove(ns)
                gone.append(ns)
        return gone


@functools.cache
def indexed_link() -> type:
    """Mininet's ``Link`` whose veth ends get the plan's ifindexes (see ``VethPlan``); made on
    first use, as Mininet itself is imported only when this backend builds."""
    from mininet.link import Link

    class IndexedLink(Link):
        def __init__(self, plan: VethPlan, *args: object, **kwargs: object) -> None:
            self.plan = plan
            super().__init__(*args, **kwargs)

        def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None, node1=None,  # noqa: N802
                         node2=None, deleteIntfs=True):  # noqa: N803 - Mininet's own signature
            out = node1.cmd(f"ip link add name {intfname1} index {self.plan.a_index} type veth peer "
                            f"name {intfname2} netns {node2.pid} index {self.plan.b_index}")
            if out.strip():
                raise TestbedError(f"veth {intfname1}/{intfname2}: {out.strip()}")

    return IndexedLink


def _close_shell(host) -> None:
    """End a Mininet host's shell without Mininet's cleanup (which would delete its links)."""
    shell = getattr(host, "shell", None)
    if shell is None:
        return
    try:
        os.killpg(host.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    shell.wait()
    for fd in (getattr(host, "slave", None),):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    if host.stdin:
        host.stdin.close()
    host.shell = None
