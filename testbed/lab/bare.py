"""A bare lab (``testbed up --bare``): hosts for ``testbed deploy``, wired but not configured.

Real hosts are separate machines reached over SSH; here each node is a container of the docker
backend made from the bare host image (``images/bare-host``: every role's packages, sshd, nothing
configured, no lab daemon). The lab makes only what a data centre would hand over:

* the cables: the topology's links, with no address, route or sysctl on them (the playbooks'
  network role sets those);
* a management network: a bridge in the controller's namespace ``<lab>-ctl``, one port per
  host, whose end on the host is ``mgmt0`` with an address from ``MGMT_PREFIX``. It is separate
  from the links a move takes down and routes nowhere else; the controller (``ip netns exec
  <lab>-ctl testbed deploy …``) is the only other host on it, so no lab traffic comes from the
  root namespace;
* root's SSH key: a key pair made for the lab in ``<run>/ssh/``, whose public half each host
  gets as root's ``authorized_keys`` (as a cloud's metadata service would give it);
* for a kernel-SCTP node, the machine itself: its User-Mode Linux kernel boots in the container
  (the container is the hardware; the guest, with its own SCTP, is the host), with ``mgmt0`` as
  one more NIC, writable overlays on the image's /etc, /var, /opt and /root (changes live in the
  guest), and sshd started in the guest.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.errors import CommandError, ConfigError
from testbed.host import netns
from testbed.host.tools import require
from testbed.lab.nodes import Nodes
from testbed.model.topology import Topology
from testbed.progress import Progress
from testbed.runtimes import kernel_nodes
from testbed.state import LabState, namespace_label

MGMT_IF = "mgmt0"
MGMT_BRIDGE = "mgmt"
CONTROLLER = "ctl"
MGMT_PREFIX = ipaddress.ip_network("203.0.113.192/26")
# a kernel node's guest may change these (overlays on the image's, changes kept in the guest)
GUEST_OVERLAYS = (Path("/etc"), Path("/var"), Path("/opt"), Path("/root"))
GUEST_MEMORY_MB = 256  # sshd and Ansible's modules beside the node's own daemons
SSHD = "mkdir -p -m 755 /run/sshd && exec /usr/sbin/sshd -D -e"


@dataclass(frozen=True)
class Management:
    """The management network: the controller's address and each host's."""

    prefix: ipaddress.IPv4Network
    controller: ipaddress.IPv4Interface
    hosts: dict[str, ipaddress.IPv4Interface]

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": str(self.prefix), "controller": str(self.controller),
                "hosts": {n: str(a) for n, a in self.hosts.items()}}


def topology_prefixes(topo: Topology) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [p for link in topo.links for p in (link.ipv4, link.ipv6)] + \
        [p for acc in topo.access_networks for p in (acc.ipv4, acc.ipv6)]


def plan_management(topo: Topology, source: str, prefix: ipaddress.IPv4Network = MGMT_PREFIX) -> Management:
    """Addresses on the management network, which must not overlap a lab prefix."""
    for p in topology_prefixes(topo):
        if p.version == 4 and p.overlaps(prefix):
            raise ConfigError(source, "links", f"{p} overlaps the management network {prefix} of a "
                              "bare lab", "move that prefix out of it")
    hosts = prefix.hosts()
    ctl = next(hosts)
    out = {n: ipaddress.IPv4Interface(f"{next(hosts)}/{prefix.prefixlen}") for n in topo.nodes}
    return Management(prefix, ipaddress.IPv4Interface(f"{ctl}/{prefix.prefixlen}"), out)


def ssh_keypair(directory: Path) -> tuple[Path, Path]:
    """The controller's key pair (ed25519, made by ssh-keygen) and the authorized_keys file."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = directory / "id_ed25519"
    if not key.exists():
        keygen = require("ssh-keygen", "openssh-client")
        argv = [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "testbed-controller", "-f", str(key)]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if cp.returncode != 0:
            raise CommandError(["ssh-keygen"], cp.returncode, cp.stderr)
    authorized = directory / "authorized_keys"
    authorized.write_text(Path(f"{key}.pub").read_text())
    authorized.chmod(0o600)
    return key, authorized


