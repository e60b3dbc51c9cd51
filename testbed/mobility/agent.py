"""The mobility agent on a node: detector + event fan-out + state file + command socket.

``python -m testbed.mobility.agent --socket PATH --state PATH [--ifaces a,b]`` runs inside the
node's namespace. Transports (SCTP binding drivers) and location management subscribe on the
Unix socket and receive JSON lines; a scenario polls the state file or asks ``{"cmd":"state"}``.

Wire protocol (one JSON object per line, both ways):
- ``{"cmd":"subscribe","since":N}`` → ``{"ok":true,"seq":S}``, then history after seq N (if
  given; at most ``--history`` events) and every new event as ``Event.to_json()``. If this
  subscriber fell behind, ``{"dropped":K}`` comes before the next event it does get.
- ``{"cmd":"state"}`` → ``{"ok":true,"state":{...}}`` (the state file's content).
- ``{"cmd":"set-metric","ifname":I,"name":M,"value":V}`` → ``{"ok":true}`` (emits ``metric``).
- ``{"cmd":"set-metrics","ifname":I,"values":{M:V,...}}`` → ``{"ok":true}`` (one ``metric``
  event for all that changed).
- ``{"cmd":"wait-configured","ifname":I,"families":[4,6],"timeout":T}`` → ``{"ok":true,
  "addresses":[...]}`` once I holds a configured network of every family asked for (answered on
  the event that completes it), ``{"ok":false,"error":...}`` after T seconds.
- anything else → ``{"ok":false,"error":"..."}``.

A slow subscriber never blocks the detector or the others: each has a bounded queue that drops
its oldest undelivered event (and counts it) when full.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import os
import shlex
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from testbed.errors import ConfigError, TestbedError
from testbed.mobility.detection.detector import (
    DetectorOptions,
    EventSink,
    MovementDetector,
    parse_ifaces,
)
from testbed.mobility.events import Event
from testbed.mobility.routing import SourceRoutes

log = logging.getLogger(__name__)

LINE_LIMIT = 4 * 1024 * 1024  # a state reply for many interfaces is one line


class LocationHooks(Protocol):
    """What the agent calls into location management (testbed/mobility/location, §4).

    ``on_configured`` gets every usable address of the node whenever that set changes (a
    network configured or lost); ``on_depart`` is called once at shutdown. Either may be a
    coroutine function; calls are serialised in event order.
    """

    def on_configured(self, addresses: list[str]) -> Awaitable[None] | None: ...

    def on_depart(self) -> Awaitable[None] | None: ...


@dataclass
class AgentConfig:
    socket_path: Path
    state_path: Path
    detector: DetectorOptions = field(default_factory=DetectorOptions)
    queue_size: int = 256  # per subscriber
    history: int = 1024  # events kept for subscribe-with-since
    events_log: Path | None = None  # every event appended as a JSON line (readable from the host
    # even when the agent runs inside a VM, whose Unix socket the host cannot reach)
    on_link_up: Sequence[str] | None = None  # argv template, "{ifname}" replaced; killed on down
    hook_log_dir: Path | None = None
    source_routing: bool = False  # a policy-routing rule per configured address (mobility.routing)


class _Subscriber:
    def __init__(self, writer: asyncio.StreamWriter, size: int) -> None:
        self.writer = writer
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)
        self.dropped = 0  # not yet reported to the client
        self.dropped_total = 0

    def offer(self, e: Event) -> None:
        """Enqueue; when full, drop the oldest queued event (the newest matters most)."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            self.dropped_total += 1
        self.queue.put_nowait(e)

    async def pump(self) -> None:
        while True:
            e = await self.queue.get()
            if self.dropped:
                n, self.dropped = self.dropped, 0
                self.writer.write(json.dumps({"dropped": n}).encode() + b"\n")
            self.writer.write(e.to_json().encode() + b"\n")
            await self.writer.drain()


