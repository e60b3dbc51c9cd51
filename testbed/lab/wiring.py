"""Which daemon runs where, configured from the topology and the addressing plan.

named on the DNS node (with the MN's SIG(0) keys and a TSIG key provisioned for its zone),
radvd and dhcpd on each access router, and on the mobile node its DHCP client, the mobility
agent and, on an SCTP MN, the TraSH binding process.
"""

from __future__ import annotations

from pathlib import Path

from testbed.host import netns
from testbed.lab.nodes import Nodes
from testbed.mobility.location.provision import provision_keys
from testbed.model.topology import Role
from testbed.runtimes import kernel_nodes
from testbed.services.agent import MobilityAgent
from testbed.services.base import Daemon
from testbed.services.bind import Named, ZoneData, ZoneKeys, sig0_supported
from testbed.services.binding import BindingService
from testbed.services.dhcpcd import Dhcpcd
from testbed.services.dhcpd import Dhcpd
from testbed.services.dhcpd6 import Dhcpd6
from testbed.services.irdp import IrdpAdvertiser
from testbed.services.radvd import Radvd

TSIG_KEY_NAME = "mn-tsig"
# inside a kernel node the agent's socket lives on the guest's own tmpfs: a writable share
# (hostfs, 9p) cannot carry a Unix socket between guest processes
GUEST_AGENT_SOCKET = Path("/run/testbed-agent.sock")


class Wiring:
    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.topo, self.plan = nodes.topo, nodes.plan

    @property
    def state(self):
        return self.nodes.state

    @property
    def mn(self) -> str:
        return self.topo.mobile.node

    # ---------------------------------------------------------------- location manager
    def named(self) -> Named:
        z = self.topo.dns
        records = {
            n: [str(a.ip) for a in self.plan.nodes[n].addresses()[:2]]
            for n, spec in self.topo.nodes.items()
            if spec.role is not Role.MOBILE and self.plan.nodes[n].addresses()
        }
        dns = self.plan.nodes[z.server]
        data = ZoneData(zone=z.zone, server_name=z.server, records=records, mobile_name=z.mobile_name,
                        ttl=z.ttl, listen=[str(a.ip) for a in dns.addresses()])
        # the MN's SIG(0) key pairs (BIND's own dnssec-keygen) and a TSIG key, for the zone
        made = provision_keys(self.keys_dir, f"{z.mobile_name}.{z.zone}", z.sig0_algorithms,
                              tsig_name=TSIG_KEY_NAME, ttl=z.ttl)
        self.state.extra["keys"] = {
            "tsig": str(made.tsig_file),
            "tsig_name": TSIG_KEY_NAME,
            "sig0": {k.algorithm: str(k.private_file) for k in made.keys},
        }
        self.state.save()
        keys = ZoneKeys(made.key_rrs, made.tsig_file, TSIG_KEY_NAME)
        return Named(self.nodes.runtime(z.server), self.nodes.node_dir(z.server, "named"), data, keys)

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
        return Path(self.state.extra["keys"]["sig0"][algorithm])

    # ---------------------------------------------------------------- access routers
    def ar_daemons(self, ar: str) -> list[Daemon]:
        acc = next(a for a in self.topo.access_networks if a.router == ar)
        _, ar_if = self.plan.access_iface(ar)
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
                                      max(30, int(3 * acc.router_discovery))))
        return out

    # ---------------------------------------------------------------- the mobile node
    @property
    def sctp_mobile(self) -> bool:
        """Is the MN an SCTP endpoint? Then the TraSH binding process, not the agent, sends the
        location update, after the SET_PRIMARY (Appendix A order)."""
        return kernel_nodes.stack_of(self.topo.nodes[self.mn].sctp) != "none"

    def access_metric(self, ar: str) -> int:
        """Route metric of an access network's default route: the first listed is preferred."""
        return 100 + [a.router for a in self.topo.access_networks].index(ar)

    def dhcp_client(self) -> Dhcpcd:
        metrics = {self.plan.access_iface(a.router)[0].ifname: self.access_metric(a.router)
                   for a in self.topo.access_networks}
        dhcpv6 = {self.plan.access_iface(a.router)[0].ifname: a.dhcpv6 for a in self.topo.access_networks}
        return Dhcpcd(self.nodes.runtime(self.mn), self.nodes.node_dir(self.mn, "dhcpcd"), metrics,
                      dhcpv6)

    def location_env(self) -> dict[str, str]:
        m, z = self.topo.mobile, self.topo.dns
        if m.location == "none":
            return {}
        # both of the server's addresses: the MN tries the IPv6 one where it has no IPv4 route
        servers = [a for f in (4, 6) if (a := self.plan.address_of(z.server, f))]
        env = {"TESTBED_LOC_SERVER": ",".join(servers),
               "TESTBED_LOC_ZONE": z.zone, "TESTBED_LOC_NAME": f"{z.mobile_name}.{z.zone}",
               "TESTBED_LOC_VALIDITY": f"{m.signature_validity:g}"}
        if m.location == "tsig" or not sig0_supported():
            env["TESTBED_LOC_TSIG"] = str(self.tsig_key_file)
        else:
            env["TESTBED_LOC_KEY"] = str(self.sig0_key_file(m.sig0_algorithm))
        return env

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
        env = {} if self.sctp_mobile else self.location_env()
        ifaces = [i.ifname for i in self.plan.nodes[m.node].ifaces]
        # a kernel node's DAD settings were made with its L3 set-up (kernel_nodes.configure_guest),
        # as were a namespace MN's where the kernel lacks optimistic DAD (the backend's set-up)
        optimistic = (m.optimistic_dad and not self.nodes.own_kernel(m.node)
                      and netns.optimistic_dad_supported())
        rdisc = any(a.router_discovery for a in self.topo.access_networks)
        return MobilityAgent(self.nodes.runtime(m.node), self.agent_dir, ifaces, env, optimistic,
                             socket_path=self.agent_socket, rdisc=rdisc)

    def binding(self) -> BindingService:
        return BindingService(self.nodes.runtime(self.mn), self.nodes.node_dir(self.mn, "binding"),
                              self.agent_socket, self.location_env())
