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

from testbed.capture.tcpdump import buffer_kib, capture_points, tcpdump_argv
from testbed.lab import middlebox, shaping
from testbed.lab.wiring import (
    access_dhcpv6,
    access_metrics,
    binding_mobile,
    location_env,
    sctp_mobile,
    source_routing,
    trusted_networks,
    zone_data,
)
from testbed.model import addressing, loader
from testbed.model.addressing import LabPlan
from testbed.model.shaping import shaped
from testbed.model.topology import Role, Topology
from testbed.runtimes.guest import SCTP_SYSCTLS
from testbed.scenario.model import Traffic
from testbed.scenario.stream_traffic import PM_TYPE, stream_client_argv, stream_server_argv
from testbed.scenario.traffic import client_argv, server_argv
from testbed.services import agent, bind, binding, dhcpcd, dhcpd, dhcpd6, irdp, radvd
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
    def agent_state(self) -> Path:
        return self.run / "agent-state.json"

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
    mobile = node in topo.mobiles  # one of the MNs (several: copies of mobile.node)
    bridges = [{"name": i.ifname, "ports": [p.ifname for p in np.ifaces if p.master == i.ifname]}
               for i in np.ifaces if i.bridge]
    sysctls: dict[str, str] = {}
    optimistic: list[str] = []
    if np.forwards:
        sysctls |= {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
    keep = "0" if mobile else "1"  # the MN's addresses go with its link; others' stay
    sysctls |= {"net.ipv6.conf.all.keep_addr_on_down": keep}
    if mobile:
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
    attached = {plan.access_iface(ar, node)[0].ifname for ar in topo.mobile.attached} if mobile else set()
    access = {i.ifname for i in np.ifaces if i.access_router} if mobile else set()
    sctp = topo.nodes[node].sctp
    if sctp.stack != "none":
        sysctls |= {f"net.sctp.{k}": str(getattr(sctp, k)) for k in SCTP_SYSCTLS}
    mptcp = topo.nodes[node].mptcp
    if mptcp.enabled:
        sysctls["net.mptcp.enabled"] = "1"
    acc = next((a for a in topo.access_networks if a.router == node), None)
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
        # the in-kernel path manager's limits (the lab sets them per namespace)
        "mptcp": {"subflows": mptcp.subflows, "add_addr_accepted": mptcp.add_addr_accepted}
        if mptcp.enabled else None,
        # an AR's §6 middleboxes (NAT, ingress filter) as the lab's nftables rules
        "nft": middlebox.rules_for(acc) if acc is not None else "",
        "shaping": [shape_spec(sh) for sh in shaped(plan) if sh.node == node],
    }


