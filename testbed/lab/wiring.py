"""Which daemon runs where, configured from the topology and the addressing plan.

named on the DNS node (with the MN's SIG(0) keys and a TSIG key provisioned for its zone),
radvd and dhcpd on each access router, and on the mobile node its DHCP client, the mobility
agent and, on an SCTP, MPTCP or QUIC MN, the TraSH binding process.
"""

from __future__ import annotations

from pathlib import Path

from testbed.host import netns
from testbed.lab.nodes import Nodes
from testbed.mobility.location.provision import provision_keys
from testbed.model.addressing import LabPlan
from testbed.model.topology import PolicySettings, Role, Topology
from testbed.runtimes import kernel_nodes
from testbed.services.agent import MobilityAgent
from testbed.services.base import Daemon
from testbed.services.bind import SIG0_CHECKS_PER_MN, Named, ZoneData, ZoneKeys, sig0_supported
from testbed.services.binding import GUEST_BINDING_SOCKET, TRAFFIC_CONTROL, BindingService
from testbed.services.dhcpcd import Dhcpcd
from testbed.services.dhcpd import Dhcpd
from testbed.services.dhcpd6 import Dhcpd6
from testbed.services.irdp import IrdpAdvertiser, irdp_lifetime
from testbed.services.radvd import Radvd

TSIG_KEY_NAME = "mn-tsig"
# inside a kernel node the agent's socket lives on the guest's own tmpfs: a writable share
# (hostfs, 9p) cannot carry a Unix socket between guest processes
GUEST_AGENT_SOCKET = Path("/run/testbed-agent.sock")


def zone_data(topo: Topology, plan: LabPlan) -> ZoneData:
    """The lab zone: every node but the MNs by name (its first two addresses), each MN's label,
    named listening on the DNS node's addresses."""
    z = topo.dns
    records = {
        n: [str(a.ip) for a in plan.nodes[n].addresses()[:2]]
        for n, spec in topo.nodes.items()
        if spec.role is not Role.MOBILE and plan.nodes[n].addresses()
    }
    return ZoneData(zone=z.zone, server_name=z.server, records=records,
                    mobile_names=[topo.dns_label(m) for m in topo.mobiles], ttl=z.ttl,
                    listen=[str(a.ip) for a in plan.nodes[z.server].addresses()])


def access_metric(topo: Topology, ar: str) -> int:
    """Route metric of an access network's default route: the first listed is preferred."""
    return 100 + [a.router for a in topo.access_networks].index(ar)


def access_metrics(topo: Topology, plan: LabPlan, mn: str | None = None) -> dict[str, int]:
    """``mn``'s access interface -> route metric of its default route there."""
    return {plan.access_iface(a.router, mn)[0].ifname: access_metric(topo, a.router)
            for a in topo.access_networks}


def access_dhcpv6(topo: Topology, plan: LabPlan, mn: str | None = None) -> dict[str, str]:
    """``mn``'s access interface -> its network's DHCPv6 mode (off, stateful, stateless)."""
    return {plan.access_iface(a.router, mn)[0].ifname: a.dhcpv6 for a in topo.access_networks}


def location_env(topo: Topology, plan: LabPlan, mn: str | None = None, *, key: Path | None = None,
                 tsig: Path | None = None) -> dict[str, str]:
    """What ``mn``'s location updater reads (``TESTBED_LOC_*``): the servers, zone and name,
    and its SIG(0) private key or a TSIG key file."""
    m, z = topo.mobile, topo.dns
    # both of the server's addresses: the MN tries the IPv6 one where it has no IPv4 route
    servers = [a for f in (4, 6) if (a := plan.address_of(z.server, f))]
    env = {"TESTBED_LOC_SERVER": ",".join(servers),
           "TESTBED_LOC_ZONE": z.zone, "TESTBED_LOC_NAME": topo.dns_name(mn or m.node),
           "TESTBED_LOC_VALIDITY": f"{m.signature_validity:g}"}
    if m.cooperating:
        coop = plan.nodes[m.cooperating].addresses()
        env["TESTBED_LOC_COOPERATING"] = ",".join(str(a.ip) for a in coop)
    if tsig is not None:
        env["TESTBED_LOC_TSIG"] = str(tsig)
    elif key is not None:
        env["TESTBED_LOC_KEY"] = str(key)
    return env


