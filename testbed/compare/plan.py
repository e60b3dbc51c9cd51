"""What ``testbed compare`` runs, before any lab: per transport, the scenario's topology with only
its transport settings changed, the scenario with that transport's traffic and expectations,
or the reason the transport cannot run there (pure, but for reading a UML build's config).

The endpoints (the mobile node and the traffic's correspondent) keep the kind of node the
topology gives them (``sctp.stack``: a namespace on the host kernel, or a kernel of their own),
so every transport runs on the same kernels; only which transport they speak changes:
``sctp`` (a topology without SCTP gets ``stack: auto``), ``mptcp.enabled``, ``quic.stack``
(``aioquic``). Plain TCP needs nothing. A transport the endpoints' kernel lacks is refused,
with the fix: Debian's User-Mode Linux build has no MPTCP, so on UML nodes the MPTCP row says
so until a UML build with it (``TESTBED_UML_KERNEL``, or the nodes' ``sctp.kernel``) serves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from testbed.errors import ConfigError
from testbed.model import loader
from testbed.model.topology import Role, Topology
from testbed.runtimes import kernel_nodes
from testbed.scenario.model import Scenario, Traffic

TRANSPORTS = ("sctp", "mptcp", "quic", "tcp")
# what a transport asks of the endpoints' kernel
NEEDS = {"mptcp": "CONFIG_MPTCP", "sctp": "CONFIG_IP_SCTP"}


@dataclass(frozen=True)
class Row:
    transport: str
    scenario: Scenario
    topology: dict[str, Any]  # the topology as data (its file is written by the runner)
    changes: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # node -> field -> [base, row]
    refused: str = ""  # why this transport cannot run on these endpoints


def parse_transports(text: str) -> list[str]:
    out = []
    for t in (x.strip() for x in text.split(",")):
        if t not in TRANSPORTS:
            raise ConfigError("--transports", t or "-", "not a transport of the lab",
                              f"give {', '.join(TRANSPORTS)}")
        if t not in out:
            out.append(t)
    if not out:
        raise ConfigError("--transports", "-", "no transport given", f"give {', '.join(TRANSPORTS)}")
    return out


def endpoints(topo: Topology, sc: Scenario) -> tuple[str, str]:
    """(the mobile node, the correspondent): the traffic's ``peer``, else the first host."""
    if not sc.uses_traffic:
        raise ConfigError(f"scenario {sc.name}", "steps", "no traffic: a comparison compares connections",
                          "use a scenario with `traffic: start` (e.g. trash-handover)")
    if len(topo.mobiles) != 1:
        raise ConfigError(f"scenario {sc.name}", "topology", f"{topo.name} has {len(topo.mobiles)} mobile "
                          "nodes: a comparison follows one", "use a topology with one mobile node")
    peer = sc.traffic.peer if sc.traffic else None
    peer = peer or next((n for n, s in topo.nodes.items() if s.role is Role.HOST), None)
    if peer is None or peer not in topo.nodes:
        raise ConfigError(f"scenario {sc.name}", "traffic.peer", "no correspondent", "add a host node")
    return topo.mobile.node, peer


def topology_for(base: Topology, nodes: tuple[str, str], transport: str
                 ) -> tuple[dict[str, Any], dict[str, dict[str, list[Any]]]]:
    """The base topology with ``nodes`` speaking ``transport`` only; and what changed."""
    data = base.model_dump(mode="json")
    changes: dict[str, dict[str, list[Any]]] = {}
    for n in nodes:
        node = data["nodes"][n]
        before = {"sctp.stack": node["sctp"]["stack"], "mptcp.enabled": node["mptcp"]["enabled"],
                  "quic.stack": node["quic"]["stack"]}
        if transport == "sctp" and node["sctp"]["stack"] == "none":
            node["sctp"]["stack"] = "auto"
        node["mptcp"]["enabled"] = transport == "mptcp"
        node["quic"] = {"stack": "aioquic" if transport == "quic" else "none"}
        after = {"sctp.stack": node["sctp"]["stack"], "mptcp.enabled": node["mptcp"]["enabled"],
                 "quic.stack": node["quic"]["stack"]}
        diff = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        if diff:
            changes[n] = diff
    return data, changes


def scenario_for(sc: Scenario, transport: str, topology: str) -> Scenario:
    """The scenario for one transport: its traffic on that transport (the same rate, size and
    echo), and the expectations of its ``compare`` entry (the scenario's own for its own
    transport, when it has no entry)."""
    base = sc.traffic or Traffic()
    entry = sc.compare.get(transport)
    own = transport == sc.transport
    extra = dict(entry.traffic) if entry else {}
    binding = "trash"  # every transport's row is the binding process's, the same policy
    traffic = Traffic.model_validate({**base.model_dump(), "transport": transport, "binding": binding,
                                      **extra})
    if entry is not None:
        rules, budgets, expect = entry.rules, dict(entry.budgets), dict(entry.expect)
    elif own:
        rules, budgets, expect = sc.rules, dict(sc.budgets), dict(sc.expect)
    else:
        rules, budgets, expect = None, {}, {}
    return sc.model_copy(update={"topology": topology, "traffic": traffic, "rules": rules,
                                 "budgets": budgets, "expect": expect, "compare": {}})


def refusal(topo: Topology, nodes: tuple[str, str], transport: str,
            kernel_config=None) -> str:
    """Why ``transport`` cannot run on the endpoints' kernels ("" when it can)."""
    if transport not in NEEDS:
        return ""
    symbol = NEEDS[transport]
    for n in nodes:
        spec = topo.nodes[n].sctp
        stack = kernel_nodes.stack_of(spec)
        if stack == "uml":
            config = (kernel_config or _uml_config)(spec.kernel)
            if config.get(symbol) not in ("y", "m"):
                return (f"{n} runs User-Mode Linux, whose build has no {transport.upper()} ({symbol} is not "
                        "set; Debian's UML 6.1 has none): give the nodes a UML build with it "
                        "(TESTBED_UML_KERNEL or sctp.kernel) to run this row")
        elif stack == "qemu":
            if transport == "mptcp":
                return f"{n} runs a QEMU kernel: MPTCP nodes run on the host kernel or a UML build with it"
        elif transport == "sctp" and not kernel_nodes.host_has_sctp():
            return f"{n} runs on the host kernel, which has no SCTP: give it sctp.stack auto"
    return ""


def _uml_config(kernel: str | None) -> dict[str, str]:
    from testbed.runtimes import uml_boot, uml_kernels

    return uml_boot.kernel_config(uml_kernels.resolve(kernel or "uml").binary) or {}


def plan(sc: Scenario, transports: list[str]) -> list[Row]:
    base = loader.load(sc.topology)
    nodes = endpoints(base, sc)
    rows = []
    for t in transports:
        data, changes = topology_for(base, nodes, t)
        try:
            refused = refusal(loader.from_dict(data, f"{base.name} for {t}"), nodes, t)
        except ConfigError as e:  # the loader refuses the combination (e.g. MPTCP on a uml node)
            refused = str(e)
        rows.append(Row(t, scenario_for(sc, t, ""), data, changes, refused))
    return rows
