"""Which interface of which node is shaped how: the path-quality plan (pure data, no I/O).

A link's ``shape`` applies to the egress of both its ends; an access network's to the AR's
bridge port toward the MN and to the MN's own interface on it, so both directions of the
radio link see the same quality.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.model.addressing import LabPlan, ifname
from testbed.model.topology import Shaping


@dataclass(frozen=True)
class ShapedIface:
    node: str
    ifname: str
    shape: Shaping
    field: str  # where it was asked for, for error messages: links.2.shape


def shaped(plan: LabPlan) -> list[ShapedIface]:
    topo = plan.topology
    out: list[ShapedIface] = []
    for i, link in enumerate(topo.links):
        if link.shape is not None:
            out += [ShapedIface(link.a, ifname(link.a, link.b), link.shape, f"links.{i}.shape"),
                    ShapedIface(link.b, ifname(link.b, link.a), link.shape, f"links.{i}.shape")]
    for i, acc in enumerate(topo.access_networks):
        if acc.shape is not None:
            field = f"access_networks.{i}.shape"
            for mn in topo.mobiles:  # every mobile node's radio link to the router
                out += [ShapedIface(acc.router, ifname(acc.router, mn), acc.shape, field),
                        ShapedIface(mn, ifname(mn, acc.router), acc.shape, field)]
    return out