def shape_spec(sh: Any) -> dict[str, Any]:
    """One shaped interface as the network role applies it: netem where the host's kernel has
    it, else a tbf rate and an nftables loss rule (delay and jitter then fail, named)."""
    return {"ifname": sh.ifname, "field": sh.field, "needs_netem": sh.shape.needs_netem,
            "netem": shaping.netem_argv(sh.ifname, sh.shape),
            "tbf": shaping.tbf_argv(sh.ifname, sh.shape.rate) if sh.shape.rate else None,
            "loss": shaping.loss_rules(sh.ifname, sh.shape.loss) if sh.shape.loss else None}


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
    if spec.sctp.stack != "none" or spec.mptcp.enabled:
        out.append("python3-venv")
    acc = next((a for a in topo.access_networks if a.router == node), None)
    if acc is not None and middlebox.rules_for(acc) or any(
            sh.node == node and sh.shape.loss for sh in shaped(addressing.plan(topo))):
        out.append("nftables")
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
    """The daemons the lab runs on this router (``Wiring.ar_daemons``), on its bridge: radvd
    where the network has IPv6, dhcpd where it has IPv4, dhcpd -6 where it serves DHCPv6, and
    the RFC 1256 advertiser where it does router discovery."""
    topo, plan = topology_of(data)
    acc = next(a for a in topo.access_networks if a.router == node)
    lan = plan.lan(node).ifname
    dns4 = plan.address_of(topo.dns.server, 4) or ""
    dns6 = plan.address_of(topo.dns.server, 6)
    etc, lib = layout.etc, layout.lib / "dhcpd"
    dirs = [str(etc / "radvd"), str(etc / "dhcpd"), str(lib), str(layout.log), str(layout.run)]
    files: list[dict[str, Any]] = []
    daemons: list[dict[str, Any]] = []
    if acc.ipv6 is not None:
        conf, pid = etc / "radvd" / "radvd.conf", layout.run / "radvd-own.pid"
        files.append({"path": str(conf), "content": radvd.render_conf(lan, acc, dns6, topo.dns.zone),
                      "daemon": "radvd", "check": ["radvd", "-c", "-C", str(conf), "-p", str(pid)]})
        daemons.append(_daemon("radvd", radvd.radvd_argv(conf, pid, layout.log / "radvd.log"),
                               ["test", "-s", str(pid)], layout=layout))
    servers = []  # (name, family, config, argv of (conf, leases, pidfile, ifname), port)
    if acc.ipv4 is not None:
        servers.append(("dhcpd", 4, dhcpd.render_conf(acc, dns4, topo.dns.zone), dhcpd.dhcpd_argv, 67))
    if acc.dhcpv6 != "off":
        servers.append(("dhcpd6", 6, dhcpd6.render_conf(acc, dns6, topo.dns.zone), dhcpd6.dhcpd6_argv, 547))
    for name, family, content, argv, port in servers:
        conf, leases = etc / "dhcpd" / f"{name}.conf", lib / f"{name}.leases"
        files += [{"path": str(conf), "content": content, "daemon": name,
                   "check": ["dhcpd", "-t", f"-{family}", "-cf", str(conf)]},
                  {"path": str(leases), "content": "", "create_only": True}]
        daemons.append(_daemon(name, argv(conf, leases, lib / f"{name}.pid", lan), _udp_bound(port),
                               layout=layout))
    if acc.router_discovery and acc.ipv4 is not None:
        argv = irdp.irdp_argv(layout.python, lan, str(acc.ipv4.network_address + 1), acc.router_discovery,
                              irdp.irdp_lifetime(acc.router_discovery))
        daemons.append(_daemon("irdp", argv, _log_has(layout.log / "irdp.log", "advertising"), layout=layout))
    return {"dirs": dirs, "files": files, "daemons": daemons}


def needs_package(topo: Topology, node: str) -> bool:
    """Does ``node`` run the testbed package (an agent, a binding process, a traffic app, the
    router-discovery advertiser, an attack program)?"""
    spec = topo.nodes[node]
    if spec.role in (Role.MOBILE, Role.HOST):
        return True
    acc = next((a for a in topo.access_networks if a.router == node), None)
    return acc is not None and bool(acc.router_discovery) and acc.ipv4 is not None


# ----------------------------------------------------------------------------- mobile_node
def mobile_node(data: dict[str, Any], key_file: str, optimistic_dad: bool = True,
                layout: Layout = LAYOUT, node: str | None = None) -> dict[str, Any]:
    """The daemons the lab runs on a mobile node (``node``, default the topology's
    ``mobile.node``): dhcpcd for every access interface (DHCPv6 where a network serves it), the
    mobility agent, and on an SCTP or MPTCP MN the TraSH binding process, which then sends the
    SIG(0)-signed location update with ``key_file`` (else the agent does).
    ``optimistic_dad``: the host's kernel has it (else the network role turned DAD off)."""
    topo, plan = topology_of(data)
    m = topo.mobile
    mn = node or m.node
    metrics = access_metrics(topo, plan, mn)
    v6 = {i: mode for i, mode in access_dhcpv6(topo, plan, mn).items() if i in metrics}
    db = layout.lib / "dhcpcd"
    binds = binding_mobile(topo, mn)
    loc: dict[str, str] = {}
    if m.location == "sig0":
        loc = location_env(topo, plan, mn, key=Path(key_file))
    elif m.location == "tsig":
        loc = location_env(topo, plan, mn, tsig=layout.keys / f"{TSIG_KEY_NAME}.key")
    loc_env = {**loc, "TESTBED_LOC_LOG": str(layout.location_log)} if loc else {}
    ifaces = [i.ifname for i in plan.nodes[mn].ifaces]
    paths = agent.AgentPaths(layout.agent_socket, layout.agent_state, layout.agent_events)
    python = layout.python
    ping = [python, "-m", "testbed.host.jsonlines", "request", str(layout.agent_socket), '{"cmd": "ping"}']
    rdisc = any(a.router_discovery for a in topo.access_networks)
    daemons = [
        _daemon("dhcpcd", dhcpcd.dhcpcd_argv(db, dhcpcd.dhcpv6_on(v6)), _log_has(layout.log / "dhcpcd.log", *(
            f"{i}: " for i in metrics)), layout=layout),
        _daemon("agent", agent.agent_argv(python, paths, ifaces, m.optimistic_dad and optimistic_dad,
                                          bool(loc) and not binds, trusted_networks(topo), rdisc,
                                          source_routing(topo, mn)),
                ping, {**({} if binds else loc_env), "PYTHONUNBUFFERED": "1"},
                timeout=agent.MobilityAgent.START_TIMEOUT, layout=layout),
    ]
    if binds:
        daemons.append(_daemon(
            "binding", binding.binding_argv(python, layout.agent_socket, layout.binding_actions, bool(loc),
                                            layout.binding_socket, policy=m.policy),
            _status(python, layout.binding_socket), loc_env,
            timeout=binding.BindingService.START_TIMEOUT, layout=layout))
    return {
        "dirs": [str(db), str(layout.log), str(layout.run), str(layout.traffic)],
        "files": [{"path": str(db / "dhcpcd.conf"), "content": dhcpcd.render_conf(metrics, v6),
                   "daemon": "dhcpcd"}],
        "daemons": daemons,
        "sig0": {"dir": str(layout.keys), "name": topo.dns_name(mn),
                 "algorithms": ",".join(topo.dns.sig0_algorithms), "ttl": topo.dns.ttl,
                 "algorithm": m.sig0_algorithm},
        "location": m.location,
        "agent_socket": str(layout.agent_socket),
    }


