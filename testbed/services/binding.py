"""The TraSH binding process on a mobile node (``python -m testbed.mobility.binding``).

It follows the mobility agent and, in Appendix-A order, drives the transport's binding driver —
SCTP's (ADD_IP, SET_PRIMARY, DELETE_IP) or MPTCP's (MP_JOIN + ADD_ADDR, MP_PRIO, REMOVE_ADDR),
embedded in the traffic client behind its command socket — and the location update (DNS UPDATE
after the primary switch). Without a running connection it still moves the DNS record on
primary switches. It is ready once it answers the binding-driver protocol's status request on
its own socket.
"""

from __future__ import annotations

import sys
from pathlib import Path

from testbed.errors import ServiceError, TestbedError
from testbed.mobility import protocol
from testbed.model.topology import PolicySettings
from testbed.runtimes.base import NodeRuntime
from testbed.services.base import Daemon

# the traffic client's driver socket and the binding process's own inside a kernel node (its
# own tmpfs: a share cannot carry a Unix socket); a namespace node's are in its run directory
# (``Wiring.traffic_control``, ``Wiring.binding_socket``)
TRAFFIC_CONTROL = Path("/run/testbed-traffic.sock")
GUEST_BINDING_SOCKET = Path("/run/testbed-binding.sock")


def policy_args(policy: PolicySettings) -> list[str]:
    """The topology's (or a scenario's) ``mobile.policy`` as the binding process's arguments."""
    argv = ["--switch", policy.switch, "--metric", policy.metric,
            "--hysteresis", f"{policy.hysteresis_db:g}", "--dwell", f"{policy.dwell_s:g}"]
    return argv + ([] if policy.keep_old else ["--delete-on-switch"])


def binding_argv(python: str, agent_socket: Path, actions: Path, location: bool, socket: Path,
                 families: str = "4", switch: str = "newest", driver: Path = TRAFFIC_CONTROL,
                 policy: PolicySettings | None = None) -> list[str]:
    """``location``: it sends the DNS UPDATE after the SET_PRIMARY (``TESTBED_LOC_*``);
    ``socket``: where it answers status requests; ``driver``: the traffic client's control
    socket; ``policy``: the whole policy (then ``switch`` is its)."""
    argv = [python, "-m",
            "testbed.mobility.binding", "--agent", str(agent_socket),
            "--driver", str(driver), "--log", str(actions), "--socket", str(socket),
            "--families", families]
    argv += policy_args(policy) if policy is not None else ["--switch", switch]
    return argv + (["--location"] if location else [])


def binding_status(node: NodeRuntime, socket: Path, timeout: float = 5.0) -> protocol.State:
    """The binding process's own view: the ladder's bound addresses and primary, and in
    ``detail["seen"]`` the agent's last event it has acted on. TestbedError when it does not
    answer; ServiceError naming the socket when it answers in another protocol version."""
    raw = node.unix_request(str(socket), protocol.encode(protocol.Status()), timeout=timeout)
    try:
        reply = protocol.decode_reply(raw)
    except protocol.ProtocolError as e:
        raise ServiceError(f"binding process on {node.name} at {socket}: {e}") from e
    if not isinstance(reply, protocol.State):
        raise ServiceError(f"binding process on {node.name} at {socket}: {reply}")
    return reply


class BindingService(Daemon):
    NAME = "binding"
    START_TIMEOUT = 180.0  # a Python start under TCG takes seconds, a minute on loaded cores

    def __init__(self, node, directory: Path, agent_socket: Path, location_env: dict[str, str],
                 families: str = "4", switch: str = "newest", driver_socket: Path = TRAFFIC_CONTROL,
                 socket_path: Path | None = None, policy: PolicySettings | None = None) -> None:
        super().__init__(node, directory)
        self.agent_socket, self.location_env, self.driver_socket = agent_socket, location_env, driver_socket
        self.families, self.switch, self.policy = families, switch, policy
        self.actions = directory / "actions.jsonl"
        self.socket = socket_path or directory / "binding.sock"

    def env(self) -> dict[str, str]:
        return dict(self.location_env)

    def argv(self) -> list[str]:
        return binding_argv(sys.executable, self.agent_socket, self.actions, bool(self.location_env),
                            self.socket, self.families, self.switch, self.driver_socket, self.policy)

    def ready(self) -> bool:
        """It answers a status request; an answer in another protocol version is an error
        (one line naming the socket), not a wait."""
        try:
            binding_status(self.node, self.socket, timeout=2)
        except ServiceError:
            raise
        except TestbedError:
            return False  # not listening yet
        return True
