"""A mobile node's radio: attach to an access router, detach, move, and what it holds there.

Attached to an AR means the MN's interface toward it has carrier (the AR's side sees it too).
The MN's resident DHCP client and the kernel's SLAAC configure it; the mobility agent reports
when (``wait-configured``), so a move waits on events, not on polling addresses.

A lab may have many mobile nodes, each its own ``MobileNode``; they move at once: a move holds
the lab's lock shared (up and down wait for it) and its MN's own lock, and writes which ARs
its MN is attached to under a short lock of the state file.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

from testbed.errors import LabStateError, TestbedError
from testbed.host.poll import poll_until
from testbed.lab.nodes import Nodes
from testbed.lab.wiring import Wiring
from testbed.mobility import settle
from testbed.mobility.radio import choreograph
from testbed.model import retransmission
from testbed.model.topology import PolicySettings
from testbed.progress import Progress, quiet
from testbed.services.binding import binding_status
from testbed.state import LabState, locked, mobile_locked, state_locked

MoveMode = Literal["make-before-break", "break-before-make"]
CONFIGURE_TIMEOUT = 20.0
# a TraSH ladder's own time from a configured address to its last answer, on cores loaded to a
# load average of 8 (under 2 s seen), before any retransmission
LADDER_ALLOWANCE = 10.0


def binding_bound(topo, ars: set[str] | list[str]) -> float:
    """How long the binding updates of a move among ``ars`` may take: a ladder's own time on
    loaded cores, and the retransmissions that the worst of their links' loss makes likely:
    three exchanges a move (ADD_IP, SET_PRIMARY, DELETE_IP, or MPTCP's signals) on SCTP's
    timer, the slowest of the transports' (RTO.Min 1 s against TCP's 200 ms), and the DNS
    UPDATE on the updater's."""
    loss = max((a.shape.loss for a in topo.access_networks
                if a.router in ars and a.shape is not None), default=0.0)
    return LADDER_ALLOWANCE + max(retransmission.margin(loss, retransmission.SCTP, exchanges=3),
                                  retransmission.margin(loss, retransmission.DNS))


@dataclass
class AccessState:
    """What the MN holds on one access interface."""

    ifname: str
    carrier: bool
    ipv4: list[str]
    ipv6: list[str]  # global, usable (not tentative, or optimistic)


def usable6(a: dict[str, Any]) -> bool:
    """Non-tentative, or optimistic (RFC 4429: usable while DAD runs)."""
    if a.get("dadfailed"):
        return False
    return not a.get("tentative") or bool(a.get("optimistic"))


