"""TraSH sequencing (spec §5, Appendix A): movement events in, binding actions out.

``TrashSequencer`` is the I/O-free core: it turns the agent's events into the ordered actions
of the TraSH ladder — ``add`` the new address (ASCONF ADD_IP), ``primary`` when the policy says
the new network is better (SET_PRIMARY), ``location`` right after (the DNS UPDATE to the new
network's addresses), ``delete`` once the old network is lost (DELETE_IP). Every decision is the
shared ``Policy``'s; any transport's driver executes the actions. A policy that wants a network
to stay better for a while (``dwell``) needs a clock while no event comes: the sequencer then
has a deadline (``next_deadline``), and its caller asks again at it (``tick``).

``python -m testbed.mobility.binding`` is the I/O shell run on the MN: it subscribes to the
agent, feeds the sequencer and executes actions against a transport's binding driver (the
binding-driver protocol, ``testbed.mobility.protocol``) and the location updater, logging each
action with its times as JSON lines. It answers that protocol's status request on a socket of
its own (``--socket``): its readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from testbed.mobility.driver import Channel, DriverError, request, unix_channel
from testbed.mobility.driver import serve as serve_driver
from testbed.mobility.events import Event
from testbed.mobility.policy import NetworkView, Policy
from testbed.mobility.protocol import (
    Add,
    Command,
    Delete,
    Done,
    Failed,
    Primary,
    Reply,
    State,
    Status,
    encode,
)

ActionKind = Literal["add", "primary", "location", "delete"]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    address: str = ""  # add / primary / delete
    ifname: str = ""  # add: the interface the address is on (a subflow is bound to it)
    a: tuple[str, ...] = ()  # location: records to publish
    aaaa: tuple[str, ...] = ()
    cause: int = 0  # seq of the event that led to it
    decision: Mapping[str, Any] | None = None  # primary: why the policy chose that network


def _family(prefix: str | None, addresses: tuple[str, ...]) -> int:
    if prefix:
        return ipaddress.ip_network(prefix, strict=False).version
    return ipaddress.ip_address(addresses[0]).version if addresses else 0


@dataclass
class TrashSequencer:
    """Holds the association's view: bound addresses, networks seen, the primary network."""

    policy: Policy = field(default_factory=Policy)
    bound: set[str] = field(default_factory=set)  # addresses in the association now
    networks: dict[tuple[str, str], NetworkView] = field(default_factory=dict)
    primary: NetworkView | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    published: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    # networks beating the primary on the policy's metric, since when (monotonic seconds)
    leading: dict[tuple[str, str], float] = field(default_factory=dict)
    now: float = 0.0  # the clock: the last event's time, or the last tick's

    def start(self, bound: set[str], networks: list[NetworkView], primary_addr: str) -> None:
        """The association as established: its addresses and the network of its primary."""
        self.bound = set(bound)
        for n in networks:
            self.networks[(n.ifname, n.prefix)] = n
            if primary_addr in n.addresses:
                self.primary = n

    def join(self, bound: set[str], families: frozenset[int]) -> None:
        """A transport's association appeared: its addresses are the bound set and its
        families those the ladder adds. The primary network becomes the one holding a bound
        address, when the current one is of a family the association does not carry."""
        self.bound = set(bound)
        self.policy = replace(self.policy, families=families)
        if self.primary is None or self.primary.family not in families:
            self.primary = next((n for n in self.networks.values() if n.usable and n.family in families
                                 and self.bound & set(n.addresses)), self.primary)

    def feed(self, e: Event) -> list[Action]:
        self.now = max(self.now, e.mono)
        if e.metrics:
            self.metrics[e.ifname] = dict(e.metrics)
        if e.kind == "configured" and e.prefix:
            return self._configured(e)
        if e.kind == "lost" and e.prefix:
            return self._lost(e)
        if e.kind == "metric":
            return self._reconsider(e.seq)
        return []

    def next_deadline(self) -> float | None:
        """When a network that beats the primary will have done so for the policy's dwell
        (monotonic seconds); None when none is waiting."""
        if not self.leading or not self.policy.needs_dwell(self.primary):
            return None
        return min(self.leading.values()) + self.policy.dwell

    def tick(self, now: float) -> list[Action]:
        """Decide again at ``now`` with no new event (at ``next_deadline``)."""
        self.now = max(self.now, now)
        return self._reconsider(0)

    # -- the ladder
    def _configured(self, e: Event) -> list[Action]:
        nv = NetworkView(e.ifname, e.prefix or "", tuple(e.addresses), configured=True,
                         family=_family(e.prefix, tuple(e.addresses)))
        self.networks[(nv.ifname, nv.prefix)] = nv
        out: list[Action] = []
        if self.policy.should_add(nv):
            for addr in nv.addresses:
                if addr not in self.bound:
                    self.bound.add(addr)
                    out.append(Action("add", addr, ifname=nv.ifname, cause=e.seq))
            if self.policy.should_make_primary(nv, self.primary, self.metrics):
                if self._dwelt(nv):
                    out += self._switch(nv, e.seq)
            else:
                self.leading.pop((nv.ifname, nv.prefix), None)
        if self.primary and nv.ifname == self.primary.ifname:
            out += self._publish(e.seq)  # e.g. the AAAA of the primary link, after its A
        return out

    def _lost(self, e: Event) -> list[Action]:
        key = (e.ifname, e.prefix or "")
        old = self.networks.get(key) or NetworkView(e.ifname, e.prefix or "", tuple(e.addresses))
        old = replace(old, lost=True, addresses=tuple(e.addresses) or old.addresses)
        self.networks[key] = old
        out: list[Action] = []
        if self.primary and (self.primary.ifname, self.primary.prefix) == key:
            self.primary = old
            best = self._best_other(old)
            if best is not None:
                out += self._switch(best, e.seq, "lost")
            else:
                out += self._publish(e.seq)  # nothing left to point at: withdraw
        if self.policy.should_delete(old, self.primary):
            for addr in old.addresses:
                if addr in self.bound:
                    self.bound.discard(addr)
                    out.append(Action("delete", addr, cause=e.seq))
        return out

    def _dwelt(self, nv: NetworkView) -> bool:
        """``nv`` beats the primary now: has it for the policy's dwell (the clock starts now
        when it just began to)?"""
        if not self.policy.needs_dwell(self.primary):
            return True
        since = self.leading.setdefault((nv.ifname, nv.prefix), self.now)
        return self.now - since >= self.policy.dwell - 1e-9

    def _reconsider(self, seq: int) -> list[Action]:
        """A metric changed (or a deadline came): a metric policy may move the primary."""
        if self.policy.switch != "metric":
            return []
        ready = []
        for key, nv in self.networks.items():
            if self.primary is not None and nv.ifname == self.primary.ifname:
                continue
            if nv.usable and self.policy.should_make_primary(nv, self.primary, self.metrics):
                if self._dwelt(nv):
                    ready.append(nv)
            else:
                self.leading.pop(key, None)
        if not ready:
            return []
        sign = 1 if self.policy.higher_is_better else -1
        best = max(ready, key=lambda n: sign * self.metrics.get(n.ifname, {}).get(self.policy.metric, 0.0))
        return self._switch(best, seq)

    def _reason(self, nv: NetworkView) -> str:
        cur = self.primary
        if cur is None:
            return "first"
        if not cur.usable:
            return "lost"
        return self.policy.switch

    def _switch(self, nv: NetworkView, seq: int, reason: str | None = None) -> list[Action]:
        """Make ``nv`` primary: its link's addresses added first where they are not bound (a
        network left earlier under ``keep_old: false`` lost them), then SET_PRIMARY."""
        out: list[Action] = []
        if self.policy.should_add(nv):
            for n in self.networks.values():
                if n.ifname == nv.ifname and self.policy.should_add(n):
                    for a in n.addresses:
                        if a not in self.bound:
                            self.bound.add(a)
                            out.append(Action("add", a, ifname=n.ifname, cause=seq))
        addr = next((a for a in nv.addresses if a in self.bound), None)
        if addr is None:
            return out
        cur = self.primary
        watched = [n.ifname for n in (cur, nv) if n is not None]
        since = self.leading.get((nv.ifname, nv.prefix), self.now)
        decision = {"reason": reason or self._reason(nv), "at": self.now, "since": since,
                    "from": {"ifname": cur.ifname, "prefix": cur.prefix} if cur else None,
                    "to": {"ifname": nv.ifname, "prefix": nv.prefix},
                    "metric": self.policy.metric,
                    "metrics": {i: dict(self.metrics.get(i, {})) for i in dict.fromkeys(watched)}}
        self.primary = nv
        self.leading.clear()
        out.append(Action("primary", addr, cause=seq, decision=decision))
        out += self._publish(seq)
        if not self.policy.keep_old:
            for n in list(self.networks.values()):
                if n.ifname != nv.ifname and self.policy.should_delete(n, nv):
                    for a in n.addresses:
                        if a in self.bound:
                            self.bound.discard(a)
                            out.append(Action("delete", a, cause=seq))
        return out

    def _best_other(self, old: NetworkView) -> NetworkView | None:
        for nv in self.networks.values():
            if nv.usable and nv.family == old.family and (nv.ifname, nv.prefix) != (old.ifname, old.prefix):
                return nv
        return None

    def publish(self, seq: int = 0) -> list[Action]:
        """The location update for the current primary (e.g. the first registration)."""
        return self._publish(seq)

    def _publish(self, seq: int) -> list[Action]:
        """The location update: every usable address on the primary network's link."""
        a: list[str] = []
        aaaa: list[str] = []
        if self.primary and self.primary.usable:
            for nv in self.networks.values():
                if nv.ifname == self.primary.ifname and nv.usable:
                    for addr in nv.addresses:
                        (a if ipaddress.ip_address(addr).version == 4 else aaaa).append(addr)
        records = (tuple(sorted(a)), tuple(sorted(aaaa)))
        if records == self.published:
            return []
        self.published = records
        return [Action("location", a=records[0], aaaa=records[1], cause=seq)]


