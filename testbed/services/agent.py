"""The mobility agent (testbed.mobility.agent) as a lab daemon on the mobile node.

It watches the MN's access interfaces, streams movement events on a Unix socket, keeps a
pollable state file, and (through its location hooks) publishes the MN's addresses with a
SIG(0)- or TSIG-signed DNS UPDATE.
"""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.errors import TestbedError
from testbed.services.base import Daemon

HOOKS = "testbed.mobility.location.agent_hooks:from_env"


class MobilityAgent(Daemon):
    NAME = "agent"
    # 1 s in a namespace; ~12 s in a TCG guest (Python over 9p) with the cores to itself, and
    # more than 60 s was seen while other labs' guests and jobs loaded the 2 cores
    START_TIMEOUT = 180.0

    def __init__(self, node, directory: Path, ifaces: list[str], location_env: dict[str, str],
                 optimistic_dad: bool = True, socket_path: Path | None = None,
                 trusted: list[str] | None = None, rdisc: bool = False) -> None:
        super().__init__(node, directory)
        self.rdisc = rdisc  # solicit RFC 1256 router advertisements at link-up
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
        argv = [sys.executable, "-m",
                "testbed.mobility.agent", "--socket", str(self.socket), "--state", str(self.state),
                "--events-log", str(self.events_log),
                "--ifaces", ",".join(self.ifaces),
                # an RS that races the AR's own link-up is lost: solicit again soon, not after 1 s
                "--rs-count", "5", "--rs-interval", "0.2"]
        if self.optimistic_dad:
            argv.append("--optimistic-dad")
        if self.rdisc:
            argv.append("--rdisc")
        if self.location_env:
            argv += ["--location-hooks", HOOKS]
        if self.trusted is not None:
            argv += ["--trust", ",".join(self.trusted)]
        return argv

    def ready(self) -> bool:
        try:
            return bool(self.node.unix_request(str(self.socket), {"cmd": "ping"}, timeout=2).get("ok"))
        except TestbedError:
            return False  # not listening yet