class Agent:
    """Runs one ``MovementDetector`` and serves its events (see module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        hooks: LocationHooks | None = None,
        detector_factory: Callable[[EventSink, DetectorOptions], MovementDetector] = (MovementDetector),
    ) -> None:
        self.cfg = config
        self.hooks = hooks  # wiring point for testbed.mobility.location
        # the factory lets unit tests run the agent on a detector fed by hand (no root needed)
        self.detector = detector_factory(self.publish, config.detector)
        self.detector.on_quiet_update = self._write_state  # RTT probes refresh the state file
        self.history: deque[Event] = deque(maxlen=config.history)
        self.subscribers: set[_Subscriber] = set()
        self.dropped_total = 0
        self._hook_q: asyncio.Queue[Callable[[], Awaitable[None] | None]] = asyncio.Queue()
        self._published_addrs: list[str] | None = None
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._bg: set[asyncio.Task[Any]] = set()
        self._changed: asyncio.Event | None = None  # set on every publish, for wait-configured
        self.routes = SourceRoutes() if config.source_routing else None

    # -- event fan-out (the detector's sink; synchronous, never blocks)
    def publish(self, events: list[Event]) -> None:
        if self.routes is not None:  # before any subscriber acts on a configured address
            self._route(events)
        if self.cfg.events_log and events:
            with open(self.cfg.events_log, "a") as f:
                f.write("".join(e.to_json() + "\n" for e in events))
        for e in events:
            self.history.append(e)
            for sub in self.subscribers:
                before = sub.dropped_total
                sub.offer(e)
                self.dropped_total += sub.dropped_total - before
            if self.cfg.on_link_up and e.kind in ("link_up", "link_down"):
                self._bg_task(self._link_hook(e))
        self._write_state()
        if self._changed is not None and events:
            self._changed.set()
        if self.hooks and any(e.kind in ("configured", "lost", "link_down") for e in events):
            addrs = self.detector.core.usable_addresses()
            if addrs != self._published_addrs:
                self._published_addrs = addrs
                hooks = self.hooks
                self._hook_q.put_nowait(lambda: hooks.on_configured(list(addrs)))

    def _route(self, events: list[Event]) -> None:
        assert self.routes is not None
        for e in events:
            try:
                for change in self.routes.apply(e):
                    log.info("source routing: %s", change)
            except Exception:  # a routing failure must not stop the events: the log says which
                log.exception("source routing failed on %s %s", e.kind, e.ifname)

    def state(self) -> dict[str, Any]:
        snap = self.detector.snapshot()
        snap.update(
            pid=os.getpid(),
            updated_wall=time.time(),
            updated_mono=time.monotonic(),
            subscribers=len(self.subscribers),
            dropped_total=self.dropped_total,
        )
        return snap

    def _write_state(self) -> None:
        """Atomic replace, so a poller never reads half a file."""
        path = self.cfg.state_path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    # -- run
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then emit ``shutdown``, call on_depart and exit."""
        path = self.cfg.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.cfg.state_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket from a killed agent
        det = asyncio.create_task(self.detector.run(), name="detector")
        hooks = asyncio.create_task(self._run_hooks(), name="hooks")
        ready = asyncio.create_task(self.detector.ready.wait())
        await asyncio.wait({det, ready}, return_when=asyncio.FIRST_COMPLETED)
        if det.done():
            ready.cancel()
            det.result()  # raises the detector's start-up error
        server = await asyncio.start_unix_server(self._serve, path=str(path), limit=LINE_LIMIT)
        self._write_state()
        log.info("agent serving on %s", path)
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({det, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if det.done():
                det.result()
        finally:
            stopper.cancel()
            self.detector.shutdown("stop")
            if self.hooks:
                h = self.hooks
                self._hook_q.put_nowait(h.on_depart)
            await self._drain(hooks, timeout=5.0)
            det.cancel()
            try:
                await det
            except asyncio.CancelledError:
                pass
            except Exception:  # the detector failed while stopping: say so, keep shutting down
                log.exception("detector failed during shutdown")
            await self._stop_children()
            if self.routes is not None:
                self.routes.clear()
            await self._flush_subscribers(timeout=1.0)
            server.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _drain(self, hooks: asyncio.Task[None], timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hook_q.join(), timeout)
        hooks.cancel()

    async def _run_hooks(self) -> None:
        while True:
            call = await self._hook_q.get()
            try:
                r = call()
                if inspect.isawaitable(r):
                    await r
            except Exception:
                log.exception("location hook failed")
            finally:
                self._hook_q.task_done()

    async def _flush_subscribers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for sub in list(self.subscribers):
            while not sub.queue.empty() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the subscriber's pump drains its queue
            with contextlib.suppress(ConnectionError, RuntimeError):
                sub.writer.close()

    # -- one client connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sub: _Subscriber | None = None
        pump: asyncio.Task[None] | None = None
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    cmd = req.get("cmd") if isinstance(req, dict) else None
                except ValueError:
                    req, cmd = {}, None
                if cmd == "subscribe" and sub is None:
                    sub = _Subscriber(writer, self.cfg.queue_size)
                    since = req.get("since")
                    writer.write(_line({"ok": True, "seq": self.detector.core.seq}))
                    if isinstance(since, int):  # replay and go live with no gap: one loop turn
                        for e in self.history:
                            if e.seq > since:
                                writer.write(e.to_json().encode() + b"\n")
                    self.subscribers.add(sub)
                    pump = asyncio.create_task(sub.pump())
                elif cmd == "wait-configured":
                    writer.write(_line(await self._wait_configured(req)))
                else:
                    writer.write(_line(self._command(cmd, req)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if sub:
                self.subscribers.discard(sub)
            if pump:
                pump.cancel()
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()

    def _configured_on(self, ifname: str, families: set[int]) -> list[str] | None:
        st = self.detector.snapshot()["interfaces"].get(ifname)
        if not st or st["link"] != "up":
            return None
        nets = [n for n in st["networks"] if n["configured"]]
        if not families <= {n["family"] for n in nets}:
            return None
        return [a for n in nets for a in n["addresses"]]

    async def _wait_configured(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer once ``ifname`` is configured for every family asked, re-checked on each event."""
        try:
            ifname = str(req["ifname"])
            families = {int(f) for f in req.get("families", (4, 6))}
            timeout = float(req.get("timeout", 20.0))
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "error": f"wait-configured needs ifname, families, timeout: {e}"}
        if self._changed is None:
            self._changed = asyncio.Event()
        deadline = time.monotonic() + timeout
        while (addrs := self._configured_on(ifname, families)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"ok": False, "error": f"{ifname} not configured for IPv"
                        f"{'+IPv'.join(str(f) for f in sorted(families))} within {timeout:g} s",
                        "state": self.detector.snapshot()["interfaces"].get(ifname)}
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return {"ok": True, "addresses": addrs}

    def _command(self, cmd: Any, req: dict[str, Any]) -> dict[str, Any]:
        if cmd == "state":
            return {"ok": True, "state": self.state()}
        if cmd == "set-metric":
            try:
                self.detector.set_metric(str(req["ifname"]), str(req["name"]), float(req["value"]))
            except (KeyError, TypeError, ValueError) as e:
                return {"ok": False, "error": f"set-metric needs ifname, name, value: {e}"}
            return {"ok": True}
        if cmd == "set-metrics":
            try:
                values = {str(k): float(v) for k, v in dict(req["values"]).items()}
                self.detector.set_metrics(str(req["ifname"]), values)
            except (KeyError, TypeError, ValueError) as e:
                return {"ok": False, "error": f"set-metrics needs ifname and values {{name: number}}: {e}"}
            return {"ok": True}
        if cmd == "ping":
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r} "
                "(state, subscribe, set-metric, set-metrics, wait-configured, ping)"}

    # -- per-link command (e.g. a DHCP client) started at link-up, stopped at link-down
    def _bg_task(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def _link_hook(self, e: Event) -> None:
        await self._stop_child(e.ifname)
        if e.kind != "link_up" or not self.cfg.on_link_up:
            return
        argv = [a.replace("{ifname}", e.ifname) for a in self.cfg.on_link_up]
        logdir = self.cfg.hook_log_dir or self.cfg.state_path.parent
        with open(logdir / f"link-hook-{e.ifname}.log", "ab") as out:
            self._children[e.ifname] = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
            )

    async def _stop_child(self, ifname: str, grace: float = 2.0) -> None:
        p = self._children.pop(ifname, None)
        if p is None or p.returncode is not None:
            return
        p.terminate()
        try:
            await asyncio.wait_for(p.wait(), grace)
        except TimeoutError:
            p.kill()
            await p.wait()

    async def _stop_children(self) -> None:
        for t in list(self._bg):
            try:
                await t
            except Exception:  # a link hook failed: the log says which, shutdown goes on
                log.exception("link hook failed")
        await asyncio.gather(*(self._stop_child(n) for n in list(self._children)))


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


# --- client ---------------------------------------------------------------------------------


class AgentClient:
    """Talks to an agent's Unix socket: ``state()``, ``set_metric()``, ``events()``."""

    def __init__(self, socket_path: str | Path) -> None:
        self.path = str(socket_path)
        self.dropped = 0  # events the agent dropped for our subscriptions

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll until the agent answers (it binds the socket only after its first dump)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.command({"cmd": "ping"})
                return
            except (OSError, TestbedError):
                if time.monotonic() > deadline:
                    raise TestbedError(
                        f"mobility agent at {self.path} did not answer within {timeout:g} s (see its log)"
                    ) from None
                await asyncio.sleep(0.02)

    async def command(self, req: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(self.path, limit=LINE_LIMIT)
        try:
            writer.write(_line(req))
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise TestbedError(f"mobility agent at {self.path} closed the connection")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise TestbedError(f"mobility agent refused {req.get('cmd')}: {reply.get('error')}")
        return reply

    async def state(self) -> dict[str, Any]:
        return (await self.command({"cmd": "state"}))["state"]

    async def set_metric(self, ifname: str, name: str, value: float) -> None:
        await self.command({"cmd": "set-metric", "ifname": ifname, "name": name, "value": value})

    def subscribe(self, since: int | None = None) -> Subscription:
        """``async with client.subscribe(since=0) as sub:`` — replay after ``since`` + live."""
        return Subscription(self, since)

    async def events(self, since: int | None = None) -> AsyncIterator[Event]:
        """Async iterator of events until the agent closes the stream."""
        async with self.subscribe(since) as sub:
            async for e in sub:
                yield e


class Subscription:
    """One subscribed connection; iterate it or ``await sub.wait_for(pred, timeout)``."""

    def __init__(self, client: AgentClient, since: int | None) -> None:
        self.client, self.since = client, since
        self.seen: list[Event] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Subscription:
        self._reader, self._writer = await asyncio.open_unix_connection(self.client.path, limit=LINE_LIMIT)
        req: dict[str, Any] = {"cmd": "subscribe"}
        if self.since is not None:
            req["since"] = self.since
        self._writer.write(_line(req))
        await self._writer.drain()
        ack = json.loads(await self._reader.readline() or b"{}")
        if not ack.get("ok"):
            raise TestbedError(f"mobility agent at {self.client.path} refused subscribe: {ack}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer:
            self._writer.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        e = await self.next()
        if e is None:
            raise StopAsyncIteration
        return e

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event; None when the agent closed the stream."""
        assert self._reader is not None, "use `async with client.subscribe()`"
        while True:
            line = await asyncio.wait_for(self._reader.readline(), timeout)
            if not line:
                return None
            obj = json.loads(line)
            if "dropped" in obj and "kind" not in obj:
                self.client.dropped += int(obj["dropped"])
                continue
            e = Event.from_dict(obj)
            self.seen.append(e)
            return e

    async def wait_for(
        self, pred: Callable[[Event], bool], timeout: float, *, include_seen: bool = False
    ) -> Event:
        """First event matching ``pred`` (from now, or also among those already read);
        TestbedError after ``timeout`` seconds."""
        if include_seen:
            for e in self.seen:
                if pred(e):
                    return e
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                e = await self.next(timeout=max(left, 0.0))
            except TimeoutError:
                e = None
                left = 0
            if e is not None and pred(e):
                return e
            if e is None or left <= 0:
                raise TestbedError(
                    f"no matching mobility event within {timeout:g} s; saw: "
                    + ", ".join(f"{x.kind}:{x.ifname}:{x.prefix}" for x in self.seen[-10:])
                )


# --- command line ---------------------------------------------------------------------------


def load_hooks(spec: str) -> LocationHooks:
    """``module:callable`` → the callable's result (a LocationHooks)."""
    mod, _, name = spec.partition(":")
    if not mod or not name:
        raise ConfigError("--location-hooks", spec, "expected MODULE:CALLABLE")
    try:
        factory = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError("--location-hooks", spec, f"cannot load: {e}") from e
    hooks: LocationHooks = factory()
    return hooks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed.mobility.agent", description=__doc__)
    p.add_argument("--socket", required=True, type=Path, help="Unix socket to serve")
    p.add_argument("--state", required=True, type=Path, help="state file (JSON, atomic)")
    p.add_argument("--ifaces", help="comma-separated interfaces to watch (default: all but lo)")
    p.add_argument("--no-rs", action="store_true", help="do not send an RS at link-up")
    p.add_argument("--rs-count", type=int, default=3)
    p.add_argument("--rs-interval", type=float, default=1.0)
    p.add_argument("--optimistic-dad", action="store_true", help="RFC 4429 on watched links")
    p.add_argument("--rdisc", action="store_true", help="RFC 1256: solicit IPv4 routers at link-up")
    p.add_argument("--rtt-interval", type=float, help="probe the gateway RTT every N s")
    p.add_argument("--queue-size", type=int, default=256, help="per-subscriber event queue")
    p.add_argument("--events-log", type=Path, help="append every event here as a JSON line")
    p.add_argument("--on-link-up", help="command run per link at link-up ({ifname}), stopped "
                   "at link-down; e.g. a DHCP client")  # fmt: skip
    p.add_argument("--location-hooks", help="MODULE:CALLABLE returning LocationHooks")
    p.add_argument("--trust", help="comma-separated networks the MN binds to (default: every one); "
                   "a network outside them (a rogue RA or DHCP server) is reported untrusted")
    p.add_argument("--source-routing", action="store_true", help="route by source address: a rule "
                   "and table per configured address (added on configured, removed on lost)")
    p.add_argument("--log-level", default="INFO")
    return p


async def amain(args: argparse.Namespace) -> None:
    cfg = AgentConfig(
        socket_path=args.socket.absolute(),
        state_path=args.state.absolute(),
        detector=DetectorOptions(
            ifaces=parse_ifaces(args.ifaces),
            send_rs=not args.no_rs,
            rs_count=args.rs_count,
            rs_interval=args.rs_interval,
            optimistic_dad=args.optimistic_dad,
            rdisc=args.rdisc,
            rtt_interval=args.rtt_interval,
            trusted=[x for x in args.trust.split(",") if x] if args.trust else None,
        ),
        queue_size=args.queue_size,
        events_log=args.events_log.absolute() if args.events_log else None,
        on_link_up=shlex.split(args.on_link_up) if args.on_link_up else None,
        source_routing=args.source_routing,
    )
    # Wiring point for location management (§4): the lead passes e.g.
    # --location-hooks testbed.mobility.location.agent_hooks:from_env
    hooks = load_hooks(args.location_hooks) if args.location_hooks else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Agent(cfg, hooks).run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    from testbed import warning_filters

    warning_filters.install()  # its log is quoted when it fails: no dependency's warnings in it
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its DEBUG dumps every message
    try:
        asyncio.run(amain(args))
    except TestbedError as e:
        log.error("%s", e)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