def metrics_from_state(state: Mapping) -> dict[str, dict[str, float]]:
    """Each interface's link metrics in the agent's state file (a binding process started
    mid-run knows the readings it would otherwise wait for the next event of)."""
    return {ifname: dict(st["metrics"]) for ifname, st in state.get("interfaces", {}).items()
            if st.get("metrics")}


def views_from_state(state: Mapping) -> list[NetworkView]:
    """NetworkViews of the agent's state file (for starting a sequencer mid-run)."""
    out = []
    for ifname, st in state.get("interfaces", {}).items():
        for n in st.get("networks", []):
            addrs = tuple(n.get("addresses", ()))
            out.append(NetworkView(ifname, n["prefix"], addrs, configured=bool(n.get("configured")),
                                   lost=st.get("link") != "up", family=_family(n["prefix"], addrs)))
    return out


# ---------------------------------------------------------------------------- I/O shell
def _log_line(path, record: dict) -> None:
    from testbed.host import jsonlines

    jsonlines.append(path, record, stamp=True)


COMMAND_OF: dict[str, Callable[[Action], Command]] = {
    "add": lambda a: Add(a.address, a.ifname),
    "primary": lambda a: Primary(a.address),
    "delete": lambda a: Delete(a.address),
}


class DriverLink:
    """The transport's binding driver, joined when its command socket appears (a transport may
    start after the MN has attached, and stop before it moves again). ``channel``: reach it
    some other way than ``path`` (``driver.loopback``)."""

    def __init__(self, path: str | None, channel: Channel | None = None) -> None:
        self.path = path
        self.channel = channel or (unix_channel(path) if path else None)
        self.name = f"at {path}" if path else "in memory"
        self.connected = False
        self.refused = ""  # why the driver was last not joined (one line), "" when it was

    def available(self) -> bool:
        import os

        if self.path:
            return os.path.exists(self.path)
        return self.channel is not None

    async def request(self, cmd: Command) -> Reply:
        """The driver's answer; a transport that went away mid-request (its association was
        aborted, its process ended) or that answers in another protocol is an answer too:
        ``Failed`` with the one line, and the link is down."""
        import asyncio

        assert self.channel is not None, "no driver to ask"
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, request, self.channel, cmd, self.name)
        except DriverError as e:
            self.connected = False
            return Failed(cmd.OP, str(e))

    async def join(self) -> State | None:
        """The driver's status once it answers one in this protocol version."""
        reply = await self.request(Status())
        if isinstance(reply, State):
            self.connected, self.refused = True, ""
            return reply
        self.refused = reply.error if isinstance(reply, Failed) else f"status answered with {reply!r}"
        return None


