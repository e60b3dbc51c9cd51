"""The lab: a topology built by a backend into running nodes, daemons and a mobile node.

A ``Lab`` is rebuilt from ``state.json`` by every CLI command, so nothing lives only in the
memory of the process that ran ``testbed up``. Its parts:

- ``nodes``: each node's runtime (``runtime(name)``);
- ``wiring``: which daemon runs where, with what configuration;
- ``mobiles``: each mobile node's attach / detach / move and its agent (``mobile``: the
  topology's ``mobile.node``, the only one in most labs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from testbed import backends
from testbed.backends.base import LabBackend
from testbed.errors import ConfigError, LabStateError, TestbedError
from testbed.host.procs import alive
from testbed.lab import bare as bare_lab
from testbed.lab import build
from testbed.lab.mobile import AccessState, MobileNode, MoveMode
from testbed.lab.nodes import Nodes
from testbed.lab.teardown import teardown_state
from testbed.lab.wiring import Wiring
from testbed.model import addressing, loader
from testbed.model.topology import SctpSettings, Topology
from testbed.progress import Progress, quiet
from testbed.runtimes import kernel_nodes
from testbed.runtimes.base import NodeRuntime
from testbed.services.bind import sig0_supported
from testbed.state import DEFAULT_LAB, LabState, lab_dir, locked

DEFAULT_BACKEND = "mininet"


class Lab:
    def __init__(self, state: LabState, topo: Topology, backend: LabBackend) -> None:
        self.topo = topo
        self.plan = addressing.plan(topo)
        self.warnings: list[str] = []
        self.nodes = Nodes(state, topo, self.plan, backend)
        self.wiring = Wiring(self.nodes)
        self.mobiles = {mn: MobileNode(self.nodes, self.wiring.for_mobile(mn)) for mn in topo.mobiles}
        self.mobile = self.mobiles[topo.mobile.node]

    @property
    def state(self) -> LabState:
        return self.nodes.state

    @property
    def backend(self) -> LabBackend:
        return self.nodes.backend

    # ---------------------------------------------------------------- life cycle
    @classmethod
    def open(cls, lab: str = DEFAULT_LAB) -> Lab:
        state = LabState.load(lab)
        topo = loader.from_dict(state.topology, state.topology_file)
        return cls(state, topo, backends.get(state.backend))

    @classmethod
    def up(cls, topology: str | Path | None = None, lab: str = DEFAULT_LAB, progress: Progress = quiet,
           backend: LabBackend | str | None = None, bare: bool = False) -> Lab:
        """Build and start a lab; on any failure or Ctrl-C remove what was made, then re-raise.

        ``backend`` (an object or a name) wins over ``$TESTBED_BACKEND``, which wins over the
        topology's ``backend``; the default is mininet. ``bare``: hosts for ``testbed deploy``
        (``lab.bare``), on the docker backend, with nothing configured on them."""
        path = loader.resolve(topology)
        topo = loader.load(path)  # bad input fails here, before anything exists
        if bare:
            if backend not in (None, "docker"):
                raise ConfigError(str(path), "backend", "a bare lab runs on the docker backend only "
                                  "(namespace nodes share this host's files: they are not separate "
                                  "hosts)", "drop --backend or give --backend docker")
            bare_lab.plan_management(topo, str(path))  # an overlap fails before anything exists
            backend = "docker"
        if backend is None or isinstance(backend, str):
            backend = backends.get(backend or os.environ.get("TESTBED_BACKEND") or topo.backend
                                   or DEFAULT_BACKEND)
        with locked(lab):
            if LabState.exists(lab):
                old = LabState.load(lab)
                if old.status == "up" or (old.owner_pid and alive(old.owner_pid)):
                    raise LabStateError(f"lab {lab!r} is already up ({lab_dir(lab)}); `testbed down` first")
                raise LabStateError(f"lab {lab!r} left state behind ({old.status}); "
                                    "run `testbed clean` first")
            state = LabState(lab, str(path.resolve()), topo.model_dump(mode="json"), owner_pid=os.getpid(),
                             backend=backend.name, machine=os.environ.get("TESTBED_MACHINE") or "host",
                             holder=os.environ.get("TESTBED_LAB_HOLDER", ""))
            state.save()
            self = cls(state, topo, backend)
            try:
                if bare:
                    bare_lab.build(self.nodes, progress)
                else:
                    if not sig0_supported():
                        self.warnings.append("SIG(0) needs BIND >= 9.20: the zone accepts TSIG updates only")
                    build.build(self.nodes, self.wiring, list(self.mobiles.values()), progress)
                state.status = "up"
                state.owner_pid = 0
                state.save()
            except BaseException:
                state.status = "failed"
                state.save()
                teardown_state(state)
                raise
        return self

    def down(self, progress: Progress = quiet) -> None:
        with locked(self.state.lab):
            self.close()
            teardown_state(self.state, progress)

    def close(self) -> None:
        """Release this process's connections to kernel nodes (they keep running)."""
        self.nodes.close()

    # ---------------------------------------------------------------- for users' suites
    def runtime(self, node: str) -> NodeRuntime:
        return self.nodes.runtime(node)

    def node_dir(self, node: str, service: str) -> Path:
        return self.nodes.node_dir(node, service)

    def move(self, to: str, mode: MoveMode = "make-before-break", overlap: float = 0.0, gap: float = 0.0,
             progress: Progress = quiet, mn: str | None = None, timeout: float = 20.0) -> dict[str, float]:
        return self.mobile_node(mn).move(to, mode, overlap=overlap, gap=gap, progress=progress,
                                         timeout=timeout)

    def access_state(self, ar: str, mn: str | None = None) -> AccessState:
        return self.mobile_node(mn).access_state(ar)

    def mobile_node(self, mn: str | None = None) -> MobileNode:
        """``mn``'s ``MobileNode`` (default: the topology's ``mobile.node``)."""
        if mn is None:
            return self.mobile
        if mn not in self.mobiles:
            raise TestbedError(f"{mn!r} is not a mobile node of lab {self.state.lab!r} "
                               f"({', '.join(self.mobiles)})")
        return self.mobiles[mn]

    def package_versions(self) -> dict[str, str]:
        """verdict.json's ``lab.packages``: each package's version in the root that ran it. The
        DNS server's, the first access router's and the mobile node's roots (a container lab's
        role images; the host's for namespace nodes) over the host's own (captures, QEMU)."""
        from testbed.host import packages

        found = packages.installed(packages.VERDICT_PACKAGES)
        roles = (self.topo.dns.server, self.topo.access_networks[0].router, self.topo.mobile.node)
        for node in dict.fromkeys(roles):
            rt = self.backend.runtime(self.state, node)
            found |= packages.installed(packages.VERDICT_PACKAGES,
                                        lambda argv, rt=rt: rt.run(argv, check=False).stdout)
        return found

    # ---------------------------------------------------------------- SCTP settings
    def sctp_settings(self, node: str) -> SctpSettings:
        """The node's SCTP settings now: the topology's, with what ``set_sctp`` changed since."""
        changed = self.state.extra.get("sctp", {}).get(node, {})
        return self.topo.nodes[node].sctp.model_copy(update=changed)

    def set_sctp(self, node: str, values: Mapping[str, int]) -> None:
        """Change a node's SCTP settings (``auth_enable``...) for the associations made from now
        on: a kernel's per-namespace sysctls are set at once; a usrsctp endpoint takes them
        when it next starts. Recorded in the lab's state."""
        spec = self.sctp_settings(node).model_copy(update=dict(values))
        if kernel_nodes.stack_of(spec) != "usrsctp":
            self.runtime(node).set_sysctls(kernel_nodes.sctp_sysctls(spec))
        self.state.extra.setdefault("sctp", {}).setdefault(node, {}).update(values)
        self.state.save()