def trusted_networks(topo: Topology) -> list[str] | None:
    """The MNs' trust list as networks (``mobile.trust``), None to trust every one."""
    t = topo.mobile.trust
    if t == "access_networks":
        return [str(n) for a in topo.access_networks for n in (a.ipv4, a.ipv6) if n is not None]
    return list(t) if t is not None else None


def binding_mobile(topo: Topology, mn: str | None = None) -> bool:
    """Does the MN run the binding process (an SCTP, MPTCP or QUIC endpoint)? Then that process,
    not the agent, sends the location update, after the primary switch (Appendix A)."""
    spec = topo.nodes[mn or topo.mobile.node]
    return sctp_mobile(topo, mn) or spec.mptcp.enabled or spec.quic.enabled


def source_routing(topo: Topology, mn: str | None = None) -> bool:
    """Does the MN route by source address (``mobile.source_routing``; by default where it
    speaks QUIC, whose migration is a socket bound to the new address)?"""
    wanted = topo.mobile.source_routing
    return topo.nodes[mn or topo.mobile.node].quic.enabled if wanted is None else wanted


def sctp_mobile(topo: Topology, mn: str | None = None) -> bool:
    """Is ``mn`` an SCTP endpoint?"""
    return kernel_nodes.stack_of(topo.nodes[mn or topo.mobile.node].sctp) != "none"