class LocationUpdates:
    """The DNS UPDATEs of the ladder, sent one at a time and in order, beside the binding
    actions: an address change never waits for an update's answer. An update that went
    unanswered for its first attempt's timeout (retrying: no network carries it, as during a
    break-before-make gap) is superseded by the next one, whose records are the ones the name
    must show; otherwise the next one waits for it. ``on_settled`` is called each time one is
    answered or superseded (the binding process's status then says so)."""

    def __init__(self, updater, log_path: str, on_settled: Callable[[], None] = lambda: None) -> None:
        self.updater, self.log_path, self.on_settled = updater, log_path, on_settled
        self.pending: asyncio.Task | None = None
        self.started = 0.0
        self.causes: list[int] = []  # the events of the updates under way, oldest first
        retry = getattr(updater, "retry", None)
        self.patience = retry.timeout if retry is not None else float("inf")

    def submit(self, act: Action, rec: dict) -> None:
        loop = asyncio.get_running_loop()
        before = self.pending
        if before is not None and not before.done() and loop.time() - self.started >= self.patience:
            before.cancel()
        self.started = loop.time()
        self.causes.append(act.cause)
        self.pending = asyncio.create_task(self._send(act, rec, before))
        self.pending.add_done_callback(lambda _t, cause=act.cause: self._settled(cause))

    def _settled(self, cause: int) -> None:
        self.causes.remove(cause)
        self.on_settled()

    def seen(self, last: int) -> int:
        """The last event whose updates are all answered, of those up to ``last``."""
        return min(last, self.causes[0] - 1) if self.causes else last

    async def _send(self, act: Action, rec: dict, before: asyncio.Task | None) -> None:
        if before is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await before
        try:
            res = await self.updater.update(act.a, act.aaaa)
        except asyncio.CancelledError:
            _log_line(self.log_path, {**rec, "ok": False, "superseded": True})
            raise
        rec.update(res.to_dict())
        _log_line(self.log_path, rec)

    async def drain(self) -> None:
        if self.pending is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.pending

    async def answered(self) -> None:
        """Until the updates under way are answered, for at most a first attempt's timeout (a
        DELETE that Appendix A puts after the DNS answer; an unreachable server does not hold
        the ladder longer than it would hold the update)."""
        if self.pending is not None and not self.pending.done():
            timeout = None if self.patience == float("inf") else self.patience
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.pending), timeout)


