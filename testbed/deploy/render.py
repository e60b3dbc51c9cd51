"""What each role puts on a host: config files and daemons, rendered by the lab's own services.

The playbooks' filter plugin (``playbooks/filter_plugins/testbed.py``) calls these with the
topology from the inventory and the host's node, so a real host gets exactly the files a lab
node gets (``testbed.services``: named, radvd, dhcpd, dhcpcd, the agent, the binding process;
``testbed.scenario.traffic``: the SCTP server), only at the host's paths (``Layout``) instead
of the lab's run directory. Everything here is data: files as text, daemons as argv lists with
their environment and a readiness probe, network settings as the plan's addresses and routes.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from testbed.capture.tcpdump import tcpdump_argv
from testbed.lab.wiring import access_metrics, location_env, sctp_mobile, zone_data
from testbed.model import addressing, loader
from testbed.model.addressing import LabPlan
from testbed.model.topology import Role, Topology
from testbed.runtimes.guest import SCTP_SYSCTLS
from testbed.scenario.model import Traffic
from testbed.scenario.traffic import client_argv, server_argv
from testbed.services import agent, bind, binding, dhcpcd, dhcpd, radvd
from testbed.services.binding import TRAFFIC_CONTROL

TSIG_KEY_NAME = "mn-tsig"


@dataclass(frozen=True)
class Layout:
    """Where testbed's files live on a deployed host (the lab keeps them in its run dir)."""

    etc: Path = Path("/etc/testbed")  # configuration, rendered here
    lib: Path = Path("/var/lib/testbed")  # state: zone, leases, keys, captures
    log: Path = Path("/var/log/testbed")
    run: Path = Path("/run/testbed")  # pid files, Unix sockets
    opt: Path = Path("/opt/testbed")  # the package (src/) and its venv

    @property
    def python(self) -> str:
        return str(self.opt / "venv" / "bin" / "python")

    @property
    def keys(self) -> Path:
        """The MN's SIG(0) key pairs (made there, never copied off it)."""
        return self.lib / "keys"

    @property
    def agent_socket(self) -> Path:
        return self.run / "agent.sock"

    @property
    def agent_events(self) -> Path:
        return self.log / "agent-events.jsonl"

    @property
    def location_log(self) -> Path:
        return self.log / "location.jsonl"

    @property
    def binding_actions(self) -> Path:
        return self.log / "binding-actions.jsonl"

    @property
    def binding_socket(self) -> Path:
        """Where the binding process answers status requests."""
        return self.run / "binding.sock"

    @property
    def traffic(self) -> Path:
        return self.lib / "traffic"


LAYOUT = Layout()


@dataclass(frozen=True)
class DaemonSpec:
    """A daemon as the ``testbed_daemon`` module runs it: restarted when its argv or env changes
    (or a file it reads did), ready when ``ready`` exits 0."""

    name: str
    argv: list[str]
    log: str
    env: dict[str, str]
    ready: list[str]
    ready_timeout: float = 30.0


def _daemon(name: str, argv: list[str], ready: list[str], env: dict[str, str] | None = None,
            timeout: float = 30.0, layout: Layout = LAYOUT) -> dict[str, Any]:
    return asdict(DaemonSpec(name, argv, str(layout.log / f"{name}.log"), dict(env or {}), ready, timeout))


def not_deployable(topo: Topology) -> list[tuple[str, str]]:
    """(field, what) for each part of the topology the roles do not deploy yet: one mobile
    node speaking SCTP over dual-stack access networks (radvd and DHCPv4) is what they do."""
    out: list[tuple[str, str]] = []
    if len(topo.mobiles) != 1:
        out.append(("mobile", f"{len(topo.mobiles)} mobile nodes"))
    for mn in topo.mobiles:
        if topo.nodes[mn].mptcp.enabled:
            out.append((f"nodes.{mn}.mptcp", "an MPTCP mobile node"))
    for k, a in enumerate(topo.access_networks):
        where = f"access_networks[{k}]"
        if a.ipv4 is None or a.ipv6 is None:
            out.append((where, "a single-family access network"))
        for name, on in (("dhcpv6", a.dhcpv6 != "off"), ("router_discovery", bool(a.router_discovery)),
                         ("nat", a.nat), ("ingress_filter", a.ingress_filter), ("shape", a.shape is not None),
                         ("medium", a.medium != "switched")):
            if on:
                out.append((f"{where}.{name}", f"{name} on an access network"))
    for k, link in enumerate(topo.links):
        if link.shape is not None:
            out.append((f"links[{k}].shape", "a shaped link"))
    return out


