"""The TraSH binding process on a mobile node (``python -m testbed.mobility.binding``).

It follows the mobility agent and, in Appendix-A order, drives the transport's binding driver —
SCTP's (ADD_IP, SET_PRIMARY, DELETE_IP) or MPTCP's (MP_JOIN + ADD_ADDR, MP_PRIO, REMOVE_ADDR),
embedded in the traffic client behind its command socket — and the location update (DNS UPDATE
after the primary switch). Without a running connection it still moves the DNS record on
primary switches.
"""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.services.base import Daemon

# the traffic client's driver socket inside a kernel node (its own tmpfs: a share cannot carry
# a Unix socket); a namespace node's is in its run directory (``Wiring.traffic_control``)
TRAFFIC_CONTROL = Path("/run/testbed-traffic.sock")


def binding_argv(python: str, agent_socket: Path, actions: Path, location: bool,
                 families: str = "4", switch: str = "newest", driver: Path = TRAFFIC_CONTROL) -> list[str]:
    """``location``: it sends the DNS UPDATE after the SET_PRIMARY (``TESTBED_LOC_*``);
    ``driver``: the traffic client's control socket."""
    argv = [python, "-m",
            "testbed.mobility.binding", "--agent", str(agent_socket),
            "--driver", str(driver), "--log", str(actions),
            "--families", families, "--switch", switch]
    return argv + (["--location"] if location else [])


class BindingService(Daemon):
    NAME = "binding"
    START_TIMEOUT = 180.0  # a Python start under TCG takes seconds, a minute on loaded cores

    def __init__(self, node, directory: Path, agent_socket: Path, location_env: dict[str, str],
                 families: str = "4", switch: str = "newest", driver_socket: Path = TRAFFIC_CONTROL) -> None:
        super().__init__(node, directory)
        self.agent_socket, self.location_env, self.driver_socket = agent_socket, location_env, driver_socket
        self.families, self.switch = families, switch
        self.actions = directory / "actions.jsonl"

    def env(self) -> dict[str, str]:
        return dict(self.location_env)

    def argv(self) -> list[str]:
        return binding_argv(sys.executable, self.agent_socket, self.actions, bool(self.location_env),
                            self.families, self.switch, self.driver_socket)

    def ready(self) -> bool:
        try:
            return '"op": "start"' in self.actions.read_text()
        except OSError:
            return False