class BindingEndpoint:
    """The binding process's own socket: it answers the protocol's status request (its
    readiness, and the association as the ladder sees it). It takes its moves from the agent,
    so add, primary and delete sent here are refused."""

    REFUSED = "the binding process takes its moves from the mobility agent's events"

    def __init__(self) -> None:
        self.current = State("starting")

    def update(self, seqr: TrashSequencer, link: DriverLink, seen: int) -> None:
        """A new status from the loop's state (one reference swap: the socket's thread reads
        it without a lock). ``seen``: the agent's last event whose actions are all answered
        (a run waits for its moves' events before it stops the traffic)."""
        primary = seqr.primary
        addr = next((a for a in primary.addresses if a in seqr.bound), "") if primary else ""
        detail = {"transport": "joined" if link.connected else "none", "driver": link.path or "",
                  "primary_network": primary.prefix if primary else "", "seen": seen}
        if link.refused:
            detail["refused"] = link.refused
        self.current = State("following", local=tuple(sorted(seqr.bound)), primary=addr,
                             families=tuple(sorted(seqr.policy.families)), mode=seqr.policy.switch,
                             detail=detail)

    def add(self, address: str, ifname: str = "") -> Done:
        raise ValueError(self.REFUSED)

    def primary(self, address: str) -> Done:
        raise ValueError(self.REFUSED)

    def delete(self, address: str) -> Done:
        raise ValueError(self.REFUSED)

    def status(self) -> State:
        return self.current


