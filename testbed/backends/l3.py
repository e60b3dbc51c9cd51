"""A node's layer 3 inside its named netns: sysctls, addresses, routes, link labels, and an
access router's bridge (its access network is a shared segment: one port per node on it).

The same for every backend, set from the host through the pinned namespace (``ip -n``,
``ip netns exec … sysctl``), so a node needs no tool of its own for it. Kernel nodes get their
loopback up and their links labelled only: their L3 lives in their own kernel.
"""

from __future__ import annotations

from testbed.host import netns
from testbed.model.addressing import LabPlan
from testbed.model.topology import Role
from testbed.state import OWNER_LABEL, LabState


def configure_all(plan: LabPlan, state: LabState, kernel_nodes: frozenset[str] = frozenset()) -> None:
    for name, node in plan.nodes.items():
        if name in kernel_nodes:
            cmds = ["link set dev lo up"] + [
                f"link set dev {i.ifname} alias {OWNER_LABEL}:{state.lab}" for i in node.ifaces
            ]
            netns.run(None, ["ip", "-n", state.ns(name), "-batch", "-"], input="\n".join(cmds) + "\n")
        else:
            configure(state.ns(name), state.lab, node, plan)


def configure(ns: str, lab: str, node, plan: LabPlan) -> None:
    mobile = node.role is Role.MOBILE
    # no STP and no forwarding delay: a port forwards the moment its node attaches
    bridges = [f"link add {i.ifname} type bridge forward_delay 0 stp_state 0 mcast_snooping 0"
               for i in node.ifaces if i.bridge]
    if bridges:
        netns.run(None, ["ip", "-n", ns, "-batch", "-"], input="\n".join(bridges) + "\n")
    sysctls = ["net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1"]
    if node.forwards:
        sysctls += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
    if mobile:
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
            base = f"net.ipv6.conf.{i.ifname}"
            sysctls += ([f"{base}.disable_ipv6=1"] if i.master  # a bridge port: layer 2 only
                        else [f"{base}.accept_ra=0", f"{base}.accept_dad=0"])
    netns.run(ns, ["sysctl", "-q", "-w", *sysctls])
    cmds = ["link set dev lo up"]
    for i in node.ifaces:
        cmds.append(f"link set dev {i.ifname} alias {OWNER_LABEL}:{lab}")
        if i.master:
            cmds.append(f"link set dev {i.ifname} master {i.master}")
        for a in i.addresses:
            flags = " nodad" if a.version == 6 else ""
            cmds.append(f"addr add {a} dev {i.ifname}{flags}")
        # the MN's access interfaces start down: the lab attaches it (= brings them up), and
        # the AR side then sees carrier; the AR side stays up so dhcpd/radvd can bind to it
        state = "down" if i.access_router and mobile else "up"
        cmds.append(f"link set dev {i.ifname} {state}")
    for r in node.routes:
        cmds.append(f"route add {r.dst} via {r.via} dev {r.dev}")
    netns.run(None, ["ip", "-n", ns, "-batch", "-"], input="\n".join(cmds) + "\n")
    mirror = shared_medium_mirrors(node, plan.topology.mobiles)
    if mirror:
        netns.run(ns, ["tc", "-batch", "-"], input="\n".join(mirror) + "\n")


def shared_medium_mirrors(node, mobiles: str | list[str]) -> list[str]:
    """tc commands that make a shared medium of an access bridge: every frame a mobile node
    sends or receives there is copied to every other port, as every station hears a radio
    channel (a learning bridge alone would keep the MN's unicast, to the router above all,
    from them)."""
    out = []
    names = [mobiles] if isinstance(mobiles, str) else mobiles
    for br in (i for i in node.ifaces if i.bridge and i.shared_medium):
        ports = [i.ifname for i in node.ifaces if i.master == br.ifname]
        for mn_port in (p for p in ports if p in {f"{node.name}-{mn}" for mn in names}):
            others = [p for p in ports if p != mn_port]
            if not others:
                continue
            # one filter per direction with one action per port: u32 stops at its first match
            actions = " ".join(f"action mirred egress mirror dev {o}" for o in others)
            out.append(f"qdisc add dev {mn_port} clsact")
            out += [f"filter add dev {mn_port} {way} protocol all u32 match u32 0 0 {actions}"
                    for way in ("ingress", "egress")]
    return out