def topology_of(data: dict[str, Any]) -> tuple[Topology, LabPlan]:
    topo = loader.from_dict(data, "inventory: testbed_topology")
    return topo, addressing.plan(topo)


def _udp_bound(port: int) -> list[str]:
    return ["sh", "-c", f"ss -Hlun 'sport = :{port}' | grep -q ."]


def _log_has(log: Path, *needles: str) -> list[str]:
    """Exit 0 once ``log`` holds every needle (fixed strings)."""
    return ["sh", "-c", " && ".join(f"grep -qF -- {_sh(n)} {_sh(str(log))}" for n in needles)]


def _status(python: str, socket: Path) -> list[str]:
    """Exit 0 once the binding-driver endpoint on ``socket`` answers a status request in this
    protocol version (a binding process, a traffic client's driver)."""
    return [python, "-m", "testbed.mobility.driver", "status", str(socket), "--timeout", "2"]


def _sh(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


# ----------------------------------------------------------------------------- network
def network(data: dict[str, Any], node: str) -> dict[str, Any]:
    """The node's L3 as the lab sets it (``backends.l3``): addresses, routes, an AR's access
    bridge, forwarding, and the sysctls of static nodes or the mobile node; its interfaces'
    admin state (the MN attached to its first access networks only)."""
    topo, plan = topology_of(data)
    np = plan.nodes[node]
    mn = topo.mobile.node
    bridges = [{"name": i.ifname, "ports": [p.ifname for p in np.ifaces if p.master == i.ifname]}
               for i in np.ifaces if i.bridge]
    sysctls: dict[str, str] = {}
    optimistic: list[str] = []
    if np.forwards:
        sysctls |= {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
    keep = "0" if node == mn else "1"  # the MN's addresses go with its link; others' stay
    sysctls |= {"net.ipv6.conf.all.keep_addr_on_down": keep}
    if node == mn:
        for i in np.ifaces:
            base = f"net.ipv6.conf.{i.ifname}"
            sysctls |= {f"{base}.accept_ra": "2", f"{base}.autoconf": "1",
                        f"{base}.router_solicitation_delay": "0"}
            if topo.mobile.optimistic_dad:
                optimistic.append(i.ifname)
    else:
        for i in np.ifaces:
            base = f"net.ipv6.conf.{i.ifname}"
            if i.master:
                sysctls[f"{base}.disable_ipv6"] = "1"
            else:
                sysctls |= {f"{base}.accept_ra": "0", f"{base}.accept_dad": "0"}
    attached = {plan.access_iface(ar)[0].ifname for ar in topo.mobile.attached} if node == mn else set()
    access = {i.ifname for i in np.ifaces if i.access_router} if node == mn else set()
    sctp = topo.nodes[node].sctp
    if sctp.stack != "none":
        sysctls |= {f"net.sctp.{k}": str(getattr(sctp, k)) for k in SCTP_SYSCTLS}
    return {
        "packages": packages(topo, node),
        "bridges": bridges,
        "addresses": {i.ifname: [str(a) for a in i.addresses] for i in np.ifaces if i.addresses},
        "routes": [{"dst": str(r.dst), "via": str(r.via), "dev": r.dev} for r in np.routes],
        "sysctls": sysctls,
        "optimistic_dad": optimistic,
        # the MN's access interfaces: down, but for those it starts attached to, which the
        # mobile_node role raises once its agent runs (the agent sees their first link-up)
        "up": [i.ifname for i in np.ifaces if i.ifname not in access],
        "down": sorted(access - attached),
        "attach": sorted(attached),
        "sctp": sctp.stack != "none",
    }


PACKAGES = {  # the Debian packages each role runs (bind9 >= 9.20: bookworm-backports on bookworm)
    Role.DNS: ["bind9", "bind9-utils", "bind9-dnsutils"],
    Role.ACCESS_ROUTER: ["radvd", "isc-dhcp-server"],
    Role.MOBILE: ["dhcpcd-base", "ndisc6", "bind9-utils", "python3-venv", "util-linux"],
    Role.HOST: [],
    Role.ROUTER: [],
}


def packages(topo: Topology, node: str) -> list[str]:
    """What ``node`` needs installed: its role's packages, ip, tcpdump where it captures, a
    venv for the package on SCTP hosts."""
    spec = topo.nodes[node]
    out = ["iproute2", *PACKAGES[spec.role]]
    if spec.sctp.stack != "none":
        out.append("python3-venv")
    if any(v.a == node for v in addressing.plan(topo).veths):
        out.append("tcpdump")
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------- dns_server
def dns_server(data: dict[str, Any], key_rrs: list[str], layout: Layout = LAYOUT) -> dict[str, Any]:
    """named.conf, the zone's source (static records and the MN's KEY records), and named.

    The zone file named serves is a copy of the source made when the source changes: named
    rewrites its own copy as the MN updates, so the source stays what was deployed."""
    topo, plan = topology_of(data)
    z = zone_data(topo, plan)
    d = layout.lib / "named"
    paths = bind.NamedPaths(d, layout.log / "named.log", d / f"db.{z.zone}")
    tsig = layout.etc / "named" / f"{TSIG_KEY_NAME}.key"
    conf = layout.etc / "named" / "named.conf"
    quota = bind.SIG0_CHECKS_PER_MN * len(topo.mobiles)  # SIG(0) checks at once, as in a lab
    listen = z.listen[0] if z.listen else "127.0.0.1"
    zone = bind.render_zone(z, key_rrs)
    source = layout.etc / "named" / f"db.{z.zone}"
    return {
        "dirs": [str(layout.etc / "named"), str(d), str(layout.log), str(layout.run)],
        "files": [
            {"path": str(conf), "content": bind.render_conf(z, paths, tsig, TSIG_KEY_NAME, True, quota=quota),
             "daemon": "named"},
            {"path": str(source), "content": zone},
            {"path": str(paths.zonefile), "content": zone, "follows": str(source), "daemon": "named",
             "remove": [f"{paths.zonefile}.jnl"], "check": ["named-checkconf", "-z", str(conf)]},
        ],
        "tsig": {"path": str(tsig), "name": TSIG_KEY_NAME},
        "daemons": [_daemon("named", bind.named_argv(conf),
                            ["dig", "+short", "+time=1", "+tries=1", f"@{listen}", z.zone, "SOA"],
                            timeout=bind.Named.START_TIMEOUT, layout=layout)],
        "zone": z.zone,
    }


# ----------------------------------------------------------------------------- access_router
def access_router(data: dict[str, Any], node: str, layout: Layout = LAYOUT) -> dict[str, Any]:
    """radvd and dhcpd for the access network this router serves, on its bridge."""
    topo, plan = topology_of(data)
    acc = next(a for a in topo.access_networks if a.router == node)
    lan = plan.lan(node).ifname
    dns4 = plan.address_of(topo.dns.server, 4) or ""
    dns6 = plan.address_of(topo.dns.server, 6)
    etc, lib = layout.etc, layout.lib / "dhcpd"
    radvd_conf, dhcpd_conf = etc / "radvd" / "radvd.conf", etc / "dhcpd" / "dhcpd.conf"
    radvd_pid, leases = layout.run / "radvd-own.pid", lib / "dhcpd.leases"
    return {
        "dirs": [str(etc / "radvd"), str(etc / "dhcpd"), str(lib), str(layout.log), str(layout.run)],
        "files": [
            {"path": str(radvd_conf), "content": radvd.render_conf(lan, acc, dns6, topo.dns.zone),
             "daemon": "radvd", "check": ["radvd", "-c", "-C", str(radvd_conf), "-p", str(radvd_pid)]},
            {"path": str(dhcpd_conf), "content": dhcpd.render_conf(acc, dns4, topo.dns.zone),
             "daemon": "dhcpd", "check": ["dhcpd", "-t", "-4", "-cf", str(dhcpd_conf)]},
            {"path": str(leases), "content": "", "create_only": True},
        ],
        "daemons": [
            _daemon("radvd", radvd.radvd_argv(radvd_conf, radvd_pid, layout.log / "radvd.log"),
                    ["test", "-s", str(radvd_pid)], layout=layout),
            _daemon("dhcpd", dhcpd.dhcpd_argv(dhcpd_conf, leases, lib / "dhcpd.pid", lan),
                    _udp_bound(67), layout=layout),
        ],
    }


# ----------------------------------------------------------------------------- mobile_node
def mobile_node(data: dict[str, Any], key_file: str, optimistic_dad: bool = True,
                layout: Layout = LAYOUT) -> dict[str, Any]:
    """dhcpcd for every access interface, the mobility agent, and on an SCTP MN the TraSH
    binding process, which sends the SIG(0)-signed location update with ``key_file``.
    ``optimistic_dad``: the host's kernel has it (else the network role turned DAD off)."""
    topo, plan = topology_of(data)
    m = topo.mobile
    metrics = access_metrics(topo, plan)
    db = layout.lib / "dhcpcd"
    sctp = sctp_mobile(topo)
    loc: dict[str, str] = {}
    if m.location == "sig0":
        loc = location_env(topo, plan, key=Path(key_file))
    elif m.location == "tsig":
        loc = location_env(topo, plan, tsig=layout.keys / f"{TSIG_KEY_NAME}.key")
    loc_env = {**loc, "TESTBED_LOC_LOG": str(layout.location_log)} if loc else {}
    ifaces = [i.ifname for i in plan.nodes[m.node].ifaces]
    paths = agent.AgentPaths(layout.agent_socket, layout.run / "agent-state.json", layout.agent_events)
    python = layout.python
    ping = [python, "-m", "testbed.host.jsonlines", "request", str(layout.agent_socket), '{"cmd": "ping"}']
    daemons = [
        _daemon("dhcpcd", dhcpcd.dhcpcd_argv(db), _log_has(layout.log / "dhcpcd.log", *(
            f"{i}: " for i in metrics)), layout=layout),
        _daemon("agent", agent.agent_argv(python, paths, ifaces, m.optimistic_dad and optimistic_dad,
                                          bool(loc) and not sctp),
                ping, {**({} if sctp else loc_env), "PYTHONUNBUFFERED": "1"},
                timeout=agent.MobilityAgent.START_TIMEOUT, layout=layout),
    ]
    if sctp:
        daemons.append(_daemon(
            "binding", binding.binding_argv(python, layout.agent_socket, layout.binding_actions, bool(loc),
                                            layout.binding_socket, policy=m.policy),
            _status(python, layout.binding_socket), loc_env,
            timeout=binding.BindingService.START_TIMEOUT, layout=layout))
    return {
        "dirs": [str(db), str(layout.log), str(layout.run), str(layout.traffic)],
        "files": [{"path": str(db / "dhcpcd.conf"), "content": dhcpcd.render_conf(metrics),
                   "daemon": "dhcpcd"}],
        "daemons": daemons,
        "sig0": {"dir": str(layout.keys), "name": topo.dns_name(m.node),
                 "algorithms": ",".join(topo.dns.sig0_algorithms), "ttl": topo.dns.ttl,
                 "algorithm": m.sig0_algorithm},
        "location": m.location,
        "agent_socket": str(layout.agent_socket),
    }


# ----------------------------------------------------------------------------- correspondent
def correspondent(data: dict[str, Any], node: str, traffic: dict[str, Any] | None = None,
                  run: str = "", layout: Layout = LAYOUT) -> dict[str, Any]:
    """The SCTP traffic server, listening on the node's addresses of the traffic's families (one
    association: a run starts its own, ``run``, with its own stats file, in place of the one the
    deploy left listening)."""
    _, plan = topology_of(data)
    params = Traffic.model_validate(traffic or {})
    d = layout.traffic / run if run else layout.traffic
    stats = d / "server.json"
    bind_to = ",".join(a for f in params.families if (a := plan.address_of(node, f)))
    return {
        "dirs": [str(d), str(layout.log), str(layout.run)],
        # the log beside the stats: the daemon module makes the log's directory
        "daemons": [{**_daemon("traffic-server", server_argv(layout.python, bind_to, stats, params),
                               ["test", "-s", str(stats)], timeout=90.0, layout=layout),
                     "log": str(d / "server.log")}],
        "stats": str(stats),
    }


ROLE_OF = {Role.DNS: "dns_server", Role.ACCESS_ROUTER: "access_router", Role.MOBILE: "mobile_node",
           Role.HOST: "correspondent", Role.ROUTER: "router"}


# ----------------------------------------------------------------------------- capture
def capture_links(data: dict[str, Any], node: str) -> list[str]:
    """The interfaces ``node`` captures: as in the lab, each link's infrastructure end (the core
    side of a core link, the AR's port of an access link), which stays up through a move."""
    _, plan = topology_of(data)
    return [v.a_ifname for v in plan.veths if v.a == node]


def capture(data: dict[str, Any], node: str, run: str, layout: Layout = LAYOUT) -> dict[str, Any]:
    """One tcpdump per captured interface of ``node`` for the run ``run``: ``<link>.pcap`` and
    its log (ready once that run's tcpdump says "listening on") in the run's directory."""
    d = layout.lib / "capture" / run
    return {"dir": str(d), "daemons": [
        {**_daemon(f"tcpdump-{link}", tcpdump_argv(link, d / f"{link}.pcap"),
                   _log_has(d / f"{link}.tcpdump.log", "listening on"), layout=layout),
         "log": str(d / f"{link}.tcpdump.log"), "pcap": str(d / f"{link}.pcap")}
        for link in capture_links(data, node)]}


# ----------------------------------------------------------------------------- traffic
def traffic_client(data: dict[str, Any], local: str, traffic: dict[str, Any] | None = None,
                   run: str = "", layout: Layout = LAYOUT) -> dict[str, Any]:
    """The MN's SCTP client toward the correspondent, from ``local`` (its current addresses,
    comma-separated), driven by the binding process through TRAFFIC_CONTROL."""
    topo, plan = topology_of(data)
    cn = correspondent_of(topo)
    d = layout.traffic / run if run else layout.traffic
    stats = d / "client.json"
    params = Traffic.model_validate(traffic or {})
    ready = _status(layout.python, TRAFFIC_CONTROL)
    server = ",".join(a for f in params.families if (a := plan.address_of(cn, f)))
    argv = client_argv(layout.python, local, server, stats, params, TRAFFIC_CONTROL)
    return {"daemon": {**_daemon("traffic-client", argv, ready, timeout=90.0, layout=layout),
                       "log": str(d / "client.log")},  # its directory made by the daemon module
            "stats": str(stats)}


def start_cmd(spec: dict[str, Any], layout: Layout = LAYOUT) -> str:
    """A shell command that starts the daemon ``spec`` and returns once it is ready (for
    ``ansible.builtin.raw``: one SSH command, no module run; ``testbed.host.daemonctl``)."""
    return shlex.join([layout.python, "-m", "testbed.host.daemonctl", "start", json.dumps(spec)])


def stop_cmd(name: str, wait: float = 0.0, layout: Layout = LAYOUT) -> str:
    """A shell command that stops the daemon ``name`` (after ``wait`` s for it to end itself)."""
    return shlex.join([layout.python, "-m", "testbed.host.daemonctl", "stop", name, "--wait", f"{wait:g}"])


def correspondent_of(topo: Topology) -> str:
    """The first host with SCTP (the scenario runner's default peer)."""
    for n, spec in topo.nodes.items():
        if spec.role is Role.HOST and spec.sctp.stack != "none":
            return n
    raise ValueError(f"topology {topo.name} has no host with SCTP (a correspondent)")