async def serve(agent_sock: str, driver_sock: str | None, log_path: str, policy: Policy, updater,
                socket_path: str | None = None, link: DriverLink | None = None) -> None:
    """Follow the agent and drive the transport, in TraSH order, until the agent goes away;
    answer status requests on ``socket_path`` once following it.

    Without a transport (no driver socket yet) the ladder still runs as bookkeeping, so the
    location update still follows the policy's primary switch (spec §4/§5).
    """
    import logging
    import time
    from pathlib import Path

    from testbed.mobility.agent import AgentClient

    log = logging.getLogger(__name__)
    client = AgentClient(agent_sock)
    await client.wait_ready(timeout=60)
    state = await client.state()
    views = views_from_state(state)
    seqr = TrashSequencer(policy, metrics=metrics_from_state(state))
    usable = [v for v in views if v.usable and v.family in policy.families]
    first = usable[0].addresses[0] if usable else ""
    seqr.start({a for v in usable for a in v.addresses}, views, first)
    link = link or DriverLink(driver_sock)
    endpoint = BindingEndpoint()
    last = int(state.get("seq", 0))  # the agent's last event fed to the sequencer

    def refresh() -> None:
        endpoint.update(seqr, link, locations.seen(last) if locations is not None else last)

    locations = LocationUpdates(updater, log_path, refresh) if updater is not None else None
    _log_line(log_path, {"event": "binding", "op": "start", "bound": sorted(seqr.bound),
                         "primary": seqr.primary.prefix if seqr.primary else None})

    async def execute(actions: list[Action]) -> None:
        located = False  # a location update came before in this batch
        for act in actions:
            rec: dict = {"event": "binding", "op": act.kind, "cause": act.cause}
            if act.kind == "delete" and located and locations is not None:
                await locations.answered()  # the switch's DELETE after the DNS answer (Appendix A)
            if act.kind == "location":
                rec.update(a=list(act.a), aaaa=list(act.aaaa))
                if locations is not None:
                    locations.submit(act, rec)  # logged once answered
                    located = True
                    continue
            else:
                rec["address"] = act.address
                if act.decision is not None:
                    rec["decision"] = dict(act.decision)
                if link.connected:
                    reply = await link.request(COMMAND_OF[act.kind](act))
                    rec.update(ok=isinstance(reply, Done), driver=encode(reply))
                else:
                    rec["transport"] = "none"
            _log_line(log_path, rec)

    async def join() -> None:
        refused = link.refused
        status = await link.join()
        if status is not None:  # the association's own addresses are the bound set
            seqr.join(set(status.local), frozenset(status.families or policy.families))
            _log_line(log_path, {"event": "binding", "op": "transport", "driver": encode(status)})
        elif link.refused != refused:  # said once, not on every event
            log.error("%s", link.refused)
            _log_line(log_path, {"event": "binding", "op": "transport", "error": link.refused})

    if seqr.primary is not None:  # register where the MN is now (if it is attached yet)
        await execute(seqr.publish(0))
    async with client.subscribe(since=last) as sub:
        refresh()
        server = serve_driver(Path(socket_path), endpoint) if socket_path else None
        try:
            while True:
                deadline = seqr.next_deadline()
                try:
                    e = await sub.next(None if deadline is None else max(0.0, deadline - time.monotonic()))
                except TimeoutError:  # the policy's dwell ran out with no event: decide again
                    await execute(seqr.tick(time.monotonic()))
                    refresh()
                    continue
                if e is None:
                    break
                if link.available() and not link.connected:
                    await join()
                elif link.connected and not link.available():
                    link.connected = False
                await execute(seqr.feed(e))
                last = e.seq
                refresh()
        finally:
            if locations is not None:
                await locations.drain()
            if server is not None:
                server.close()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import asyncio
    import logging

    from testbed import warning_filters

    warning_filters.install()  # its log is quoted when it fails: no dependency's warnings in it

    ap = argparse.ArgumentParser(prog="python -m testbed.mobility.binding", description=__doc__)
    ap.add_argument("--agent", required=True, help="the mobility agent's Unix socket")
    ap.add_argument("--driver", help="the transport driver's command socket (joined when it appears)")
    ap.add_argument("--socket", help="Unix socket to answer status requests on (binding-driver protocol)")
    ap.add_argument("--log", required=True, help="JSON-lines log of every action")
    ap.add_argument("--switch", choices=("newest", "metric", "on-loss"), default="newest")
    ap.add_argument("--metric", default="signal")
    ap.add_argument("--hysteresis", type=float, default=0.0,
                    help="metric: by how much the new network must beat the current one")
    ap.add_argument("--dwell", type=float, default=0.0,
                    help="metric: for how many seconds it must keep doing so")
    ap.add_argument("--delete-on-switch", action="store_true",
                    help="delete the old network's addresses at the switch, not when it is lost")
    ap.add_argument("--families", default="4", help="address families of the association: 4, 6, "
                    "4,6 (until a transport joins and says which it carries)")
    ap.add_argument("--location", action="store_true",
                    help="also send the DNS UPDATE (configured from TESTBED_LOC_* as for the agent)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    policy = Policy(switch=args.switch, metric=args.metric, hysteresis=args.hysteresis, dwell=args.dwell,
                    keep_old=not args.delete_on_switch,
                    families=frozenset(int(f) for f in args.families.split(",")))
    updater = None
    if args.location:
        from testbed.mobility.location.agent_hooks import from_env

        updater = from_env().updater
    asyncio.run(serve(args.agent, args.driver, args.log, policy, updater, args.socket))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