class MobileNode:
    def __init__(self, nodes: Nodes, wiring: Wiring, *,
                 dwell: Callable[[float], None] = time.sleep) -> None:
        self.nodes, self.wiring = nodes, wiring  # the wiring of this MN (``Wiring.for_mobile``)
        self.topo, self.plan = nodes.topo, nodes.plan
        self.dwell = dwell  # a scenario's deliberate overlap or gap (not a wait for an event)

    @property
    def state(self) -> LabState:
        return self.nodes.state

    @property
    def name(self) -> str:
        return self.wiring.mn

    @property
    def routers(self) -> list[str]:
        return [a.router for a in self.topo.access_networks]

    @property
    def attached(self) -> list[str]:
        """The ARs this MN is attached to, as the state file says."""
        return list(self.state.attached.get(self.name, []))

    def _set_attached(self, ar: str, on: bool) -> None:
        """Record (un)attachment in state.json; other MNs may be writing it at the same time."""
        with self.nodes.state_lock, state_locked(self.state.lab):
            fresh = LabState.load(self.state.lab)
            ars = fresh.attached.setdefault(self.name, [])
            if on and ar not in ars:
                ars.append(ar)
            elif not on and ar in ars:
                ars.remove(ar)
            fresh.save()
            self.state.attached = fresh.attached

    # ---------------------------------------------------------------- primitives
    def attach(self, ar: str) -> None:
        mn_if, _ = self.plan.access_iface(ar, self.name)
        mn = self.nodes.runtime(mn_if.node)
        mn.set_link(mn_if.ifname, True)  # the AR side sees carrier: the MN has associated
        if not self.agent_running():
            # DNA (RFC 4957/6059): solicit at once; Linux sends its own RS only after link-local
            # DAD (1 s). The agent does this itself when it runs.
            mn.run(["rdisc6", "-1", "-q", "-r", "10", "-w", "200", mn_if.ifname], check=False, timeout=5)
        self._set_attached(ar, True)

    def detach(self, ar: str) -> None:
        mn_if, _ = self.plan.access_iface(ar, self.name)
        mn = self.nodes.runtime(mn_if.node)
        mn.set_link(mn_if.ifname, False)  # the radio leaves: the DHCP client drops its lease
        mn.run(["ip", "addr", "flush", "dev", mn_if.ifname, "scope", "global"])  # and SLAAC's
        self._set_attached(ar, False)

    @contextmanager
    def _moving(self, to: str) -> Iterator[None]:
        """The lab's lock shared and this MN's own, with what it is attached to read afresh."""
        if to not in self.routers:
            raise TestbedError(f"{to!r} is not an access router of lab {self.state.lab!r} "
                               f"({', '.join(self.routers)})")
        lab = self.state.lab
        with locked(lab, shared=True), mobile_locked(lab, self.name):
            with self.nodes.state_lock, state_locked(lab):
                self.state.attached = LabState.load(lab).attached
            yield

    def move(self, to: str, mode: MoveMode = "make-before-break", overlap: float = 0.0,
             gap: float = 0.0, progress: Progress = quiet,
             timeout: float = CONFIGURE_TIMEOUT) -> dict[str, float]:
        """Attach the MN to ``to`` and detach it from every other AR; returns phase timings."""
        with self._moving(to):
            old = [ar for ar in self.attached if ar != to]

            def arrive() -> None:
                if to not in self.attached:
                    progress(f"attaching to {to}")
                    self.attach(to)
                    self.wait_configured(to, timeout)
                if mode == "make-before-break" and old:
                    # the old link stays until the binding updates made on the new address are
                    # answered: they may travel on it (an ASCONF goes to the peer's primary
                    # path), and one lost there is retransmitted there an RTO later
                    self.wait_settled(self.binding_bound({to, *old}))

            def leave() -> None:
                for ar in old:
                    progress(f"detaching from {ar}")
                    self.detach(ar)

            return choreograph(mode, arrive, leave, self._dwell, overlap, gap)

    def join(self, to: str, timeout: float = CONFIGURE_TIMEOUT) -> None:
        """Attach the MN to ``to`` as well, keeping every network it is on (which one its
        transports use is then the binding process's policy's choice)."""
        with self._moving(to):
            if to not in self.attached:
                self.attach(to)
                self.wait_configured(to, timeout)

    # ---------------------------------------------------------------- its binding process
    def binding_record(self):
        return next((r for r in self.state.service_records()
                     if r.service == "binding" and r.node == self.name), None)

    def policy(self) -> PolicySettings:
        """The policy the MN's binding process runs with now."""
        running = self.state.extra.get("policy", {}).get(self.name)
        return PolicySettings(**running) if running else self.topo.mobile.policy

    def set_policy(self, policy: PolicySettings) -> None:
        """Restart the binding process with ``policy`` (a run's; the topology's back after it).
        Nothing happens when it runs with that one already."""
        rec = self.binding_record()
        if rec is None or policy == self.policy():
            return
        self.nodes.runtime(rec.node).stop(rec.pid, grace=2.0)
        new = self.wiring.binding(policy).start()
        with self.nodes.state_lock, state_locked(self.state.lab):
            fresh = LabState.load(self.state.lab)
            fresh.services = [s for s in fresh.services if s["pid"] != rec.pid or s["node"] != rec.node]
            fresh.services.append(asdict(new))
            fresh.extra.setdefault("policy", {})[self.name] = policy.model_dump()
            fresh.save()
            self.nodes.state = fresh

    def _dwell(self, seconds: float) -> None:
        if seconds > 0:
            self.dwell(seconds)

    # ---------------------------------------------------------------- what the MN holds
    def access_state(self, ar: str) -> AccessState:
        mn_if, _ = self.plan.access_iface(ar, self.name)
        cp = self.nodes.runtime(mn_if.node).run(["ip", "-j", "addr", "show", "dev", mn_if.ifname])
        info = next(iter(json.loads(cp.stdout or "[]")), {})
        acc = next(a for a in self.topo.access_networks if a.router == ar)
        v4, v6 = [], []
        for a in info.get("addr_info", []):
            ip = ipaddress.ip_address(a["local"])
            if ip.version == 4 and acc.ipv4 is not None and ip in acc.ipv4:
                v4.append(str(ip))
            elif ip.version == 6 and acc.ipv6 is not None and ip in acc.ipv6 and usable6(a):
                v6.append(str(ip))
        return AccessState(mn_if.ifname, "LOWER_UP" in info.get("flags", []), v4, v6)

    def wait_configured(self, ar: str, timeout: float = CONFIGURE_TIMEOUT) -> AccessState:
        """Until the MN holds an address of each family ``ar``'s network has (a DHCPv4 lease,
        a usable SLAAC address): the agent answers on the event that completes it; without an
        agent, addresses are polled (they have no other notification here)."""
        mn_if, _ = self.plan.access_iface(ar, self.name)
        families = next(a.families for a in self.topo.access_networks if a.router == ar)
        if self.agent_running():
            r = self.agent_request({"cmd": "wait-configured", "ifname": mn_if.ifname,
                                    "families": list(families), "timeout": timeout},
                                   timeout=timeout + 5)
            if r.get("ok"):
                return self.access_state(ar)
            st = self.access_state(ar)
        else:
            def held() -> AccessState | None:
                s = self.access_state(ar)
                return s if all({4: s.ipv4, 6: s.ipv6}[f] for f in families) else None

            found = poll_until(held, timeout)
            if found:
                return found
            st = self.access_state(ar)
        raise TestbedError(f"mobile node not configured on {ar} within {timeout:g} s (IPv4 "
                           f"{st.ipv4 or 'none'}, IPv6 {st.ipv6 or 'none'}); see logs in {self.state.dir}")

    def binding_bound(self, ars: set[str] | list[str]) -> float:
        return binding_bound(self.topo, ars)

    def wait_settled(self, timeout: float) -> bool:
        """Until the binding updates of the MN's moves are done: the agent's state matches the
        attachments (each attached interface up with its networks configured, every other one
        down) and the binding process has acted on every event up to that state, so each
        binding update was answered (an ASCONF acknowledged, or given up on by its driver).
        False when ``timeout`` passes first; True at once where no binding process runs."""
        rec = next((r for r in self.state.service_records()
                    if r.service == "binding" and r.node == self.name), None)
        if rec is None or not self.nodes.service_running(rec):
            return True
        node, socket = self.nodes.runtime(self.name), self.wiring.binding_socket
        up = {self.plan.access_iface(ar, self.name)[0].ifname for ar in self.attached}
        every = {self.plan.access_iface(ar, self.name)[0].ifname for ar in self.routers}

        def state() -> dict[str, Any] | None:
            try:
                return json.loads((self.wiring.agent_dir / "state.json").read_text())
            except (OSError, ValueError):  # being replaced (it is rewritten atomically)
                return None

        def seen() -> int | None:
            try:
                n = binding_status(node, socket).detail.get("seen", -1)
            except TestbedError:
                return None
            return n if isinstance(n, int) else None

        return settle.wait(state, seen, up, every - up, timeout)

    # ---------------------------------------------------------------- its agent
    def agent_record(self):
        return next((r for r in self.state.service_records() if r.service == "agent" and r.node == self.name),
                    None)

    def agent_running(self) -> bool:
        rec = self.agent_record()
        return rec is not None and self.nodes.service_running(rec)

    def agent_client(self):
        """The agent's streaming client (subscribe to events), for an MN on the host kernel:
        a kernel node's socket is inside its guest (use ``agent_request`` or the events log)."""
        from testbed.mobility.agent import AgentClient

        if not self.agent_running():
            raise LabStateError(f"no mobility agent runs on {self.name} in lab {self.state.lab!r}")
        if self.nodes.own_kernel(self.name):
            raise LabStateError(f"{self.name} runs its own kernel: its agent socket is inside the guest "
                                "(use agent_request or the events log)")
        return AgentClient(self.wiring.agent_socket)

    def agent_request(self, cmd: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """One request to the MN's mobility agent, wherever it runs."""
        rt = self.nodes.runtime(self.name)
        return rt.unix_request(str(self.wiring.agent_socket), cmd, timeout=timeout)

    def depart(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Announced departure (§4): the agent withdraws the MN's records, then stops.
        Returns the location outcomes the agent logged for the withdrawal."""
        with locked(self.state.lab):
            self.nodes.state = LabState.load(self.state.lab)
            rec = self.agent_record()
            if rec is None or not self.nodes.service_running(rec):
                raise LabStateError(f"no mobility agent runs on {self.name}")
            log = self.wiring.agent_dir / "location.jsonl"
            before = len(log.read_text().splitlines()) if log.exists() else 0
            # SIGTERM: the agent calls on_depart (the withdrawal) before it exits
            self.nodes.runtime(rec.node).stop(rec.pid, grace=timeout)
            self.state.services = [s for s in self.state.services if s["pid"] != rec.pid]
            self.state.save()
            lines = log.read_text().splitlines()[before:] if log.exists() else []
            return [json.loads(x) for x in lines]
