"""A lab machine: one UML kernel that runs a whole lab, driven by ``testbed`` inside it.

The machine is a UML node (``runtimes.uml``) with no NICs, in a labelled namespace of its own
(``<lab>-machine``): nothing of the lab inside is visible from the host, and removing that
namespace ends it all. Its /etc and /var/lib are overlays on the host's (the lab writes
/etc/netns/<ns>/resolv.conf and per-node state there); its /run is its own tmpfs, so the inner
lab's run directory, sockets and state live in the machine. Command output and scenario results
reach the host through writable shares: the machine's own state directory, and each output
directory a forwarded command names, mounted at the same path.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import ConfigError, LabStateError, TestbedError
from testbed.host import netns
from testbed.model.topology import Topology
from testbed.progress import Progress, quiet
from testbed.runtimes import uml_boot, uml_kernels
from testbed.runtimes.uml import UmlConfig, UmlNode
from testbed.state import LabState, namespace_label

MACHINE_NODE = "machine"
MEMORY_MB = 1024  # a sparse file: only what the lab touches is host memory
MODULES = ("veth", "bridge", "sch_netem", "sch_tbf", "sch_htb")
OVERLAYS = (Path("/etc"), Path("/var/lib"))
# what the lab needs of the machine's kernel, with what a lab using it asks for
REQUIRED = {"CONFIG_NET_NS": "network namespaces", "CONFIG_VETH": "veth links",
            "CONFIG_IP_SCTP": "kernel SCTP"}
PYTHON = sys.executable
# the inner lab's run root: the machine's own tmpfs, apart from the host's lab dir (whose
# machine/ share is mounted at the same path inside)
INNER_RUN_ROOT = "/run/testbed-inner"
POLL_OUTPUT = 0.1  # how often a forwarded command's output is copied to the terminal


def netns_name(lab: str) -> str:
    return f"{lab}-{MACHINE_NODE}"


def refuse_unservable(topo: Topology, source: str, needs: Sequence[str] = (),
                      kernel_config: dict[str, str] | None = None) -> None:
    """Combinations a UML lab machine cannot serve, refused before anything is made.

    Every node runs on the machine's kernel, so a node asking for a kernel of its own (uml,
    qemu) is refused, and so is a kernel feature the build lacks (``needs``: CONFIG_ names, e.g.
    CONFIG_MPTCP for an MPTCP scenario; a topology with MPTCP nodes needs it too). Debian's UML
    6.1 build has no MPTCP."""
    for name, node in topo.nodes.items():
        if node.sctp.stack in ("uml", "qemu", "vm"):
            raise ConfigError(source, f"nodes.{name}.sctp.stack", f"{node.sctp.stack} nodes cannot run "
                              "inside a UML lab machine (no kernel in a kernel here)",
                              "use stack: auto or host: the node then uses the machine's kernel")
    if any(node.mptcp.enabled for node in topo.nodes.values()):
        needs = (*needs, "CONFIG_MPTCP")
    config = kernel_config if kernel_config is not None else \
        uml_boot.kernel_config(uml_kernels.resolve(None).binary) or {}
    for symbol in dict.fromkeys((*REQUIRED, *needs)):
        if config.get(symbol) not in ("y", "m"):
            what = REQUIRED.get(symbol, symbol)
            raise ConfigError(source, "machine", f"the UML machine's kernel has no {what} ({symbol} "
                              "is not set)", "run this lab on the host (no --machine), or give "
                              "TESTBED_UML_KERNEL a UML build with it")


@dataclass
class Forwarded:
    """A ``testbed`` command run inside the machine: its exit status."""

    returncode: int


class LabMachine:
    """The machine of one lab (boot, attach, forward commands, shut down)."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.node: UmlNode | None = None

    @property
    def dir(self) -> Path:
        return self.state.dir / MACHINE_NODE

    def config(self) -> UmlConfig:
        return UmlConfig(name=MACHINE_NODE, netns=netns_name(self.state.lab), state_dir=self.dir,
                         memory_mb=MEMORY_MB, kernel=uml_kernels.resolve(None), extra_modules=MODULES,
                         overlays=OVERLAYS, boot_timeout=60.0, sctp={})

    # ---------------------------------------------------------------- life cycle
    def boot(self, progress: Progress = quiet) -> None:
        """Make the machine's namespace (recorded first) and boot the kernel in it."""
        ns = netns_name(self.state.lab)
        if netns.exists(ns):
            raise LabStateError(f"netns {ns} already exists: another lab? run `testbed clean`")
        self.state.netns.append(ns)
        self.state.save()
        netns.run(None, ["ip", "netns", "add", ns])
        label = namespace_label(self.state.lab)
        netns.run(None, ["ip", "-n", ns, "link", "set", "dev", "lo", "alias", label])
        progress("booting the UML lab machine")
        self.node = UmlNode(self.config()).start()
        self.state.kernel_nodes.append(self.node.record())
        self.state.save()

    def attach(self) -> UmlNode:
        if self.node is None:
            rec = next((r for r in self.state.kernel_nodes if r["node"] == MACHINE_NODE), None)
            if rec is None:
                raise LabStateError(f"lab {self.state.lab!r} has no machine record; run `testbed clean`")
            self.node = UmlNode.attach(self.config(), rec)
        return self.node

    def shutdown(self) -> None:
        self.attach().shutdown()

    # ---------------------------------------------------------------- commands inside
    def share(self, path: Path) -> None:
        """Make a host directory writable at the same path in the machine (results go there)."""
        path = path.resolve()
        path.mkdir(parents=True, exist_ok=True)
        node = self.attach()
        mounted = node.run(["findmnt", "-n", "-o", "TARGET", str(path)], check=False).stdout.strip()
        if mounted != str(path):
            node.run(["sh", "-c", f"mkdir -p {shlex.quote(str(path))} && mount -t hostfs hostfs "
                      f"{shlex.quote(str(path))} -o {shlex.quote(str(path))}"])

    def forward(self, args: Sequence[str], *, write: Callable[[str], object] = sys.stdout.write,
                write_err: Callable[[str], object] = sys.stderr.write,
                timeout: float | None = None) -> Forwarded:
        """Run ``testbed --lab <lab> ARGS`` in the machine; its output is copied to ``write``
        and its standard error to ``write_err`` as they come (the command writes them to two
        files in the machine's shared state dir), so machine output such as ``--json`` stays
        apart from messages."""
        node = self.attach()
        stem = f"command-{os.getpid()}-{time.monotonic_ns()}"
        logs = (self.dir / f"{stem}.out", self.dir / f"{stem}.err")
        argv = [PYTHON, "-m", "testbed.cli.main", "--lab", self.state.lab, *args]
        env = {"TESTBED_MACHINE": "uml", "TESTBED_RUN_ROOT": INNER_RUN_ROOT,
               "COLUMNS": os.environ.get("COLUMNS", "160"),
               **{k: v for k, v in os.environ.items() if k.startswith("TESTBED_")
                  and k not in ("TESTBED_RUN_ROOT", "TESTBED_MACHINE")}}
        pid = node.spawn(argv, log=logs[0], env=env, err_log=logs[1])
        deadline = None if timeout is None else time.monotonic() + timeout
        offsets = [0, 0]

        def copy() -> None:
            for i, w in enumerate((write, write_err)):
                offsets[i] = _copy_new(logs[i], offsets[i], w)

        try:
            while True:
                rc = node.wait(pid, POLL_OUTPUT)
                copy()
                if rc is not None:
                    return Forwarded(rc)
                if deadline is not None and time.monotonic() > deadline:
                    node.stop(pid)
                    raise TestbedError(f"`testbed {' '.join(args)}` in the lab machine: no end after "
                                       f"{timeout:g} s")
        except KeyboardInterrupt:
            node.signal(pid, 2)  # as a terminal would: the command inside stops and cleans up
            node.wait(pid, 30.0)
            copy()
            raise
        finally:
            for log in logs:
                log.unlink(missing_ok=True)


def _copy_new(log: Path, offset: int, write: Callable[[str], object]) -> int:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        write(data.decode(errors="replace"))
    return offset + len(data)
