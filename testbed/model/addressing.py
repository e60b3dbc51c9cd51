"""From a validated topology to a concrete plan: interfaces, addresses and static routes.

Pure computation, so the plan can be unit-tested and shown by ``testbed status`` without any
backend. Point-to-point links give the first host address to ``a`` and the second to ``b``.

An access network is a shared segment: a bridge in its router's namespace (``<ar>-lan``, which
holds host 1 of the network, where dhcpd and radvd serve) with one veth pair per node on it:
each mobile node (``mn-ar1`` ↔ port ``ar1-mn``), whose addresses come from DHCP and SLAAC, and
hosts that ``attach`` to it (an attacker, a second host), with static addresses from the top
of the network (.254, ::fe, then down).
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
    access_router: str | None = None  # set on every interface of an access network
    master: str | None = None  # a bridge port: the bridge it belongs to (its node's own)
    bridge: bool = False  # the access network's bridge itself (on the access router)
    shared_medium: bool = False  # the MN's frames on that bridge are copied to every port


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
    """One veth pair. Its two ends get ifindexes of their own, different from each other and
    from every other end in the lab: Linux handles a carrier change of a veth at once only when
    the device's ifindex differs from its peer's (linkwatch's "urgent" test compares ifindex
    with iflink, the peer's ifindex in *its* namespace); with equal numbers, which fresh
    namespaces hand out easily, the MN's attach waited up to a second for IPv6 to start."""

    a: str
    a_ifname: str
    b: str
    b_ifname: str
    a_index: int = 0
    b_index: int = 0


@dataclass
class LabPlan:
    topology: Topology
    nodes: dict[str, NodePlan]
    veths: list[VethPlan]

    def access_iface(self, ar: str, mn_name: str | None = None) -> tuple[IfacePlan, IfacePlan]:
        """(the MN's side, the AR's bridge) of the access network served by ``ar``; the MN is
        ``mn_name``, by default the topology's ``mobile.node``."""
        mn = self.nodes[mn_name or self.topology.mobile.node]
        for i in mn.ifaces:
            if i.access_router == ar:
                return i, self.lan(ar)
        raise KeyError(ar)

    def lan(self, ar: str) -> IfacePlan:
        """The bridge of ``ar``'s access network: its addresses are the router's there."""
        return next(i for i in self.nodes[ar].ifaces if i.bridge)

    def gateway(self, iface: IfacePlan) -> tuple[IfAddr, ...]:
        """The addresses across ``iface``: the peer's, or the router's on an access network."""
        if iface.access_router and iface.node != iface.access_router:
            return self.lan(iface.access_router).addresses
        return self.nodes[iface.peer].iface(iface.peer_ifname).addresses

    def address_of(self, node: str, version: int) -> str | None:
        addrs = self.nodes[node].addresses(version)
        return str(addrs[0].ip) if addrs else None


def ifname(node: str, peer: str) -> str:
    return f"{node}-{peer}"


def lan_ifname(ar: str) -> str:
    return f"{ar}-lan"


def plan(topo: Topology) -> LabPlan:
    nodes = {n: NodePlan(n, spec.role) for n, spec in topo.nodes.items()}
    veths: list[VethPlan] = []
    for link in topo.links:
        a_if, b_if = ifname(link.a, link.b), ifname(link.b, link.a)
        h4 = list(_hosts(link.ipv4, 2))
        h6 = list(_hosts(link.ipv6, 2))
        nodes[link.a].ifaces.append(IfacePlan(link.a, a_if, link.b, b_if, (h4[0], h6[0])))
        nodes[link.b].ifaces.append(IfacePlan(link.b, b_if, link.a, a_if, (h4[1], h6[1])))
        veths.append(VethPlan(link.a, a_if, link.b, b_if, *_indexes(len(veths))))
    mobiles = topo.mobiles
    for acc in topo.access_networks:
        ar, lan = acc.router, lan_ifname(acc.router)
        ar_addrs = (
            ipaddress.ip_interface(f"{acc.ipv4.network_address + 1}/{acc.ipv4.prefixlen}"),
            ipaddress.ip_interface(f"{acc.ipv6.network_address + 1}/{acc.ipv6.prefixlen}"),
        )
        bridge = IfacePlan(ar, lan, "", "", ar_addrs, access_router=ar, bridge=True,  # type: ignore[arg-type]
                           shared_medium=acc.medium == "shared")
        nodes[ar].ifaces.append(bridge)
        hosts = [n for n, spec in topo.nodes.items() if ar in spec.attach]
        for member in [*mobiles, *hosts]:
            port, own = ifname(ar, member), ifname(member, ar)
            addrs: tuple[IfAddr, ...] = ()
            if member in hosts:  # static, from the top of the network down
                k = hosts.index(member) + 1
                v4, v6 = acc.ipv4.broadcast_address - k, acc.ipv6.network_address + 0xFF - k
                addrs = (ipaddress.ip_interface(f"{v4}/{acc.ipv4.prefixlen}"),
                         ipaddress.ip_interface(f"{v6}/{acc.ipv6.prefixlen}"))
            nodes[ar].ifaces.append(IfacePlan(ar, port, member, own, (), access_router=ar, master=lan))
            nodes[member].ifaces.append(IfacePlan(member, own, ar, port, addrs, access_router=ar))
            veths.append(VethPlan(ar, port, member, own, *_indexes(len(veths))))
    _static_routes(topo, nodes)
    return LabPlan(topo, nodes, veths)


FIRST_INDEX = 1000  # above what a namespace's own devices (lo, a bridge, TAPs) take


def _indexes(k: int) -> tuple[int, int]:
    return FIRST_INDEX + 2 * k, FIRST_INDEX + 2 * k + 1


def _hosts(net: Net, n: int):
    it = net.hosts()
    for _ in range(n):
        yield ipaddress.ip_interface(f"{next(it)}/{net.prefixlen}")


def _static_routes(topo: Topology, nodes: dict[str, NodePlan]) -> None:
    """Shortest-path static routes for every subnet on every node except the mobile nodes."""
    mobile = {*topo.mobiles, ""}
    # adjacency over infrastructure links only; an MN is reached through its access networks
    adj: dict[str, list[tuple[str, IfacePlan]]] = {n: [] for n in nodes}
    for n, p in nodes.items():
        for i in p.ifaces:
            if n not in mobile and i.peer not in mobile:
                adj[n].append((i.peer, i))
    owner: dict[Net, str] = {}  # subnet -> a node directly on it (not an MN)
    for n, p in nodes.items():
        if n in mobile:
            continue
        for i in p.ifaces:
            for a in i.addresses:
                owner.setdefault(a.network, n)
    for src, p in nodes.items():
        if src in mobile:
            continue
        if not p.forwards and len(p.ifaces) == 1:  # a stub host: default routes are enough
            iface = p.ifaces[0]
            for a in _gateway(nodes, iface):
                default = ipaddress.ip_network("0.0.0.0/0" if a.version == 4 else "::/0")
                p.routes.append(RoutePlan(default, a.ip, iface.ifname))
            continue
        first_hop = _first_hops(src, adj)
        connected = {a.network for a in p.addresses()}
        for net, dst in sorted(owner.items(), key=lambda kv: (kv[0].version, str(kv[0]))):
            if net in connected or dst not in first_hop:
                continue
            iface = first_hop[dst]
            via = next(a.ip for a in _gateway(nodes, iface) if a.version == net.version)
            p.routes.append(RoutePlan(net, via, iface.ifname))


def _gateway(nodes: dict[str, NodePlan], iface: IfacePlan) -> tuple[IfAddr, ...]:
    """As ``LabPlan.gateway``, before the plan exists."""
    if iface.access_router and iface.node != iface.access_router:
        return next(i for i in nodes[iface.access_router].ifaces if i.bridge).addresses
    return nodes[iface.peer].iface(iface.peer_ifname).addresses


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
