"""The lab: bring a topology up (namespaces, links, daemons), move the MN, tear it all down.

A ``Lab`` is rebuilt from ``state.json`` by every CLI command, so nothing lives only in the
memory of the process that ran ``testbed up``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from testbed.errors import LabStateError, TestbedError
from testbed.host import netns
from testbed.host.procs import alive
from testbed.mobility.location.provision import provision_keys
from testbed.model import addressing, loader
from testbed.model.addressing import LabPlan
from testbed.model.topology import Role, Topology
from testbed.runtimes import kernel_nodes as vmnodes
from testbed.runtimes.base import NodeRuntime
from testbed.runtimes.namespace import NamespaceNode
from testbed.services.agent import MobilityAgent
from testbed.services.base import Daemon, ServiceRecord
from testbed.services.bind import Named, ZoneData, ZoneKeys, sig0_supported
from testbed.services.binding import BindingService
from testbed.services.dhclient import Dhclient
from testbed.services.dhcpd import Dhcpd
from testbed.services.radvd import Radvd
from testbed.state import DEFAULT_LAB, LabState, known_labs, lab_dir, locked

Progress = Callable[[str], None]
MoveMode = Literal["make-before-break", "break-before-make"]
CONFIGURE_TIMEOUT = 20.0
TSIG_KEY_NAME = "mn-tsig"


def _quiet(_: str) -> None:
    pass


@dataclass
class AccessState:
    """What the MN holds on one access interface."""

    ifname: str
    carrier: bool
    ipv4: list[str]
    ipv6: list[str]  # global, usable (not tentative)


class Lab:
    def __init__(self, state: LabState, topo: Topology) -> None:
        self.state = state
        self.topo = topo
        self.plan: LabPlan = addressing.plan(topo)
        self.warnings: list[str] = []
        self._vms: dict[str, Any] = {}  # node -> VmNode connected from this process

    # ---------------------------------------------------------------- construction
    @classmethod
    def open(cls, lab: str = DEFAULT_LAB) -> Lab:
        state = LabState.load(lab)
        topo = loader.from_dict(state.topology, state.topology_file)
        return cls(state, topo)

    @classmethod
    def up(
        cls, topology: str | Path | None = None, lab: str = DEFAULT_LAB, progress: Progress = _quiet
    ) -> Lab:
        """Build and start a lab; on any failure or Ctrl-C remove what was made, then re-raise."""
        path = loader.resolve(topology)
        topo = loader.load(path)  # bad input fails here, before anything exists
        with locked(lab):
            if LabState.exists(lab):
                old = LabState.load(lab)
                if old.status == "up" or (old.owner_pid and alive(old.owner_pid)):
                    raise LabStateError(f"lab {lab!r} is already up ({lab_dir(lab)}); `testbed down` first")
                raise LabStateError(
                    f"lab {lab!r} left state behind ({old.status}); run `testbed clean` first"
                )
            state = LabState(lab, str(path.resolve()), topo.model_dump(mode="json"), owner_pid=os.getpid())
            state.save()
            self = cls(state, topo)
            try:
                self._build(progress)
                state.status = "up"
                state.owner_pid = 0
                state.save()
            except BaseException:
                state.status = "failed"
                state.save()
                self._teardown(_quiet)
                raise
        return self

    def _build(self, progress: Progress) -> None:
        from testbed.backends.mininet import MininetBackend

        backend = MininetBackend()
        if not sig0_supported():
            self.warnings.append("SIG(0) needs BIND >= 9.20: the zone accepts TSIG updates only")
        stacks = vmnodes.kernel_nodes(self.topo)
        vm_names = list(stacks)
        configs = [
            vmnodes.config_for(self.topo, self.plan.nodes[n], stacks[n], self.state.ns(n),
                               self.state.dir / n)
            for n in vm_names
        ]  # resolved before anything is built: a missing kernel fails here
        backend.build(self.plan, self.state, progress, frozenset(vm_names))
        self._resolvers()
        boot = None
        if configs:  # VMs boot (seconds under TCG) while the daemons start
            progress(f"booting {', '.join(f'{n} ({s})' for n, s in stacks.items())}")
            result: dict[str, Any] = {}
            boot = threading.Thread(target=lambda: result.update(r=vmnodes.boot_all(stacks, configs)))
            boot.start()
        try:
            self._start_infrastructure(progress)
        finally:
            if boot is not None:
                boot.join()
                booted, errors = result["r"]
                for vm in booted:
                    self._vms[vm.name] = vm
                    self.state.kernel_nodes.append(vm.record())
                self.state.save()
                if errors:
                    raise errors[0]
        for name, vm in self._vms.items():
            vmnodes.configure_guest(vm, self.plan.nodes[name], name == self.topo.mobile.node,
                                    self.topo.mobile.optimistic_dad)
        if self.topo.mobile.agent:
            progress("mobility agent")  # before attaching: it must see the first link-up
            self._start(self._agent())
            if self.sctp_mobile:
                progress("TraSH binding")
                self._start(self._binding())
        progress("attaching the mobile node")
        for ar in self.topo.mobile.attached:
            self._attach(ar)
        for ar in self.topo.mobile.attached:
            self.wait_configured(ar)

    def _start_infrastructure(self, progress: Progress) -> None:
        progress("named")
        self._start(self._named())
        progress("access routers")
        for acc in self.topo.access_networks:
            for d in self._ar_daemons(acc.router):
                self._start(d)

    def _resolvers(self) -> None:
        """/etc/netns/<ns>/resolv.conf: ``ip netns exec`` binds it over /etc/resolv.conf."""
        dns = self.plan.address_of(self.topo.dns.server, 4)
        for name in self.plan.nodes:
            ns = self.state.ns(name)
            d = netns.NETNS_ETC_DIR / ns
            self.state.etc_netns.append(str(d))
            self.state.save()
            d.mkdir(parents=True, exist_ok=True)
            (d / "resolv.conf").write_text(
                f"# testbed lab {self.state.lab}\nnameserver {dns}\nsearch {self.topo.dns.zone}\n"
                "options timeout:1 attempts:2\n"
            )

    # ---------------------------------------------------------------- nodes and daemons
    def node_dir(self, node: str, service: str) -> Path:
        return self.state.dir / node / service

    def runtime(self, node: str) -> NodeRuntime:
        if node not in self.plan.nodes:
            raise TestbedError(f"no node {node!r} in lab {self.state.lab!r} ({', '.join(self.plan.nodes)})")
        if node in self._vms:
            return self._vms[node]
        rec = next((v for v in self.state.kernel_nodes if v["node"] == node), None)
        if rec is None:
            return NamespaceNode(node, self.state.ns(node))
        cfg = vmnodes.config_for(self.topo, self.plan.nodes[node], rec["stack"], self.state.ns(node),
                                 self.state.dir / node)
        vm = vmnodes.attach(rec["stack"], cfg, rec)
        self._vms[node] = vm
        return vm

    def is_vm(self, node: str) -> bool:
        return any(v["node"] == node for v in self.state.kernel_nodes)

    def close(self) -> None:
        """Release this process's VM agent connections (each VM serves one client at a time)."""
        for vm in self._vms.values():
            vm.close()
        self._vms.clear()

    def _start(self, daemon: Daemon) -> ServiceRecord:
        rec = daemon.start()
        self.state.add_service(rec)
        return rec

    def _named(self) -> Named:
        z = self.topo.dns
        records = {
            n: [str(a.ip) for a in self.plan.nodes[n].addresses()[:2]]
            for n, spec in self.topo.nodes.items()
            if spec.role is not Role.MOBILE and self.plan.nodes[n].addresses()
        }
        dns = self.plan.nodes[z.server]
        data = ZoneData(
            zone=z.zone,
            server_name=z.server,
            records=records,
            mobile_name=z.mobile_name,
            ttl=z.ttl,
            listen=[str(a.ip) for a in dns.addresses()],
        )
        # the MN's SIG(0) key pairs (BIND's own dnssec-keygen) and a TSIG key, for the zone
        made = provision_keys(
            self.keys_dir, f"{z.mobile_name}.{z.zone}", z.sig0_algorithms, tsig_name=TSIG_KEY_NAME, ttl=z.ttl
        )
        keys = ZoneKeys(made.key_rrs, made.tsig_file, TSIG_KEY_NAME)
        self.state.extra["keys"] = {
            "tsig": str(made.tsig_file),
            "tsig_name": TSIG_KEY_NAME,
            "sig0": {k.algorithm: str(k.private_file) for k in made.keys},
        }
        self.state.save()
        return Named(self.runtime(z.server), self.node_dir(z.server, "named"), data, keys)

    def _ar_daemons(self, ar: str) -> list[Daemon]:
        acc = next(a for a in self.topo.access_networks if a.router == ar)
        _, ar_if = self.plan.access_iface(ar)
        dns4 = self.plan.address_of(self.topo.dns.server, 4) or ""
        dns6 = self.plan.address_of(self.topo.dns.server, 6)
        rt = self.runtime(ar)
        return [
            Radvd(rt, self.node_dir(ar, "radvd"), ar_if.ifname, acc, dns6, self.topo.dns.zone),
            Dhcpd(rt, self.node_dir(ar, "dhcpd"), ar_if.ifname, acc, dns4, self.topo.dns.zone),
        ]

    @property
    def sctp_mobile(self) -> bool:
        """Is the MN an SCTP endpoint? Then the TraSH binding process, not the agent, sends the
        location update, after the SET_PRIMARY (Appendix A order)."""
        return vmnodes.stack_of(self.topo.nodes[self.topo.mobile.node].sctp) != "none"

    def _location_env(self) -> dict[str, str]:
        m, z = self.topo.mobile, self.topo.dns
        env: dict[str, str] = {}
        if m.location != "none":
            env = {"TESTBED_LOC_SERVER": self.plan.address_of(z.server, 4) or "",
                   "TESTBED_LOC_ZONE": z.zone, "TESTBED_LOC_NAME": f"{z.mobile_name}.{z.zone}",
                   "TESTBED_LOC_VALIDITY": f"{m.signature_validity:g}"}
            if m.location == "tsig" or not sig0_supported():
                env["TESTBED_LOC_TSIG"] = str(self.tsig_key_file)
            else:
                env["TESTBED_LOC_KEY"] = str(self.sig0_key_file(m.sig0_algorithm))
        return env

    def _binding(self) -> BindingService:
        m = self.topo.mobile.node
        return BindingService(self.runtime(m), self.node_dir(m, "binding"), self.agent_socket,
                              self._location_env())

    def _agent(self) -> MobilityAgent:
        m = self.topo.mobile
        env = {} if self.sctp_mobile else self._location_env()
        ifaces = [i.ifname for i in self.plan.nodes[m.node].ifaces]
        sock = Path("/run/testbed-agent.sock") if self.is_vm(m.node) else None
        return MobilityAgent(self.runtime(m.node), self.node_dir(m.node, "agent"), ifaces, env,
                             m.optimistic_dad, socket_path=sock)

    @property
    def agent_socket(self) -> Path:
        if self.is_vm(self.topo.mobile.node):
            return Path("/run/testbed-agent.sock")  # on the guest's tmpfs
        return self.agent_dir / "agent.sock"

    def agent_command(self, cmd: dict) -> dict:
        """One request to the MN's mobility agent (through the guest agent for a VM MN)."""
        import asyncio

        rt = self.runtime(self.topo.mobile.node)
        if hasattr(rt, "unix_request"):
            return rt.unix_request(str(self.agent_socket), cmd)
        return asyncio.run(self.agent_client().command(cmd))

    @property
    def agent_dir(self) -> Path:
        return self.node_dir(self.topo.mobile.node, "agent")

    def service_running(self, rec: ServiceRecord) -> bool:
        """Is a recorded daemon alive? (A guest pid is asked of its VM.)"""
        return self.runtime(rec.node).wait(rec.pid, 0) is None if rec.guest else alive(rec.pid)

    def agent_running(self) -> bool:
        recs = [r for r in self.state.service_records() if r.service == "agent"]
        return bool(recs) and self.service_running(recs[0])

    def agent_client(self):
        from testbed.mobility.agent import AgentClient

        if not self.agent_running():
            raise LabStateError(
                f"no mobility agent runs on {self.topo.mobile.node} in lab {self.state.lab!r}"
            )
        if self.is_vm(self.topo.mobile.node):
            raise LabStateError("the MN runs in a VM: its agent socket is inside the guest "
                                "(use Lab.agent_command or the events log)")
        return AgentClient(self.agent_socket)

    def depart(self, timeout: float = 15.0) -> list[dict]:
        """Announced departure (§4): the agent withdraws the MN's records, then stops.

        Returns the location outcomes the agent logged for the withdrawal.
        """

        with locked(self.state.lab):
            self.state = LabState.load(self.state.lab)
            recs = [r for r in self.state.service_records() if r.service == "agent"]
            if not recs or not self.agent_running():
                raise LabStateError(f"no mobility agent runs on {self.topo.mobile.node}")
            log = self.agent_dir / "location.jsonl"
            before = len(log.read_text().splitlines()) if log.exists() else 0
            # SIGTERM: the agent calls on_depart (the withdrawal) before it exits
            self.runtime(recs[0].node).stop(recs[0].pid, grace=timeout)
            self.state.services = [s for s in self.state.services if s["pid"] != recs[0].pid]
            self.state.save()
            lines = log.read_text().splitlines()[before:] if log.exists() else []
            return [json.loads(x) for x in lines]

    @property
    def keys_dir(self) -> Path:
        """The MN's keys live with the MN (also inside its VM); named includes the TSIG one."""
        return self.node_dir(self.topo.mobile.node, "keys")

    @property
    def tsig_key_file(self) -> Path:
        """The TSIG key clause (``nsupdate -k`` reads it)."""
        return Path(self.state.extra["keys"]["tsig"])

    def sig0_key_file(self, algorithm: str = "ECDSAP256SHA256") -> Path:
        """The MN's SIG(0) private key (BIND format) for ``algorithm``."""
        return Path(self.state.extra["keys"]["sig0"][algorithm])

    # ---------------------------------------------------------------- mobility primitive
    def _attach(self, ar: str) -> None:
        mn_if, ar_if = self.plan.access_iface(ar)
        mn = self.runtime(mn_if.node)
        mn.set_link(mn_if.ifname, True)  # the AR side sees carrier: the MN has associated
        # DNA (RFC 4957/6059): solicit at once. Linux sends its own RS only after link-local
        # DAD (1 s); a userspace RS is answered in milliseconds. The agent does it when it runs.
        if not self.agent_running():
            mn.run(["rdisc6", "-1", "-q", "-r", "10", "-w", "200", mn_if.ifname], check=False,
                   timeout=5)
        metric = 100 + [a.router for a in self.topo.access_networks].index(ar)
        d = Dhclient(mn, self.node_dir(mn_if.node, "dhclient"), mn_if.ifname, metric)
        self._start(d)
        if ar not in self.state.attached:
            self.state.attached.append(ar)
            self.state.save()

    def _detach(self, ar: str) -> None:
        mn_if, ar_if = self.plan.access_iface(ar)
        mn = self.runtime(mn_if.node)
        for rec in list(self.state.service_records()):
            if rec.service == "dhclient" and rec.instance == mn_if.ifname:
                mn.stop(rec.pid, grace=1.0)
                self.state.services = [s for s in self.state.services if s["pid"] != rec.pid]
        mn.set_link(mn_if.ifname, False)  # the radio leaves: link down on both sides
        mn.run(["ip", "addr", "flush", "dev", mn_if.ifname, "scope", "global"])
        if ar in self.state.attached:
            self.state.attached.remove(ar)
        self.state.save()

    def move(
        self,
        to: str,
        mode: MoveMode = "make-before-break",
        overlap: float = 0.0,
        gap: float = 0.0,
        progress: Progress = _quiet,
    ) -> dict[str, float]:
        """Attach the MN to ``to`` and detach it from every other AR; returns phase timings."""
        if to not in {a.router for a in self.topo.access_networks}:
            raise TestbedError(
                f"{to!r} is not an access router of lab {self.state.lab!r} "
                f"({', '.join(a.router for a in self.topo.access_networks)})"
            )
        with locked(self.state.lab):
            self.state = LabState.load(self.state.lab)
            old = [ar for ar in self.state.attached if ar != to]
            t0 = time.monotonic()
            times: dict[str, float] = {}
            if mode == "make-before-break":
                if to not in self.state.attached:
                    progress(f"attaching to {to}")
                    self._attach(to)
                    self.wait_configured(to)
                times["configured"] = time.monotonic() - t0
                _wait(overlap)
                for ar in old:
                    progress(f"detaching from {ar}")
                    self._detach(ar)
                times["detached"] = time.monotonic() - t0
            else:
                for ar in old:
                    progress(f"detaching from {ar}")
                    self._detach(ar)
                times["detached"] = time.monotonic() - t0
                _wait(gap)
                if to not in self.state.attached:
                    progress(f"attaching to {to}")
                    self._attach(to)
                    self.wait_configured(to)
                times["configured"] = time.monotonic() - t0
            return times

    def access_state(self, ar: str) -> AccessState:
        mn_if, _ = self.plan.access_iface(ar)
        cp = self.runtime(mn_if.node).run(["ip", "-j", "addr", "show", "dev", mn_if.ifname])
        info = json.loads(cp.stdout or "[]")[0]
        acc = next(a for a in self.topo.access_networks if a.router == ar)
        v4, v6 = [], []
        for a in info.get("addr_info", []):
            ip = ipaddress.ip_address(a["local"])
            if ip.version == 4 and ip in acc.ipv4:
                v4.append(str(ip))
            elif ip.version == 6 and ip in acc.ipv6 and _usable6(a):
                v6.append(str(ip))
        carrier = "LOWER_UP" in info.get("flags", [])
        return AccessState(mn_if.ifname, carrier, v4, v6)

    def wait_configured(self, ar: str, timeout: float = CONFIGURE_TIMEOUT) -> AccessState:
        """Until the MN holds a DHCPv4 lease and a usable SLAAC address from ``ar``'s network."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.access_state(ar)
            if st.ipv4 and st.ipv6:
                return st
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"mobile node not configured on {ar} within {timeout:g} s "
                    f"(IPv4 {st.ipv4 or 'none'}, IPv6 {st.ipv6 or 'none'}); see logs in {self.state.dir}"
                )
            time.sleep(0.02)  # addresses appear via DHCP/SLAAC; polled ip -j (no event source here)

    # ---------------------------------------------------------------- teardown
    def down(self, progress: Progress = _quiet) -> None:
        with locked(self.state.lab):
            self._teardown(progress)

    def _teardown(self, progress: Progress) -> None:
        teardown_state(self.state, progress)


def teardown_state(state: LabState, progress: Progress = _quiet) -> None:
    """Remove exactly what ``state`` records: daemons, VMs, namespaces, resolver dirs, run dir."""
    from testbed.host.procs import stop_pid

    progress("stopping services")
    for rec in reversed(state.service_records()):
        if not rec.guest:  # guest processes end with their VM
            stop_pid(rec.pid, grace=1.0)
    progress("removing namespaces")
    for ns in state.netns:
        if netns.exists(ns):
            netns.kill_all(ns, grace=1.0)
            netns.run(None, ["ip", "netns", "del", ns], check=False)
    for d in state.etc_netns:
        p = Path(d)
        if p.parent == netns.NETNS_ETC_DIR:
            shutil.rmtree(p, ignore_errors=True)
    shutil.rmtree(state.dir, ignore_errors=True)


def clean(progress: Progress = _quiet, force: bool = False) -> list[str]:
    """Tear down every lab whose builder died or whose state says it is broken; returns names."""
    removed = []
    for lab in known_labs():
        with locked(lab):
            try:
                st = LabState.load(lab)
            except LabStateError:
                shutil.rmtree(lab_dir(lab), ignore_errors=True)
                removed.append(lab)
                continue
            if st.status == "up" and not force and not _broken(st):
                continue
            if st.owner_pid and alive(st.owner_pid) and st.status == "building":
                continue
            teardown_state(st, progress)
            removed.append(lab)
    return removed


def _usable6(a: dict) -> bool:
    """Non-tentative, or optimistic (RFC 4429: usable while DAD runs)."""
    if a.get("dadfailed"):
        return False
    return not a.get("tentative") or bool(a.get("optimistic"))


def _broken(st: LabState) -> bool:
    return any(not netns.exists(ns) for ns in st.netns)


def _wait(seconds: float) -> None:
    """A scenario's deliberate overlap or gap, not a wait for an event."""
    if seconds > 0:
        time.sleep(seconds)
