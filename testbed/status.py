"""``testbed status``: what the lab holds right now, read from the live namespaces."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from testbed.errors import TestbedError
from testbed.host import netns
from testbed.lab import Lab
from testbed.runtimes.base import NodeRuntime
from testbed.runtimes.guest import SCTP_SYSCTLS
from testbed.services import probes


def collect(lab_or_name: Lab | str) -> dict[str, Any]:
    """Status of a lab (a ``Lab``, or a lab name to open)."""
    lab = Lab.open(lab_or_name) if isinstance(lab_or_name, str) else lab_or_name
    backend_info = lab.backend.info(lab.state)
    per_node = backend_info.get("nodes", {})
    nodes = []
    for name, plan in lab.plan.nodes.items():
        ns = lab.state.ns(name)
        present = netns.exists(ns)
        info = lab.nodes.kernel_info(name)
        sctp, raw = None, "[]"
        if present:
            rt = lab.runtime(name)
            raw = rt.run(["ip", "-j", "addr", "show"], check=False).stdout
            if lab.topo.nodes[name].sctp.stack != "none":
                sctp = _sctp_sysctls(rt)
        ifaces = [
            {
                "name": i["ifname"],
                "state": i.get("operstate", "?"),
                "addresses": [
                    f"{a['local']}/{a['prefixlen']}" + _dad_flag(a)
                    for a in i.get("addr_info", [])
                    if a.get("scope") == "global"
                ],
            }
            for i in json.loads(raw or "[]")
            if i["ifname"] != "lo"
        ]
        nodes.append(
            {
                "name": name,
                "role": plan.role.value,
                "netns": ns,
                "present": present,
                "kernel": info.release,
                "stack": info.stack,
                "accelerator": info.accelerator,
                "sctp": sctp,
                "interfaces": ifaces,
                **per_node.get(name, {}),  # docker: "container" (id) and "image"
            }
        )
    services = []
    for rec in lab.state.service_records():
        up = lab.nodes.service_running(rec)
        services.append(
            {
                "node": rec.node,
                "service": rec.service,
                "instance": rec.instance,
                "pid": rec.pid,
                "running": up,
                "healthy": up and _healthy(lab, rec.node, rec.service),
            }
        )
    return {
        "lab": lab.state.lab,
        "topology": lab.topo.name,
        "status": lab.state.status,
        "backend": lab.state.backend,
        **({"engine": backend_info["engine"]} if "engine" in backend_info else {}),
        "machine": lab.state.machine,
        "run_dir": str(lab.state.dir),
        "attached": lab.state.attached,  # mobile node -> the ARs it is attached to
        "zone": lab.topo.dns.zone,
        "mobile_name": lab.topo.dns_name(lab.topo.mobile.node),
        "mobiles": {mn: lab.topo.dns_name(mn) for mn in lab.topo.mobiles},
        "nodes": nodes,
        "services": services,
    }


def _attached(attached: dict[str, list[str]]) -> str:
    """"MN attached to ar1", or per access router how many of several MNs are there."""
    if len(attached) <= 1:
        ars = next(iter(attached.values()), [])
        return f"MN attached to {', '.join(ars) or 'nothing'}"
    count = Counter(ar for ars in attached.values() for ar in ars)
    where = ", ".join(f"{n} on {ar}" for ar, n in sorted(count.items())) or "none attached"
    return f"{len(attached)} MNs: {where}"


def _dad_flag(a: dict[str, Any]) -> str:
    """RFC 4429: an optimistic address is usable while DAD runs; a plain tentative one is not."""
    if a.get("optimistic"):
        return " optimistic"
    return " tentative" if a.get("tentative") else ""


def _sctp_sysctls(rt: NodeRuntime) -> dict[str, int] | None:
    """The live net.sctp values that matter for ASCONF (per netns: never inherited)."""
    try:
        return {k: int(rt.get_sysctl(f"net.sctp.{k}")) for k in SCTP_SYSCTLS}
    except (TestbedError, ValueError):
        return None  # no SCTP in that kernel


def _kernel_cell(n: dict[str, Any]) -> str:
    cell = f"{n['kernel']} ({n['stack']}{', ' + n['accelerator'] if n.get('accelerator') else ''})"
    if n.get("sctp"):
        cell += "\nsctp " + " ".join(f"{k.replace('_enable', '')}={v}" for k, v in n["sctp"].items())
    return cell


def _healthy(lab, node: str, service: str) -> bool:
    ns = lab.state.ns(node)
    if service == "named":
        server = lab.plan.address_of(node, 4)
        return netns.call_in(ns, probes.dns_soa, server, lab.topo.dns.zone, timeout=5) is not None
    if service == "dhcpd":
        return netns.call_in(ns, probes.port_bound, 67, "udp", timeout=5)
    if service == "radvd":
        return netns.call_in(ns, probes.raw_icmp6_open, timeout=5)
    if service == "agent":
        try:
            return bool(lab.mobile_node(node).agent_request({"cmd": "ping"}, timeout=5).get("ok"))
        except TestbedError:
            return False
    return True


def render(st: dict[str, Any], console: Console) -> None:
    engine = st.get("engine")
    via = f" on the {engine['kind']} engine {engine['url']} ({engine['version']})" if engine else ""
    console.print(
        f"[bold]lab {st['lab']}[/bold] ({st['topology']}, backend {st['backend']}{via}, machine "
        f"{st['machine']}) {st['status']}; {_attached(st['attached'])}; zone {st['zone']}; "
        f"run dir {st['run_dir']}"
    )
    t = Table("node", "role", "container" if engine else "netns", "kernel", "interface", "state",
              "addresses")
    for n in st["nodes"]:
        first = True
        for i in n["interfaces"] or [{"name": "-", "state": "-", "addresses": []}]:
            t.add_row(
                n["name"] if first else "",
                n["role"] if first else "",
                (n["container"][:12] if engine else n["netns"]) if first else "",
                _kernel_cell(n) if first else "",
                i["name"],
                i["state"],
                "\n".join(i["addresses"]),
            )
            first = False
    console.print(t)
    s = Table("node", "service", "pid", "health")
    for svc in st["services"]:
        health = (
            "[green]ok[/green]"
            if svc["healthy"]
            else ("[yellow]running, not answering[/yellow]" if svc["running"] else "[red]dead[/red]")
        )
        name = svc["service"] + (f" ({svc['instance']})" if svc["instance"] else "")
        s.add_row(svc["node"], name, str(svc["pid"]), health)
    console.print(s)