# ----------------------------------------------------------------------------- correspondent
def traffic_of(topo: Topology, traffic: dict[str, Any] | None) -> Traffic:
    """A run's traffic (the scenario's), or for the deploy the topology's own transport: SCTP
    where the MN speaks it, else MPTCP where it does, else plain TCP."""
    mn = topo.nodes[topo.mobile.node]
    own = "sctp" if sctp_mobile(topo) else "mptcp" if mn.mptcp.enabled else "tcp"
    return Traffic.model_validate({"transport": own, **(traffic or {})})


def correspondent(data: dict[str, Any], node: str, traffic: dict[str, Any] | None = None,
                  run: str = "", layout: Layout = LAYOUT) -> dict[str, Any]:
    """The traffic server of the transport (SCTP's on the node's addresses of the traffic's
    families; TCP's and MPTCP's on its IPv4 address, one connection per MN). A run starts its
    own (``run``), with its own stats file, in place of the one the deploy left listening."""
    topo, plan = topology_of(data)
    params = traffic_of(topo, traffic)
    d = layout.traffic / run if run else layout.traffic
    if params.transport == "sctp":
        stats = d / "server.json"
        bind_to = ",".join(a for f in params.families if (a := plan.address_of(node, f)))
        argv = server_argv(layout.python, bind_to, stats, params)
        ready = ["test", "-s", str(stats)]
    else:
        stats = d / "stream-server.json"
        argv = stream_server_argv(layout.python, params, plan.address_of(node, 4) or "", stats,
                                  len(topo.mobiles))
        ready = ["test", "-e", str(stats)]
    return {
        "dirs": [str(d), str(layout.log), str(layout.run)],
        # the log beside the stats: the daemon module makes the log's directory
        "daemons": [{**_daemon("traffic-server", argv, ready, timeout=90.0, layout=layout),
                     "log": str(d / "server.log")}],
        "stats": str(stats),
    }


ROLE_OF = {Role.DNS: "dns_server", Role.ACCESS_ROUTER: "access_router", Role.MOBILE: "mobile_node",
           Role.HOST: "correspondent", Role.ROUTER: "router"}


def daemons_of(data: dict[str, Any], node: str) -> list[str]:
    """The daemons the deploy runs on ``node`` (by its role), by name."""
    topo, _ = topology_of(data)
    role = topo.nodes[node].role
    if role is Role.DNS:
        return ["named"]
    if role is Role.ACCESS_ROUTER:
        return [d["name"] for d in access_router(data, node)["daemons"]]
    if role is Role.MOBILE:
        return [d["name"] for d in mobile_node(data, "", node=node)["daemons"]]
    return []


