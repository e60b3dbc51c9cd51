"""The §6 middleboxes an access router may be: a NAT and an ingress filter (nftables rules).

NAT: the access network's IPv4 prefix is masqueraded to the router's own address on the way
out (Linux's conntrack follows SCTP associations by their verification tags); no other node has
a route to that prefix, so, like a private network, it is reachable only through state the MN's
own packets made. Ingress filtering (BCP 38): a packet forwarded from the access network whose
source address has no route back through the interface it came in on is dropped (a reverse
path check, ``fib saddr . iif``), and counted, so a run can tell how many were.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from testbed.model.addressing import LabPlan, lan_ifname
from testbed.model.topology import AccessNetwork
from testbed.runtimes.base import NodeRuntime

NAT_TABLE = "testbed_nat"
INGRESS_TABLE = "testbed_ingress"


def nat_rules(lan: str, prefix: ipaddress.IPv4Network) -> str:
    return (f"add table ip {NAT_TABLE}\n"
            f"add chain ip {NAT_TABLE} postrouting {{ type nat hook postrouting priority srcnat; }}\n"
            f'add rule ip {NAT_TABLE} postrouting ip saddr {prefix} oifname != "{lan}" masquerade\n')


def ingress_rules(lan: str) -> str:
    return (f"add table inet {INGRESS_TABLE}\n"
            f"add chain inet {INGRESS_TABLE} forward {{ type filter hook forward priority filter; }}\n"
            f'add rule inet {INGRESS_TABLE} forward iifname "{lan}" fib saddr . iif oif missing '
            "counter drop\n")


def rules_for(acc: AccessNetwork) -> str:
    lan = lan_ifname(acc.router)
    out = ""
    if acc.nat and acc.ipv4 is not None:
        out += nat_rules(lan, acc.ipv4)
    if acc.ingress_filter:
        out += ingress_rules(lan)
    return out


def apply_all(plan: LabPlan, runtime: Callable[[str], NodeRuntime]) -> None:
    for acc in plan.topology.access_networks:
        rules = rules_for(acc)
        if rules:
            runtime(acc.router).run(["nft", "-f", "-"], input=rules)


def ingress_drops(rt: NodeRuntime) -> int:
    """Packets the router's ingress filter dropped so far (its rule's counter)."""
    import json

    cp = rt.run(["nft", "-j", "list", "table", "inet", INGRESS_TABLE], check=False)
    total = 0
    for item in json.loads(cp.stdout or "{}").get("nftables", []):
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                total += int(expr["counter"].get("packets", 0))
    return total
