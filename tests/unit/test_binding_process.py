"""The binding process's I/O shell: a real agent on a hand-fed detector, the binding process
following it, and the SCTP driver (its socket API faked) linked to it in memory through the
binding-driver protocol; the process's own status socket is its readiness."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from testbed.host.poll import poll_until
from testbed.mobility.agent import Agent, AgentClient, AgentConfig
from testbed.mobility.binding import BindingEndpoint, DriverLink, TrashSequencer, serve
from testbed.mobility.detection.observations import AddrObs, LinkObs, PrefixInfo, RAObs
from testbed.mobility.driver import BindingDriver, DriverError, answer, loopback, request, unix_channel
from testbed.mobility.policy import NetworkView, Policy
from testbed.mobility.protocol import Add, Failed, State, Status
from testbed.sctp import driver as sctp
from testbed.sctp.sockapi import Status as SockStatus
from tests.support.agent import HandFedDetector, factory

OLD, NEW, CN = "2001:db8:a1::5", "2001:db8:a2::5", "2001:db8:ff:c::2"


def _attach(det: HandFedDetector, ifname: str, index: int, prefix: str, address: str) -> None:
    det.feed(LinkObs(ifname, index, True, True, f"02:00:00:00:00:0{index}"))
    det.feed(RAObs(ifname, f"fe80::{index}", 1800, (PrefixInfo(prefix, 600, 300, 1, 1),)))
    det.feed(AddrObs(ifname, address, 64))


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[Any, ...]], threading.Event]:
    """The SCTP socket API of an association from OLD to CN: calls recorded, DELETE_IP awaited."""
    calls: list[tuple[Any, ...]] = []
    deleted = threading.Event()

    def bindx(s: socket.socket, addrs: list[str], port: int, add: bool = True) -> None:
        calls.append(("bindx", tuple(addrs), add))
        if not add:
            deleted.set()

    monkeypatch.setattr(sctp.sockapi, "bindx", bindx)
    monkeypatch.setattr(sctp.sockapi, "set_peer_primary", lambda s, a, p: calls.append(("peerprim", a)))
    monkeypatch.setattr(sctp.sockapi, "status", lambda s: SockStatus("ESTABLISHED", (CN, 5001), 10, 200, 0))
    monkeypatch.setattr(sctp.sockapi, "local_addrs", lambda s: [(OLD, 4000)])
    monkeypatch.setattr(sctp.sockapi, "peer_addrs", lambda s: [(CN, 5001)])
    return calls, deleted


async def _follow(tmp: Path, link: DriverLink, moves, policy: Policy | None = None,
                  updater: Any = None) -> tuple[State, list[dict[str, Any]]]:
    """An agent attached on OLD, the binding process started on it; ``moves(det)`` once the
    binding answers its status; then the agent stops. Its first status and its log."""
    cfg = AgentConfig(tmp / "agent.sock", tmp / "state.json")
    agent = Agent(cfg, None, detector_factory=factory)
    stop = asyncio.Event()
    agent_task = asyncio.create_task(agent.run(stop))
    await AgentClient(cfg.socket_path).wait_ready(5)
    det: HandFedDetector = agent.detector  # type: ignore[assignment]
    _attach(det, "eth0", 2, "2001:db8:a1::/64", OLD)
    log, sock = tmp / "actions.jsonl", tmp / "binding.sock"
    binding = asyncio.create_task(serve(str(cfg.socket_path), None, str(log),
                                        policy or Policy(families=frozenset({6})), updater, str(sock), link))

    def ready() -> State | None:
        try:
            reply = request(unix_channel(sock, 1), Status(), "binding")
        except DriverError:
            return None
        return reply if isinstance(reply, State) else None

    first = await asyncio.to_thread(poll_until, ready, 10)
    assert first is not None, "the binding process never answered its status request"
    await moves(det)
    stop.set()
    await asyncio.wait_for(binding, 10)  # it ends with the agent's stream
    await asyncio.wait_for(agent_task, 10)
    assert not sock.exists()
    return first, [json.loads(x) for x in log.read_text().splitlines()]


def test_the_ladder_reaches_the_driver_through_the_protocol(tmp_path: Path, kernel) -> None:
    calls, deleted = kernel
    driver = sctp.SctpDriver(socket.socket(), 4000, 5001, families=(6,))

    async def moves(det: HandFedDetector) -> None:
        _attach(det, "eth1", 3, "2001:db8:a2::/64", NEW)
        det.feed(LinkObs("eth0", 2, True, False))
        assert await asyncio.to_thread(deleted.wait, 10), "no DELETE_IP"

    first, rows = asyncio.run(_follow(tmp_path, DriverLink(None, loopback(driver)), moves))
    assert first.state == "following" and first.local == (OLD,) and first.primary == OLD
    assert first.families == (6,) and first.detail["transport"] == "none"  # joined on the first event
    assert calls == [("bindx", (NEW,), True), ("peerprim", NEW), ("bindx", (OLD,), False)]
    ops = [(r["op"], r.get("address")) for r in rows]
    assert ops == [("start", None), ("location", None), ("transport", None), ("add", NEW),
                   ("primary", NEW), ("location", None), ("delete", OLD)]
    joined = rows[2]["driver"]
    assert joined["v"] == 1 and joined["state"] == "ESTABLISHED" and joined["local"] == [OLD]
    for r in rows[3:5] + rows[6:]:
        assert r["ok"] is True and r["driver"]["op"] == r["op"] and r["driver"]["address"] == r["address"]
    assert [e.op for e in driver.log] == ["add", "primary", "delete"]


def test_a_driver_of_another_version_is_said_once_and_never_driven(tmp_path: Path, kernel) -> None:
    calls, _ = kernel
    driver = sctp.SctpDriver(socket.socket(), 4000, 5001, families=(6,))

    def v2(msg: dict[str, Any]) -> dict[str, Any]:
        return {**answer(driver, msg), "v": 2}

    async def moves(det: HandFedDetector) -> None:
        async with AgentClient(tmp_path / "agent.sock").subscribe() as sub:
            _attach(det, "eth1", 3, "2001:db8:a2::/64", NEW)
            det.feed(LinkObs("eth0", 2, True, False))
            await sub.wait_for(lambda e: e.kind == "lost", 10)

    _, rows = asyncio.run(_follow(tmp_path, DriverLink(None, v2), moves))
    refused = [r for r in rows if r["op"] == "transport"]
    assert len(refused) == 1, refused  # asked on every event, said once
    assert refused[0]["error"] == ("binding driver in memory: protocol version 2 (field \"v\"), this end "
                                   "speaks 1: run the same testbed version at both ends")
    assert calls == []  # a status request only; nothing driven
    assert [r.get("transport") for r in rows if r["op"] in ("add", "primary", "delete")] == ["none"] * 3


def test_a_transport_gone_mid_request_is_an_answer_not_a_crash(tmp_path: Path) -> None:
    link = DriverLink(str(tmp_path / "gone.sock"))
    link.connected = True
    reply = asyncio.run(link.request(Add("198.51.100.100")))
    assert isinstance(reply, Failed) and reply.op == "add" and "gone.sock: no answer" in reply.error
    assert not link.connected


def test_the_status_is_the_ladders_view_and_moves_are_refused() -> None:
    seqr = TrashSequencer(Policy(switch="on-loss", families=frozenset({4})))
    seqr.start({"192.0.2.100"}, [NetworkView("mn-ar1", "192.0.2.0/24", ("192.0.2.100",), configured=True,
                                             family=4)], "192.0.2.100")
    endpoint = BindingEndpoint()
    assert isinstance(endpoint, BindingDriver)  # served by the one dispatcher
    endpoint.update(seqr, DriverLink("/run/testbed-traffic.sock"), 7)
    st = request(loopback(endpoint), Status(), "binding")
    assert st == State("following", ("192.0.2.100",), primary="192.0.2.100", families=(4,), mode="on-loss",
                       detail={"transport": "none", "driver": "/run/testbed-traffic.sock",
                               "primary_network": "192.0.2.0/24", "seen": 7})
    refused = request(loopback(endpoint), Add("198.51.100.100"), "binding")
    assert isinstance(refused, Failed) and "takes its moves from the mobility agent" in refused.error


def test_the_status_says_when_every_event_so_far_is_acted_on(tmp_path: Path, kernel) -> None:
    """A run waits on this before it stops the traffic: the binding process has acted on the
    agent's latest event, so the move's binding updates were all answered."""
    _, deleted = kernel
    driver = sctp.SctpDriver(socket.socket(), 4000, 5001, families=(6,))
    caught: dict[str, Any] = {}

    async def moves(det: HandFedDetector) -> None:
        _attach(det, "eth1", 3, "2001:db8:a2::/64", NEW)
        det.feed(LinkObs("eth0", 2, True, False))
        assert await asyncio.to_thread(deleted.wait, 10), "no DELETE_IP"
        latest = int((await AgentClient(tmp_path / "agent.sock").state())["seq"])

        def caught_up() -> State | None:
            st = request(unix_channel(tmp_path / "binding.sock", 1), Status(), "binding")
            return st if isinstance(st, State) and st.detail["seen"] >= latest else None

        caught.update(latest=latest, status=await asyncio.to_thread(poll_until, caught_up, 10))

    first, _ = asyncio.run(_follow(tmp_path, DriverLink(None, loopback(driver)), moves))
    st = caught["status"]
    assert first.detail["seen"] < caught["latest"]
    assert st is not None and st.detail["seen"] == caught["latest"]
    assert st.local == (NEW,) and st.primary == NEW  # the ladder done: the old address deleted


class SlowUpdater:
    """A location updater whose answer takes a while (a DNS server across the new network)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def update(self, a: tuple[str, ...], aaaa: tuple[str, ...]) -> Any:
        await asyncio.sleep(self.seconds)

        class Answered:
            def to_dict(self) -> dict[str, Any]:
                return {"ok": True, "rcode": "NOERROR"}

        return Answered()