def prepare(state: LabState, topo: Topology) -> Management:
    """Before the backend builds anything: the key pair and the management plan, recorded."""
    mgmt = plan_management(topo, state.topology_file)
    key, authorized = ssh_keypair(state.dir / "ssh")
    state.extra["bare"] = {"management": mgmt.to_dict(), "ssh_key": str(key),
                           "authorized_keys": str(authorized), "user": "root"}
    state.save()
    return mgmt


def build(nodes: Nodes, progress: Progress) -> None:
    """Hosts, links and the management network; kernel-SCTP machines booted, sshd everywhere."""
    topo, plan, state = nodes.topo, nodes.plan, nodes.state
    mgmt = prepare(state, topo)
    stacks = kernel_nodes.kernel_nodes(topo)
    nodes.backend.build(plan, state, progress, frozenset(stacks))
    progress("management network")
    ctl = state.ns(CONTROLLER)
    state.netns.append(ctl)
    state.save()
    netns.run(None, ["ip", "netns", "add", ctl])
    netns.run(None, ["ip", "-n", ctl, "link", "set", "dev", "lo", "alias", namespace_label(state.lab)])
    cmds = ["link set dev lo up",
            f"link add {MGMT_BRIDGE} type bridge forward_delay 0 stp_state 0",
            f"addr add {mgmt.controller} dev {MGMT_BRIDGE}", f"link set dev {MGMT_BRIDGE} up"]
    links = []
    for name in topo.nodes:
        port = f"m-{name}"
        links.append(f"link add name {port} netns {ctl} type veth peer name {MGMT_IF} netns {state.ns(name)}")
        cmds += [f"link set dev {port} master {MGMT_BRIDGE}", f"link set dev {port} up"]
    netns.run(None, ["ip", "-batch", "-"], input="\n".join(links) + "\n")
    netns.run(None, ["ip", "-n", ctl, "-batch", "-"], input="\n".join(cmds) + "\n")
    netns.run(ctl, ["sysctl", "-q", "-w", f"net.ipv6.conf.{MGMT_BRIDGE}.disable_ipv6=1"])
    for name in topo.nodes:
        if name not in stacks:
            netns.run(None, ["ip", "-n", state.ns(name), "-batch", "-"],
                      input=f"addr add {mgmt.hosts[name]} dev {MGMT_IF}\nlink set dev {MGMT_IF} up\n")
    if stacks:
        _boot_machines(nodes, stacks, mgmt, progress)


def _boot_machines(nodes: Nodes, stacks: dict[str, str], mgmt: Management, progress: Progress) -> None:
    """Each kernel-SCTP host's UML kernel, with no lab settings: the guest gets its management
    address and sshd, nothing more (no SCTP sysctls, no L3 plan)."""
    topo, plan, state = nodes.topo, nodes.plan, nodes.state
    configs = []
    for n, stack in stacks.items():
        if stack != "uml":
            raise ConfigError(state.topology_file, f"nodes.{n}.sctp.stack", "a bare lab boots "
                              "kernel-SCTP hosts in User-Mode Linux only", "use stack: uml or auto")
        cfg = kernel_nodes.config_for(topo, plan.nodes[n], stack, state.ns(n), state.dir / n,
                                      nodes.backend.kernel_host(state, n))
        configs.append(dataclasses.replace(cfg, nics=[*cfg.nics, MGMT_IF], sctp={},
                                           overlays=GUEST_OVERLAYS, memory_mb=GUEST_MEMORY_MB))
    progress(f"booting {', '.join(stacks)} (uml)")
    booted, errors = kernel_nodes.boot_all(stacks, configs)
    for node in booted:
        nodes.adopt(node)
    if errors:
        raise errors[0]
    for n in stacks:
        rt = nodes.runtime(n)
        rt.run(["ip", "-batch", "-"], input=f"addr add {mgmt.hosts[n]} dev {MGMT_IF}\n"
                                             f"link set dev {MGMT_IF} up\n")
        rt.spawn(["sh", "-c", SSHD], log=state.dir / n / "sshd.log")


def info(state: LabState) -> dict[str, Any]:
    """What ``testbed inventory`` needs of a bare lab: management addresses, key, user."""
    return dict(state.extra.get("bare") or {})
