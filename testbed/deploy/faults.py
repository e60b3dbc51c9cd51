"""Faults on deployed hosts: a daemon the deploy started killed on its host, the mobile node's
link to an access router flapped by its own radio. Judged as a lab's (``FaultSteps.rules``).

A kernel killed and an access router that vanishes need hands a controller does not have on
real hosts (a power switch, a router's cables): ``refusal`` names them before anything runs.
"""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING

from testbed.deploy.render import LAYOUT, daemons_of
from testbed.progress import Progress
from testbed.scenario.faults import FaultSteps, Injected, service_node
from testbed.scenario.model import Fault

if TYPE_CHECKING:
    from testbed.deploy.target import HostTarget


def refusal(target: HostTarget, f: Fault) -> tuple[str, str] | None:
    """(host, why) when ``f`` cannot be played on the target's hosts, else None."""
    topo = target.topo
    if f.kill == "node":
        return str(f.node), ("its kernel cannot be killed from the controller and the run go on "
                             "(a real host's power is not the controller's)")
    if f.vanish is not None:
        return f.vanish, "an access router cannot be made to vanish from the controller (its daemons " \
                         "and every link's carrier gone: hands at the router)"
    if f.kill is not None:
        node = service_node(topo, f)
        if node not in target.hosts:
            return node, "not a host of the inventory"
        if f.kill not in daemons_of(target.data, node):
            return node, f"the deploy runs no {f.kill} there ({', '.join(daemons_of(target.data, node))})"
    if f.flap is not None and f.flap not in [a.router for a in topo.access_networks]:
        return f.flap, "not an access router of the topology"
    return None


class HostFaults(FaultSteps):
    """Each fault as one command on its host (``command.yml``)."""

    def __init__(self, target: HostTarget, log, progress: Progress) -> None:
        super().__init__(log, progress)
        self.t = target

    def _kill_service(self, f: Fault) -> Injected:
        node, name = service_node(self.t.topo, f), str(f.kill)
        pidfile = shlex.quote(str(LAYOUT.run / f"{name}.pid"))
        # SIGKILL to the daemon, then until it is gone (2 s at most), as the lab's kill
        cmd = (f"pid=$(cat {pidfile}) && kill -KILL $pid && "
               "for i in $(seq 20); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
               'echo "{\\"pid\\": $pid}"')
        wall = time.time()
        r = self.t.command(node, cmd) or {}
        pid = int(r.get("pid", 0))
        return Injected(f, wall, f"{name} on {node} (pid {pid} on the host) killed with SIGKILL",
                        lambda: not self.t.alive(node, pid))

    def _flap(self, f: Fault) -> Injected:
        mn = self.t.mn
        ifname = shlex.quote(self.t.access_if(str(f.flap), mn))
        half = f"{f.period / 2:g}"
        # the flap's own rhythm on the MN's radio, not a wait for an event
        cmd = (f"for i in $(seq {f.times}); do ip link set dev {ifname} down; sleep {half}; "
               f"ip link set dev {ifname} up; sleep {half}; done; echo '{{}}'")
        wall = time.time()
        self.t.command(mn, cmd)
        return Injected(f, wall, f"{self.t.access_if(str(f.flap), mn)} (the MN's link to {f.flap}) down and "
                                 f"up {f.times}× every {f.period:g} s")