def test_a_dwell_runs_out_with_no_event_and_the_switchs_delete_waits_for_the_dns_answer(
        tmp_path: Path, kernel) -> None:
    calls, deleted = kernel
    driver = sctp.SctpDriver(socket.socket(), 4000, 5001, families=(6,))
    policy = Policy(switch="metric", hysteresis=5, dwell=0.3, keep_old=False, families=frozenset({6}))

    async def moves(det: HandFedDetector) -> None:
        _attach(det, "eth1", 3, "2001:db8:a2::/64", NEW)  # no reading yet: the MN stays on OLD
        agent = AgentClient(tmp_path / "agent.sock")
        await agent.command({"cmd": "set-metrics", "ifname": "eth0", "values": {"signal": -80}})
        await agent.command({"cmd": "set-metrics", "ifname": "eth1", "values": {"signal": -60}})
        assert await asyncio.to_thread(deleted.wait, 10), "no DELETE_IP: the dwell's deadline never came"

    _, rows = asyncio.run(_follow(tmp_path, DriverLink(None, loopback(driver)), moves, policy,
                                  SlowUpdater(0.2)))
    assert calls == [("bindx", (NEW,), True), ("peerprim", NEW), ("bindx", (OLD,), False)]
    (prim,) = [r for r in rows if r["op"] == "primary"]
    d = prim["decision"]
    assert d["reason"] == "metric" and d["at"] - d["since"] >= 0.3  # decided at the deadline
    assert d["metrics"] == {"eth0": {"signal": -80.0}, "eth1": {"signal": -60.0}}
    (delete,) = [r for r in rows if r["op"] == "delete"]
    (answered,) = [r for r in rows if r["op"] == "location" and NEW in r["aaaa"]]
    assert answered["rcode"] == "NOERROR" and answered["wall"] <= delete["wall"]  # DELETE after the answer
