"""The agent's socket, state file, fan-out and hooks, on a detector fed by hand (no root)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

from testbed.mobility.agent import Agent, AgentClient, AgentConfig
from testbed.mobility.detection.observations import (
    AddrObs,
    LinkObs,
    PrefixInfo,
    RAObs,
)
from testbed.mobility.events import Event
from tests.support.agent import HandFedDetector
from tests.support.agent import factory as _factory


class RecordingHooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def on_configured(self, addresses: list[str]) -> None:
        self.calls.append(("configured", addresses))

    def on_depart(self) -> None:
        self.calls.append(("depart", []))


async def _start(tmp: Path, **kw: Any) -> tuple[Agent, asyncio.Event, asyncio.Task[None]]:
    cfg = AgentConfig(tmp / "agent.sock", tmp / "state.json", **kw)
    agent = Agent(cfg, kw.pop("hooks", None), detector_factory=_factory)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await AgentClient(cfg.socket_path).wait_ready(5)
    return agent, stop, task


def _move(det: HandFedDetector) -> None:
    det.feed(LinkObs("eth1", 3, True, True, "02:00:00:00:00:02"))
    det.feed(RAObs("eth1", "fe80::2", 1800, (PrefixInfo("2001:db8:a2::/64", 600, 300, 1, 1),)))
    det.feed(AddrObs("eth1", "2001:db8:a2::5", 64))


def test_subscribe_state_set_metric_and_shutdown(tmp_path: Path) -> None:
    async def main() -> None:
        hooks = RecordingHooks()
        cfg = AgentConfig(tmp_path / "agent.sock", tmp_path / "state.json")
        agent = Agent(cfg, hooks, detector_factory=_factory)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        client = AgentClient(cfg.socket_path)
        await client.wait_ready(5)
        det: HandFedDetector = agent.detector  # type: ignore[assignment]
        async with client.subscribe() as sub:
            _move(det)
            kinds = [(await sub.next(timeout=5)) for _ in range(3)]
            assert [e.kind for e in kinds if e] == ["link_up", "detected", "configured"]

            await client.set_metric("eth1", "signal", -42.0)
            m = await sub.wait_for(lambda e: e.kind == "metric", timeout=5)
            assert m.metrics == {"signal": -42.0}

            state = await client.state()
            eth1 = state["interfaces"]["eth1"]
            assert eth1["link"] == "up" and eth1["metrics"] == {"signal": -42.0}
            assert eth1["networks"][0]["configured"] is True
            on_disk = json.loads(cfg.state_path.read_text())
            assert on_disk["seq"] == m.seq == state["seq"]

            stop.set()
            last = await sub.wait_for(lambda e: e.kind == "shutdown", timeout=5)
            assert last.seq == m.seq + 1
            assert await sub.next(timeout=5) is None  # stream closed after the final event
        await asyncio.wait_for(task, 10)
        assert hooks.calls == [("configured", ["2001:db8:a2::5"]), ("depart", [])]
        assert not cfg.socket_path.exists()

    asyncio.run(main())


def test_subscribe_since_replays_history_without_gap(tmp_path: Path) -> None:
    async def main() -> None:
        agent, stop, task = await _start(tmp_path)
        det: HandFedDetector = agent.detector  # type: ignore[assignment]
        _move(det)  # before anyone subscribed
        client = AgentClient(agent.cfg.socket_path)
        async with client.subscribe(since=0) as sub:
            det.feed(LinkObs("eth1", 3, True, False))
            got = [await sub.next(timeout=5) for _ in range(5)]
        assert [e.kind for e in got if e] == [
            "link_up", "detected", "configured", "link_down", "lost"
        ]  # fmt: skip
        assert [e.seq for e in got if e] == [1, 2, 3, 4, 5]
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_slow_subscriber_drops_but_never_blocks_others(tmp_path: Path) -> None:
    async def main() -> None:
        agent, stop, task = await _start(tmp_path, queue_size=16)
        client = AgentClient(agent.cfg.socket_path)
        # the slow subscriber is a plain socket nobody reads (an asyncio reader would buffer)
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(str(agent.cfg.socket_path))
        slow.sendall(b'{"cmd":"subscribe"}\n')
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        pad = {f"m{i}": float(i) for i in range(250)}  # ~4 kB per event: fills buffers
        n = 500
        async with client.subscribe() as fast:
            while agent.history or len(agent.subscribers) < 2:
                await asyncio.sleep(0.01)  # both subscriptions registered
            for i in range(1, n + 1):
                agent.publish([Event("metric", seq=i, mono=i, wall=i, ifname="x", metrics=pad)])
                e = await fast.next(timeout=5)  # lock-step: the fast reader keeps up
                assert e is not None and e.seq == i
        assert agent.dropped_total > 0  # all from the slow one
        buf, seqs, dropped = b"", [], 0
        async with asyncio.timeout(10):
            while n not in seqs:
                buf += await loop.sock_recv(slow, 65536)
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    obj = json.loads(line)
                    dropped += obj.get("dropped", 0)
                    if "seq" in obj and "kind" in obj:
                        seqs.append(obj["seq"])
        slow.close()
        assert seqs == sorted(seqs) and seqs[-1] == n  # the newest survives, in order
        assert dropped > 0 and len(seqs) + dropped == n
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_bad_commands_get_an_error_line(tmp_path: Path) -> None:
    async def main() -> None:
        agent, stop, task = await _start(tmp_path)
        reader, writer = await asyncio.open_unix_connection(str(agent.cfg.socket_path))
        for req in (b'{"cmd":"nope"}\n', b"not json\n", b'{"cmd":"set-metric"}\n'):
            writer.write(req)
            reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
            assert reply["ok"] is False and reply["error"]
        writer.close()
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
