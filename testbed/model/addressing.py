"""From a validated topology to a concrete plan: interfaces, addresses and static routes.

Pure computation, so the plan can be unit-tested and shown by ``testbed status`` without any
backend. Point-to-point links give the first host address to ``a`` and the second to ``b``;
an access router takes host 1 of its access network; the mobile node gets nothing static (DHCP
and SLAAC configure it).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field

from testbed.model.topology import Role, Topology

IfAddr = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class IfacePlan:
    node: str
    ifname: str
    peer: str
    peer_ifname: str
    addresses: tuple[IfAddr, ...] = ()
    access_router: str | None = None  # set on both ends of an access link


@dataclass(frozen=True)
class RoutePlan:
    dst: Net
    via: ipaddress.IPv4Address | ipaddress.IPv6Address
    dev: str


@dataclass
class NodePlan:
    name: str
    role: Role
    ifaces: list[IfacePlan] = field(default_factory=list)
    routes: list[RoutePlan] = field(default_factory=list)

    @property
    def forwards(self) -> bool:
        return self.role in (Role.ROUTER, Role.ACCESS_ROUTER)

    def addresses(self, version: int | None = None) -> list[IfAddr]:
        return [a for i in self.ifaces for a in i.addresses if version is None or a.version == version]

    def iface(self, ifname: str) -> IfacePlan:
        for i in self.ifaces:
            if i.ifname == ifname:
                return i
        raise KeyError(ifname)


@dataclass(frozen=True)
class VethPlan:
    a: str
    a_ifname: str
    b: str
    b_ifname: str


@dataclass
class LabPlan:
    topology: Topology
    nodes: dict[str, NodePlan]
    veths: list[VethPlan]

    def access_iface(self, ar: str) -> tuple[IfacePlan, IfacePlan]:
        """(MN side, AR side) of the access link served by ``ar``."""
        mn = self.nodes[self.topology.mobile.node]
        for i in mn.ifaces:
            if i.access_router == ar:
                return i, self.nodes[ar].iface(i.peer_ifname)
        raise KeyError(ar)

    def address_of(self, node: str, version: int) -> str | None:
        addrs = self.nodes[node].addresses(version)
        return str(addrs[0].ip) if addrs else None


def ifname(node: str, peer: str) -> str:
    return f"{node}-{peer}"


def plan(topo: Topology) -> LabPlan:
    nodes = {n: NodePlan(n, spec.role) for n, spec in topo.nodes.items()}
    veths: list[VethPlan] = []
    for link in topo.links:
        a_if, b_if = ifname(link.a, link.b), ifname(link.b, link.a)
        h4 = list(_hosts(link.ipv4, 2))
        h6 = list(_hosts(link.ipv6, 2))
        nodes[link.a].ifaces.append(IfacePlan(link.a, a_if, link.b, b_if, (h4[0], h6[0])))
        nodes[link.b].ifaces.append(IfacePlan(link.b, b_if, link.a, a_if, (h4[1], h6[1])))
        veths.append(VethPlan(link.a, a_if, link.b, b_if))
    mn = topo.mobile.node
    for acc in topo.access_networks:
        ar_if, mn_if = ifname(acc.router, mn), ifname(mn, acc.router)
        ar_addrs = (
            ipaddress.ip_interface(f"{acc.ipv4.network_address + 1}/{acc.ipv4.prefixlen}"),
            ipaddress.ip_interface(f"{acc.ipv6.network_address + 1}/{acc.ipv6.prefixlen}"),
        )
        nodes[acc.router].ifaces.append(
            IfacePlan(acc.router, ar_if, mn, mn_if, ar_addrs, access_router=acc.router)  # type: ignore[arg-type]
        )
        nodes[mn].ifaces.append(IfacePlan(mn, mn_if, acc.router, ar_if, (), access_router=acc.router))
        veths.append(VethPlan(acc.router, ar_if, mn, mn_if))
    _static_routes(topo, nodes)
    return LabPlan(topo, nodes, veths)


def _hosts(net: Net, n: int):
    it = net.hosts()
    for _ in range(n):
        yield ipaddress.ip_interface(f"{next(it)}/{net.prefixlen}")


def _static_routes(topo: Topology, nodes: dict[str, NodePlan]) -> None:
    """Shortest-path static routes for every subnet on every node except the mobile node."""
    mn = topo.mobile.node
    # adjacency over infrastructure links only; the MN is reached through its access networks
    adj: dict[str, list[tuple[str, IfacePlan]]] = {n: [] for n in nodes}
    for n, p in nodes.items():
        for i in p.ifaces:
            if n != mn and i.peer != mn:
                adj[n].append((i.peer, i))
    owner: dict[Net, str] = {}  # subnet -> a node directly on it (not the MN)
    for n, p in nodes.items():
        if n == mn:
            continue
        for i in p.ifaces:
            for a in i.addresses:
                owner.setdefault(a.network, n)
    for src, p in nodes.items():
        if src == mn:
            continue
        if not p.forwards and len(p.ifaces) == 1:  # a stub host: default routes are enough
            iface = p.ifaces[0]
            peer_if = nodes[iface.peer].iface(iface.peer_ifname)
            for a in peer_if.addresses:
                default = ipaddress.ip_network("0.0.0.0/0" if a.version == 4 else "::/0")
                p.routes.append(RoutePlan(default, a.ip, iface.ifname))
            continue
        first_hop = _first_hops(src, adj)
        connected = {a.network for a in p.addresses()}
        for net, dst in sorted(owner.items(), key=lambda kv: (kv[0].version, str(kv[0]))):
            if net in connected or dst not in first_hop:
                continue
            iface = first_hop[dst]
            peer_if = nodes[iface.peer].iface(iface.peer_ifname)
            via = next(a.ip for a in peer_if.addresses if a.version == net.version)
            p.routes.append(RoutePlan(net, via, iface.ifname))


def _first_hops(src: str, adj: dict[str, list[tuple[str, IfacePlan]]]) -> dict[str, IfacePlan]:
    """BFS from ``src``: for every reachable node, the local interface of the first hop."""
    hop: dict[str, IfacePlan] = {}
    seen = {src}
    queue: deque[str] = deque()
    for peer, iface in adj[src]:
        if peer not in seen:
            seen.add(peer)
            hop[peer] = iface
            queue.append(peer)
    while queue:
        cur = queue.popleft()
        for peer, _ in adj[cur]:
            if peer not in seen:
                seen.add(peer)
                hop[peer] = hop[cur]
                queue.append(peer)
    return hop
