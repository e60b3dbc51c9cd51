"""The mobility agent (testbed.mobility.agent) as a lab daemon on the mobile node.

It watches the MN's access interfaces, streams movement events on a Unix socket, keeps a
pollable state file, and (through its location hooks) publishes the MN's addresses with a
SIG(0)- or TSIG-signed DNS UPDATE.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import TestbedError
from testbed.services.base import Daemon

HOOKS = "testbed.mobility.location.agent_hooks:from_env"


@dataclass(frozen=True)
class AgentPaths:
    socket: Path  # its Unix socket (requests, event stream)
    state: Path  # the pollable state file, rewritten atomically
    events_log: Path  # every event as a JSON line


def agent_argv(python: str, paths: AgentPaths, ifaces: list[str], optimistic_dad: bool,
               location: bool, trusted: list[str] | None = None, rdisc: bool = False,
               source_routing: bool = False) -> list[str]:
    """``location``: the agent itself publishes the MN's addresses (its hooks read
    ``TESTBED_LOC_*`` from the environment); on an SCTP MN the binding process does it.
    ``rdisc``: solicit RFC 1256 router advertisements at link-up. ``source_routing``: a
    policy-routing rule per configured address (``testbed.mobility.routing``)."""
    argv = [python, "-m",
            "testbed.mobility.agent", "--socket", str(paths.socket), "--state", str(paths.state),
            "--events-log", str(paths.events_log),
            "--ifaces", ",".join(ifaces),
            # an RS that races the AR's own link-up is lost: solicit again soon, not after 1 s
            "--rs-count", "5", "--rs-interval", "0.2"]
    if optimistic_dad:
        argv.append("--optimistic-dad")
    if rdisc:
        argv.append("--rdisc")
    if location:
        argv += ["--location-hooks", HOOKS]
    if trusted is not None:
        argv += ["--trust", ",".join(trusted)]
    if source_routing:
        argv.append("--source-routing")
    return argv


class MobilityAgent(Daemon):
    NAME = "agent"
    # 1 s in a namespace; ~12 s in a TCG guest (Python over 9p) with the cores to itself, and
    # more than 60 s was seen while other labs' guests and jobs loaded the 2 cores
    START_TIMEOUT = 180.0

    def __init__(self, node, directory: Path, ifaces: list[str], location_env: dict[str, str],
                 optimistic_dad: bool = True, socket_path: Path | None = None,
                 trusted: list[str] | None = None, rdisc: bool = False, source_routing: bool = False) -> None:
        super().__init__(node, directory)
        self.rdisc = rdisc  # solicit RFC 1256 router advertisements at link-up
        self.source_routing = source_routing
        self.ifaces = ifaces
        self.location_env = location_env
        self.optimistic_dad = optimistic_dad
        self.trusted = trusted
        # in a VM the socket lives on the guest's tmpfs (a 9p share cannot hold one)
        self.socket = socket_path or directory / "agent.sock"
        self.state = directory / "state.json"
        self.location_log = directory / "location.jsonl"
        self.events_log = directory / "events.jsonl"

    def env(self) -> dict[str, str]:
        return {**self.location_env, "TESTBED_LOC_LOG": str(self.location_log), "PYTHONUNBUFFERED": "1"}

    def argv(self) -> list[str]:
        return agent_argv(sys.executable, AgentPaths(self.socket, self.state, self.events_log),
                          self.ifaces, self.optimistic_dad, bool(self.location_env), self.trusted,
                          self.rdisc, self.source_routing)

    def ready(self) -> bool:
        try:
            return bool(self.node.unix_request(str(self.socket), {"cmd": "ping"}, timeout=2).get("ok"))
        except TestbedError:
            return False  # not listening yet
