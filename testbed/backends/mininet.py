"""Mininet backend: nodes are Mininet ``Host``s, links Mininet ``Link``s (veth pairs).

Mininet is the ecosystem's standard and its object model (nodes run commands, links join
nodes) is what we build on; we diverge where the host must stay clean:

* no switches and no ``Mininet`` object: ``Mininet.init`` rewrites host-wide sysctls and Open
  vSwitch is absent here. Links are node-to-node veth pairs, which Mininet creates from inside
  the first node's namespace with the peer placed straight into the second's, so no interface
  ever exists in the root namespace;
* each Host's namespace is pinned as a *named* netns (``ip netns attach``) so it outlives the
  Mininet shell, is reachable with ``ip netns exec <lab>-<node>`` and is removed by name only;
* addresses, routes and sysctls are set with ``ip``/``sysctl`` argv lists, not ifconfig.
"""

from __future__ import annotations

import os
import signal

from testbed.errors import MissingDependency, TestbedError
from testbed.host import netns
from testbed.model.addressing import LabPlan
from testbed.progress import Progress
from testbed.runtimes.namespace import NamespaceNode
from testbed.services.base import require
from testbed.state import OWNER_LABEL, LabState, namespace_label


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
        from mininet.link import Link
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
                Link(hosts[v.a], hosts[v.b], intfName1=v.a_ifname, intfName2=v.b_ifname)
        finally:
            # The namespaces are pinned by name now; the Mininet shells are no longer needed.
            for host in hosts.values():
                _close_shell(host)
        progress("addresses and routes")
        for name, node in plan.nodes.items():
            if name in kernel_nodes:
                cmds = ["link set dev lo up"] + [
                    f"link set dev {i.ifname} alias {OWNER_LABEL}:{state.lab}" for i in node.ifaces
                ]
                netns.run(None, ["ip", "-n", state.ns(name), "-batch", "-"], input="\n".join(cmds) + "\n")
            else:
                self._configure(state.ns(name), state.lab, node, plan)

    def _configure(self, ns: str, lab: str, node, plan: LabPlan) -> None:
        mn = plan.topology.mobile.node
        sysctls = ["net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1"]
        if node.forwards:
            sysctls += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
        if node.name == mn:
            sysctls = ["net.ipv6.conf.all.keep_addr_on_down=0"]
            for i in node.ifaces:
                base = f"net.ipv6.conf.{i.ifname}"
                # DNA (RFC 4957): solicit at once on attach, not after the RFC 4861 random delay
                sysctls += [
                    f"{base}.accept_ra=2",
                    f"{base}.autoconf=1",
                    f"{base}.router_solicitation_delay=0",
                ]
                if plan.topology.mobile.optimistic_dad:
                    # RFC 4429 where the kernel has it (Debian's UML build does not: skip DAD)
                    sysctls += ([f"{base}.optimistic_dad=1", f"{base}.use_optimistic=1"]
                                if netns.optimistic_dad_supported() else [f"{base}.accept_dad=0"])
        else:
            for i in node.ifaces:  # static nodes: no SLAAC from a neighbour's RA, no DAD wait
                sysctls += [f"net.ipv6.conf.{i.ifname}.accept_ra=0", f"net.ipv6.conf.{i.ifname}.accept_dad=0"]
        netns.run(ns, ["sysctl", "-q", "-w", *sysctls])
        cmds = ["link set dev lo up"]
        for i in node.ifaces:
            cmds.append(f"link set dev {i.ifname} alias {OWNER_LABEL}:{lab}")
            for a in i.addresses:
                flags = " nodad" if a.version == 6 else ""
                cmds.append(f"addr add {a} dev {i.ifname}{flags}")
            # the MN's access interfaces start down: the lab attaches it (= brings them up), and
            # the AR side then sees carrier; the AR side stays up so dhcpd/radvd can bind to it
            state = "down" if i.access_router and node.name == mn else "up"
            cmds.append(f"link set dev {i.ifname} {state}")
        for r in node.routes:
            cmds.append(f"route add {r.dst} via {r.via} dev {r.dev}")
        netns.run(None, ["ip", "-n", ns, "-batch", "-"], input="\n".join(cmds) + "\n")


    def runtime(self, state: LabState, node: str) -> NamespaceNode:
        return NamespaceNode(node, state.ns(node))

    def teardown(self, state: LabState, progress: Progress) -> None:
        progress("removing namespaces")
        for ns in state.netns:
            netns.remove(ns)

    def sweep(self, lab: str) -> list[str]:
        gone = []
        for ns in netns.list_names():
            if ns.startswith(f"{lab}-") and netns.label_of(ns) == namespace_label(lab):
                netns.remove(ns)
                gone.append(ns)
        return gone


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