class Wiring:
    """The lab's daemons; what is a mobile node's is ``mn``'s (the topology's ``mobile.node``
    unless given): ``for_mobile`` gives the wiring of another one."""

    def __init__(self, nodes: Nodes, mn: str | None = None) -> None:
        self.nodes = nodes
        self.topo, self.plan = nodes.topo, nodes.plan
        self.mn = mn or self.topo.mobile.node

    def for_mobile(self, mn: str) -> Wiring:
        return self if mn == self.mn else type(self)(self.nodes, mn)

    @property
    def state(self):
        return self.nodes.state

    # ---------------------------------------------------------------- location manager
    def named(self) -> Named:
        z = self.topo.dns
        data = zone_data(self.topo, self.plan)
        mobiles = self.topo.mobiles
        # each MN's SIG(0) key pairs (BIND's own dnssec-keygen), and one TSIG key for the zone
        rrs: list[str] = []
        tsig: Path | None = None
        by_mn: dict[str, dict[str, str]] = {}
        for i, m in enumerate(mobiles):
            made = provision_keys(self.for_mobile(m).keys_dir, self.topo.dns_name(m), z.sig0_algorithms,
                                  tsig_name=TSIG_KEY_NAME if i == 0 else None, ttl=z.ttl)
            tsig = tsig or made.tsig_file
            rrs += made.key_rrs
            by_mn[m] = {k.algorithm: str(k.private_file) for k in made.keys}
        assert tsig is not None
        self.state.extra["keys"] = {"tsig": str(tsig), "tsig_name": TSIG_KEY_NAME, "sig0": by_mn}
        self.state.save()
        keys = ZoneKeys(rrs, tsig, TSIG_KEY_NAME)
        return Named(self.nodes.runtime(z.server), self.nodes.node_dir(z.server, "named"), data, keys,
                     quota=SIG0_CHECKS_PER_MN * len(mobiles))

    @property
    def keys_dir(self) -> Path:
        """The MN's keys live with the MN (inside its kernel node too); named includes the TSIG one."""
        return self.nodes.node_dir(self.mn, "keys")

    @property
    def tsig_key_file(self) -> Path:
        """The TSIG key clause (``nsupdate -k`` reads it)."""
        return Path(self.state.extra["keys"]["tsig"])

    def sig0_key_file(self, algorithm: str = "ECDSAP256SHA256") -> Path:
        """The MN's SIG(0) private key (BIND format) for ``algorithm``."""
        return Path(self.state.extra["keys"]["sig0"][self.mn][algorithm])

    # ---------------------------------------------------------------- access routers
    def ar_daemons(self, ar: str) -> list[Daemon]:
        acc = next(a for a in self.topo.access_networks if a.router == ar)
        ar_if = self.plan.lan(ar)
        dns4 = self.plan.address_of(self.topo.dns.server, 4) or ""
        dns6 = self.plan.address_of(self.topo.dns.server, 6)
        rt = self.nodes.runtime(ar)
        out: list[Daemon] = []
        if acc.ipv6 is not None:  # SLAAC (and later DHCPv6) only where the network has IPv6
            out.append(Radvd(rt, self.nodes.node_dir(ar, "radvd"), ar_if.ifname, acc, dns6,
                             self.topo.dns.zone))
        if acc.ipv4 is not None:
            out.append(Dhcpd(rt, self.nodes.node_dir(ar, "dhcpd"), ar_if.ifname, acc, dns4,
                             self.topo.dns.zone))
        if acc.dhcpv6 != "off":
            out.append(Dhcpd6(rt, self.nodes.node_dir(ar, "dhcpd6"), ar_if.ifname, acc, dns6,
                              self.topo.dns.zone))
        if acc.router_discovery and acc.ipv4 is not None:
            out.append(IrdpAdvertiser(rt, self.nodes.node_dir(ar, "irdp"), ar_if.ifname,
                                      str(acc.ipv4.network_address + 1), acc.router_discovery,
                                      irdp_lifetime(acc.router_discovery)))
        return out

    # ---------------------------------------------------------------- the mobile node
    @property
    def sctp_mobile(self) -> bool:
        """Is the MN an SCTP endpoint?"""
        return sctp_mobile(self.topo, self.mn)

    @property
    def binding_mobile(self) -> bool:
        """Does the MN run the binding process (an SCTP, MPTCP or QUIC endpoint)? Then that
        process, not the agent, sends the location update, after the primary switch (Appendix A)."""
        return binding_mobile(self.topo, self.mn)

    @property
    def source_routing(self) -> bool:
        """Does the MN route by source address (``mobile.source_routing``; by default where it
        speaks QUIC, whose migration is a socket bound to the new address)?"""
        return source_routing(self.topo, self.mn)

    @property
    def traffic_control(self) -> Path:
        """The traffic client's driver socket, which the binding process joins."""
        if self.nodes.own_kernel(self.mn):
            return TRAFFIC_CONTROL
        return self.nodes.node_dir(self.mn, "traffic") / "control.sock"

    def dhcp_client(self) -> Dhcpcd:
        return Dhcpcd(self.nodes.runtime(self.mn), self.nodes.node_dir(self.mn, "dhcpcd"),
                      access_metrics(self.topo, self.plan, self.mn),
                      access_dhcpv6(self.topo, self.plan, self.mn))

    def location_env(self) -> dict[str, str]:
        m = self.topo.mobile
        if m.location == "none":
            return {}
        if m.location == "tsig" or not sig0_supported():
            return location_env(self.topo, self.plan, self.mn, tsig=self.tsig_key_file)
        return location_env(self.topo, self.plan, self.mn, key=self.sig0_key_file(m.sig0_algorithm))

    @property
    def agent_dir(self) -> Path:
        return self.nodes.node_dir(self.mn, "agent")

    @property
    def agent_socket(self) -> Path:
        if self.nodes.own_kernel(self.mn):
            return GUEST_AGENT_SOCKET
        return self.agent_dir / "agent.sock"

    def agent(self) -> MobilityAgent:
        m = self.topo.mobile
        env = {} if self.binding_mobile else self.location_env()
        ifaces = [i.ifname for i in self.plan.nodes[self.mn].ifaces]
        # a kernel node's DAD settings were made with its L3 set-up (kernel_nodes.configure_guest),
        # as were a namespace MN's where the kernel lacks optimistic DAD (the backend's set-up)
        optimistic = (m.optimistic_dad and not self.nodes.own_kernel(self.mn)
                      and netns.optimistic_dad_supported())
        rdisc = any(a.router_discovery for a in self.topo.access_networks)
        return MobilityAgent(self.nodes.runtime(self.mn), self.agent_dir, ifaces, env, optimistic,
                             socket_path=self.agent_socket, trusted=self.trusted(), rdisc=rdisc,
                             source_routing=self.source_routing)

    def trusted(self) -> list[str] | None:
        """The MN's trust list as networks (``mobile.trust``), None to trust every one."""
        return trusted_networks(self.topo)

    @property
    def binding_socket(self) -> Path:
        """The binding process's status socket (a kernel node's on its guest's tmpfs)."""
        if self.nodes.own_kernel(self.mn):
            return GUEST_BINDING_SOCKET
        return self.nodes.node_dir(self.mn, "binding") / "binding.sock"

    def binding(self, policy: PolicySettings | None = None) -> BindingService:
        """The binding process, with the topology's ``mobile.policy`` or ``policy`` (a run's)."""
        return BindingService(self.nodes.runtime(self.mn), self.nodes.node_dir(self.mn, "binding"),
                              self.agent_socket, self.location_env(), driver_socket=self.traffic_control,
                              socket_path=self.binding_socket, policy=policy or self.topo.mobile.policy)
