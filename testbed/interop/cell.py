"""What one cell runs: the scenario's topology with the cell's kernels on the MN and the CN, and
the scenario under the cell's setting (pure: data in, data out)."""

from __future__ import annotations

from typing import Any

from testbed.errors import ConfigError
from testbed.interop.kernels import KernelChoice
from testbed.interop.settings import Setting
from testbed.model import loader
from testbed.model.topology import Role, Topology
from testbed.scenario.model import Scenario, Traffic


def endpoints(topo: Topology, sc: Scenario) -> tuple[str, str]:
    """(MN, CN) of the scenario's SCTP (or QUIC) traffic: the mobile node and the traffic's
    peer (default: the first host with that transport), as the scenario runner picks them."""
    if sc.uses_traffic and sc.transport == "quic":
        return _quic_endpoints(topo, sc)
    where = f"scenario {sc.name}"
    if not sc.uses_traffic:
        raise ConfigError(where, "steps", "no SCTP traffic: an interop cell judges an association",
                          "use a scenario with `traffic: start` (e.g. trash-handover)")
    mn = topo.mobile.node
    peer = sc.traffic.peer if sc.traffic else None
    if peer is None:
        peer = next((n for n, s in topo.nodes.items() if s.role is Role.HOST and s.sctp.stack != "none"),
                    None)
    if peer is None or peer not in topo.nodes or topo.nodes[mn].sctp.stack == "none":
        raise ConfigError(where, "topology", f"{topo.name} has no SCTP between the MN and a host",
                          "use a topology with `sctp:` on the mobile node and a host (two-ar-sctp)")
    return mn, peer


def _quic_endpoints(topo: Topology, sc: Scenario) -> tuple[str, str]:
    mn = topo.mobile.node
    peer = sc.traffic.peer if sc.traffic else None
    if peer is None:
        peer = next((n for n, s in topo.nodes.items() if s.role is Role.HOST and s.quic.enabled), None)
    if peer is None or peer not in topo.nodes or not topo.nodes[mn].quic.enabled:
        raise ConfigError(f"scenario {sc.name}", "topology", f"{topo.name} has no QUIC between the MN "
                          "and a host", "use a topology with `quic:` on the mobile node and a host "
                          "(two-ar-quic)")
    return mn, peer


def cell_topology(sc: Scenario, mn: KernelChoice, cn: KernelChoice, setting: Setting) -> dict[str, Any]:
    """The scenario's topology as a dict, its MN and CN on the given kernels with the setting's
    sysctls (a lab built from it starts in that setting); for QUIC, on the given stacks."""
    topo = loader.load(sc.topology)
    mn_node, cn_node = endpoints(topo, sc)
    data = topo.model_dump(mode="json", exclude_defaults=False)
    if sc.uses_traffic and sc.transport == "quic":
        for node, choice in ((mn_node, mn), (cn_node, cn)):
            data["nodes"][node]["quic"] = {"stack": choice.stack}
        return data
    for node, kernel, side in ((mn_node, mn, "mn"), (cn_node, cn, "cn")):
        data["nodes"][node]["sctp"] = {"stack": kernel.stack, "kernel": kernel.kernel,
                                       **setting.values(side)}  # type: ignore[arg-type]
    return data


def cell_scenario(sc: Scenario, setting: Setting) -> Scenario:
    """The scenario under a setting: its traffic binding if the setting names one, the
    setting's expectations over the scenario's own, and no timeline budgets: a cell judges
    interoperation, and a budget on an emulated (QEMU/TCG) node measures the emulator."""
    traffic = sc.traffic or Traffic()
    if setting.binding is not None:
        traffic = traffic.model_copy(update={"binding": setting.binding})
    expect = {**sc.expect, **setting.expect}
    return sc.model_copy(update={"traffic": traffic, "budgets": {}, "expect": expect})