# ----------------------------------------------------------------------------- capture
def capture_links(data: dict[str, Any], node: str) -> list[str]:
    """The interfaces ``node`` captures: as in the lab (``capture_points``), each link's
    infrastructure end (the core side of a core link, the AR's port of an access link, which
    stays up through a move; with several MNs the AR's bridge)."""
    _, plan = topology_of(data)
    return [ifname for n, ifname in capture_points(plan) if n == node]


def capture(data: dict[str, Any], node: str, run: str, layout: Layout = LAYOUT) -> dict[str, Any]:
    """One tcpdump per captured interface of ``node`` for the run ``run``: ``<link>.pcap`` and
    its log (ready once that run's tcpdump says "listening on") in the run's directory."""
    topo, _ = topology_of(data)
    d = layout.lib / "capture" / run
    ring = buffer_kib(len(topo.mobiles))
    return {"dir": str(d), "daemons": [
        {**_daemon(f"tcpdump-{link}", tcpdump_argv(link, d / f"{link}.pcap", ring),
                   _log_has(d / f"{link}.tcpdump.log", "listening on"), layout=layout),
         "log": str(d / f"{link}.tcpdump.log"), "pcap": str(d / f"{link}.pcap")}
        for link in capture_links(data, node)]}


# ----------------------------------------------------------------------------- traffic
def traffic_client(data: dict[str, Any], local: str, traffic: dict[str, Any] | None = None,
                   run: str = "", layout: Layout = LAYOUT) -> dict[str, Any]:
    """The MN's client toward the correspondent, from ``local`` (its current addresses,
    comma-separated): SCTP's, or MPTCP's, driven by the binding process through TRAFFIC_CONTROL,
    or plain TCP's. ``setup``: a shell command to run first (MPTCP's path manager for the
    binding mode, as the lab sets it)."""
    topo, plan = topology_of(data)
    cn = correspondent_of(topo)
    d = layout.traffic / run if run else layout.traffic
    params = traffic_of(topo, traffic)
    ready = _status(layout.python, TRAFFIC_CONTROL)
    setup = ""
    if params.transport == "sctp":
        stats = d / "client.json"
        server = ",".join(a for f in params.families if (a := plan.address_of(cn, f)))
        argv = client_argv(layout.python, local, server, stats, params, TRAFFIC_CONTROL)
    else:
        stats = d / "stream-client.json"
        argv = stream_client_argv(layout.python, params, local, plan.address_of(cn, 4) or "", stats,
                                  TRAFFIC_CONTROL)
        if params.transport == "mptcp":
            setup = (f"sysctl -qw net.mptcp.pm_type={PM_TYPE[params.binding]} && "
                     f"rm -f {shlex.quote(str(TRAFFIC_CONTROL))}")
        else:
            ready = ["test", "-e", str(stats)]  # written once connected
    return {"daemon": {**_daemon("traffic-client", argv, ready, timeout=90.0, layout=layout),
                       "log": str(d / "client.log")},  # its directory made by the daemon module
            "stats": str(stats), "setup": setup, "transport": params.transport}


def start_cmd(spec: dict[str, Any], layout: Layout = LAYOUT) -> str:
    """A shell command that starts the daemon ``spec`` and returns once it is ready (for
    ``ansible.builtin.raw``: one SSH command, no module run; ``testbed.host.daemonctl``)."""
    return shlex.join([layout.python, "-m", "testbed.host.daemonctl", "start", json.dumps(spec)])


def stop_cmd(name: str, wait: float = 0.0, layout: Layout = LAYOUT, signal: str = "TERM") -> str:
    """A shell command that stops the daemon ``name`` with ``signal`` (after ``wait`` s for it to
    end itself)."""
    return shlex.join([layout.python, "-m", "testbed.host.daemonctl", "stop", name, "--wait", f"{wait:g}",
                       *(["--signal", signal] if signal != "TERM" else [])])


def correspondent_of(topo: Topology) -> str:
    """The first host that speaks the mobile node's transport (SCTP, else MPTCP, else any host
    for plain TCP): the scenario runner's default peer."""
    mn = topo.nodes[topo.mobile.node]
    for n, spec in topo.nodes.items():
        if spec.role is not Role.HOST:
            continue
        if sctp_mobile(topo):
            if spec.sctp.stack != "none":
                return n
        elif not mn.mptcp.enabled or spec.mptcp.enabled:
            return n
    raise ValueError(f"topology {topo.name} has no host that speaks the mobile node's transport "
                     "(a correspondent)")
