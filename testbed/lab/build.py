"""Building a lab: nodes and links (backend), resolvers, kernel nodes, daemons, the MN attached.

Kernel nodes boot (seconds) while the infrastructure daemons start; the mobility agent starts
before the MN attaches, so it sees the first link-up. Every resource is recorded in the lab
state before it is created: a failure anywhere leaves a state that teardown can follow.
"""

from __future__ import annotations

import threading
from typing import Any

from testbed.host import netns
from testbed.lab import middlebox, replay, shaping
from testbed.lab.mobile import MobileNode
from testbed.lab.nodes import Nodes
from testbed.lab.wiring import Wiring
from testbed.progress import Progress
from testbed.runtimes import kernel_nodes
from testbed.services.base import Daemon
from testbed.state import ServiceRecord


def start(nodes: Nodes, *daemons: Daemon) -> list[ServiceRecord]:
    """Launch the daemons together (each recorded as soon as it runs), then wait for each to
    answer: their start-up costs (a Python start in a kernel node is ~1-2 s) overlap."""
    launched = []
    for d in daemons:
        rec = d.launch()
        nodes.state.add_service(rec)
        launched.append((d, rec))
    for d, rec in launched:
        d.settle(rec)
    return [rec for _, rec in launched]


def write_resolvers(nodes: Nodes) -> None:
    """/etc/netns/<ns>/resolv.conf: ``ip netns exec`` binds it over /etc/resolv.conf, so every
    node resolves through the lab's named, never through the host's resolver."""
    dns = nodes.plan.address_of(nodes.topo.dns.server, 4)
    for name in nodes.plan.nodes:
        d = netns.NETNS_ETC_DIR / nodes.state.ns(name)
        nodes.state.etc_netns.append(str(d))
        nodes.state.save()
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(
            f"# testbed lab {nodes.state.lab}\nnameserver {dns}\nsearch {nodes.topo.dns.zone}\n"
            "options timeout:1 attempts:2\n"
        )


def build(nodes: Nodes, wiring: Wiring, mobiles: list[MobileNode], progress: Progress) -> None:
    topo, plan, state = nodes.topo, nodes.plan, nodes.state
    stacks = kernel_nodes.kernel_nodes(topo)
    shaping.check(plan, frozenset(stacks), state.topology_file)  # a delay without netem fails here
    traced = {a.router: a.replay for a in topo.access_networks if a.replay is not None}
    if traced:  # and so does one in the topology's traces, naming the file and line
        replay.check(topo, traced)
    state.backend = nodes.backend.name
    state.save()
    write_resolvers(nodes)  # before the nodes: a container mounts its resolv.conf when created
    nodes.backend.build(plan, state, progress, frozenset(stacks))
    # where each kernel runs is the backend's (a container's root exists once it is made); a
    # missing kernel fails here, before any boots
    configs = [kernel_nodes.config_for(topo, plan.nodes[n], s, state.ns(n), state.dir / n,
                                       nodes.backend.kernel_host(state, n)) for n, s in stacks.items()]
    for name, spec in topo.nodes.items():  # SCTP on the host's kernel, per namespace
        if name not in stacks and kernel_nodes.stack_of(spec.sctp) == "host":
            nodes.runtime(name).set_sysctls(kernel_nodes.sctp_sysctls(spec.sctp))
        if spec.mptcp.enabled:  # the in-kernel path manager's limits, per namespace
            from testbed.mptcp import pm  # pyroute2's generic netlink: only for MPTCP labs

            netns.call_in(state.ns(name), pm.set_limits, spec.mptcp.subflows, spec.mptcp.add_addr_accepted)
    boot = None
    result: dict[str, Any] = {}
    if configs:
        progress(f"booting {', '.join(f'{n} ({s})' for n, s in stacks.items())}")
        boot = threading.Thread(target=lambda: result.update(r=kernel_nodes.boot_all(stacks, configs)))
        boot.start()
    try:
        progress("named and the access routers")
        start(nodes, wiring.named(),
              *(d for acc in topo.access_networks for d in wiring.ar_daemons(acc.router)))
    finally:
        if boot is not None:
            boot.join()
            booted, errors = result["r"]
            for node in booted:
                nodes.adopt(node)
            if errors:
                raise errors[0]
    for name in stacks:
        kernel_nodes.configure_guest(nodes.runtime(name), plan.nodes[name],  # type: ignore[arg-type]
                                     name in topo.mobiles, topo.mobile.optimistic_dad)
    shaping.apply_all(plan, nodes.runtime, frozenset(stacks))
    middlebox.apply_all(plan, nodes.runtime)  # NAT and ingress filters, before an MN attaches
    # the mobile nodes' daemons, all launched before any is awaited: the binding process waits
    # for its agent's socket by itself
    daemons: list[Daemon] = []
    for m in mobiles:
        w = wiring.for_mobile(m.name)
        daemons.append(w.dhcp_client())
        if topo.mobile.agent:
            daemons.append(w.agent())
            if w.binding_mobile:
                daemons.append(w.binding())
    names = list(dict.fromkeys(d.NAME for d in daemons))
    progress(", ".join(names) + (f" on {len(mobiles)} mobile nodes" if len(mobiles) > 1 else ""))
    start(nodes, *daemons)
    progress("attaching the mobile node" + ("s" if len(mobiles) > 1 else ""))
    for m in mobiles:
        for ar in topo.mobile.attached:
            m.attach(ar)
    for m in mobiles:
        for ar in topo.mobile.attached:
            m.wait_configured(ar)
