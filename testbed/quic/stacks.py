"""The QUIC stacks a node can run: where their programs are, their versions, and what is missing.

- ``aioquic``: the Python package, pinned to 1.7.2 in pyproject.toml (later releases need a
  pylsqpack newer than the package index has). It runs as ``python -m testbed.quic.app``.
- ``ngtcp2``: Debian bookworm's 0.12.1 builds of ngtcp2's HTTP/3 examples over GnuTLS (they
  link nghttp3): ``gtlsserver`` from the package ``ngtcp2-server`` on a correspondent,
  ``gtlsclient`` from ``ngtcp2-client`` on a mobile node. bookworm-backports carries 1.11; the
  lab uses bookworm's, which is what ``scripts/setup-system.sh`` installs.

Every check here runs before a lab or a run makes anything, and fails in one line naming the
topology field and what to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from testbed.errors import MissingDependency, TestbedError
from testbed.model.topology import Role, Topology

AIOQUIC_PIN = "1.7.2"
GTLSSERVER = Path("/usr/sbin/gtlsserver")
GTLSCLIENT = Path("/usr/bin/gtlsclient")
# the ngtcp2 program a role runs, and the Debian package that holds it
NGTCP2_PROGRAMS: dict[Role, tuple[Path, str]] = {Role.HOST: (GTLSSERVER, "ngtcp2-server"),
                                                 Role.MOBILE: (GTLSCLIENT, "ngtcp2-client")}


class AioquicMissing(TestbedError):
    """The aioquic package cannot be imported by the lab's Python."""

    exit_code = 3


@dataclass(frozen=True)
class StackInfo:
    """What serves QUIC on a node (for verdict.json's ``lab`` block)."""

    stack: str
    version: str
    program: str  # the executable, or the module run with the lab's Python

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@cache
def _deb_version(package: str) -> str:
    cp = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return cp.stdout.strip() if cp.returncode == 0 else ""


def aioquic_info(field: str) -> StackInfo:
    """aioquic as the lab's Python imports it; ``field`` names the topology setting asking."""
    if importlib.util.find_spec("aioquic") is None:
        raise AioquicMissing(f"{field}: aioquic: the Python package is not installed for {sys.executable} "
                             f"(install it: {Path(sys.executable).parent}/pip install "
                             f"aioquic=={AIOQUIC_PIN}, or run `make setup`)")
    return StackInfo("aioquic", importlib.metadata.version("aioquic"), "testbed.quic.app")


def ngtcp2_info(field: str, role: Role) -> StackInfo:
    program, package = NGTCP2_PROGRAMS[role]
    if not program.exists():
        raise MissingDependency(f"{field}: ngtcp2: {program}", package)
    return StackInfo("ngtcp2", _deb_version(package), str(program))


def node_stack(topo: Topology, node: str) -> StackInfo:
    """The stack ``node`` runs QUIC with, checked present (raises naming what to install)."""
    spec = topo.nodes[node]
    field = f"nodes.{node}.quic.stack"
    if spec.quic.stack == "aioquic":
        return aioquic_info(field)
    if spec.quic.stack == "ngtcp2":
        role = Role.MOBILE if spec.role is Role.MOBILE else Role.HOST
        return ngtcp2_info(field, role)
    raise TestbedError(f"{field}: {node} speaks no QUIC (give it quic: {{stack: aioquic}})")
