"""The QUIC binding driver on real aioquic connections joined by an in-memory network: the
client's migration (RFC 9000 §9.2) probes the new path on an unused peer connection ID,
validates it, moves the stream onto it and retires the old connection ID."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionIdRetired, StreamDataReceived
from aioquic.quic.packet import pull_quic_header

from testbed.mobility.driver import BindingDriver, answer
from testbed.mobility.protocol import Done, Failed, State, Status, decode_reply, encode
from testbed.quic import migration
from testbed.quic.certs import self_signed
from testbed.quic.client import MessageStream
from testbed.quic.driver import QuicBindingDriver, QuicDriver
from testbed.quic.endpoint import ClientEndpoint
from testbed.quic.server import ALPN_MESSAGES

SERVER = ("203.0.113.14", 4433)
OLD, NEW = "192.0.2.100", "198.51.100.100"


class Net:
    """Datagrams between the client's sockets and one server connection, each a loop callback
    (as a real socket's would be). ``down``: local addresses whose link is gone."""

    def __init__(self, config: QuicConfiguration) -> None:
        self.config, self.server, self.endpoint = config, None, None
        self.down: set[str] = set()
        self.from_client: list[tuple[str, bytes]] = []  # (client address, datagram)
        self.retired: list[int] = []
        self.server_bytes: dict[str, int] = {}  # client address -> stream bytes the server got

    def deliver_to_server(self, data: bytes, local: str, port: int) -> None:
        if local in self.down:
            return
        self.from_client.append((local, data))
        loop = asyncio.get_running_loop()
        if self.server is None:  # a server connection starts from the client's first DCID
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            self.server = QuicConnection(configuration=self.config,
                                         original_destination_connection_id=header.destination_cid)
        self.server.receive_datagram(data, (local, port), now=loop.time())
        while (ev := self.server.next_event()) is not None:
            if isinstance(ev, ConnectionIdRetired):
                self.retired.append(ev.connection_id)
            if isinstance(ev, StreamDataReceived):
                self.server_bytes[local] = self.server_bytes.get(local, 0) + len(ev.data)
        self.flush_server()

    def flush_server(self) -> None:
        loop = asyncio.get_running_loop()
        for data, (host, _port) in self.server.datagrams_to_send(now=loop.time()):
            if host not in self.down:
                loop.call_soon(self.endpoint.datagram_received, data, SERVER, host)


class FakeSocket(asyncio.DatagramTransport):
    def __init__(self, net: Net, local: str, port: int) -> None:
        super().__init__()
        self.net, self.local, self.port = net, local, port

    def sendto(self, data, addr=None) -> None:
        asyncio.get_running_loop().call_soon(self.net.deliver_to_server, bytes(data), self.local, self.port)

    def get_extra_info(self, name, default=None):
        return (self.local, self.port) if name == "sockname" else default

    def close(self) -> None:
        pass


async def _pair(tmp_path: Path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed("cn", [SERVER[0]], cert, key)
    sconf = QuicConfiguration(is_client=False, alpn_protocols=[ALPN_MESSAGES])
    sconf.load_cert_chain(cert, key)
    net = Net(sconf)
    cconf = QuicConfiguration(is_client=True, alpn_protocols=[ALPN_MESSAGES])
    cconf.verify_mode = 0
    client = QuicConnection(configuration=cconf)
    app = MessageStream(client, 64)
    ports = iter(range(50000, 50100))

    async def opener(ep: ClientEndpoint, local: str) -> FakeSocket:
        return FakeSocket(net, local, next(ports))

    ep = ClientEndpoint(client, *SERVER, app.on_event, opener=opener)
    net.endpoint = ep
    await ep.open(OLD)
    ep.connect(OLD)
    assert await ep.wait_until(lambda: migration.handshake_confirmed(client), 5.0)
    return net, ep, app


@pytest.fixture
def run():
    def go(coro):
        return asyncio.run(asyncio.wait_for(coro, 20))
    return go


def test_a_migration_probes_with_an_unused_cid_validates_and_retires_the_old_one(tmp_path, run):
    async def scenario():
        net, ep, app = await _pair(tmp_path)
        driver = QuicDriver(ep)
        for _ in range(5):
            app.send_next()
        ep.transmit()
        old_dcid = migration.peer_cid(ep.conn)
        added = await driver.add(NEW)
        assert added.detail["port"] and net.from_client[-1][0] != NEW  # a socket, nothing sent yet
        sent_before = len(net.from_client)
        res = await driver.primary(NEW)
        assert isinstance(res, Done) and res.acked is True and res.detail["dcid_old"] == old_dcid
        assert res.detail["dcid_new"] != old_dcid  # §9.5: a connection ID never used on the old path
        first_new = next(d for a, d in net.from_client[sent_before:] if a == NEW)
        assert first_new[1:9].hex() == res.detail["dcid_new"]  # the probe already carried it
        assert ep.active.local == NEW
        for _ in range(5):
            app.send_next()
        ep.transmit()
        await ep.wait_until(lambda: net.server_bytes.get(NEW, 0) >= 5 * 64, 5.0)
        assert net.server_bytes.get(NEW, 0) >= 5 * 64  # the stream moved to the new path
        await ep.wait_until(lambda: bool(net.retired), 5.0)
        assert net.retired  # RETIRE_CONNECTION_ID for the old path's ID reached the server
        lost = await driver.delete(OLD)
        assert lost.detail["forgotten"] and not lost.detail["was_active"] and OLD not in ep.sockets
        st = await driver.status()
        assert isinstance(st, State) and st.local == (NEW,) and st.primary == NEW and st.families == (4,)
    run(scenario())


def test_break_before_make_keeps_the_connection_and_migrates_when_the_new_network_comes(tmp_path, run):
    async def scenario():
        net, ep, app = await _pair(tmp_path)
        driver = QuicDriver(ep)
        net.down.add(OLD)
        lost = await driver.delete(OLD)  # the active path's socket: nothing sent from it now
        assert lost.detail["was_active"] and not lost.detail["forgotten"]
        for _ in range(3):
            app.send_next()
        ep.transmit()
        assert ep.dropped > 0  # datagrams for the gone address: counted, not sent
        await driver.add(NEW)
        res = await driver.primary(NEW)
        assert res.acked and ep.active.local == NEW
        await ep.wait_until(lambda: net.server_bytes.get(NEW, 0) >= 3 * 64, 5.0)
        assert net.server_bytes[NEW] >= 3 * 64  # loss recovery resent them on the new path
    run(scenario())


def test_a_probe_nobody_answers_leaves_the_connection_on_its_path(tmp_path, run):
    async def scenario():
        net, ep, _app = await _pair(tmp_path)
        driver = QuicDriver(ep, validate_timeout=0.6)
        net.down.add(NEW)  # the new network carries nothing
        await driver.add(NEW)
        res = await driver.primary(NEW)
        assert res.acked is False and res.detail["probes"] >= 2  # challenged again each PTO
        assert ep.active.local == OLD
    run(scenario())


def test_the_binding_driver_interface_answers_from_the_commands_thread(tmp_path, run):
    async def scenario():
        _net, ep, _app = await _pair(tmp_path)
        facade = QuicBindingDriver(QuicDriver(ep), asyncio.get_running_loop())
        assert isinstance(facade, BindingDriver)
        loop = asyncio.get_running_loop()
        st = decode_reply(await loop.run_in_executor(None, answer, facade, encode(Status())))
        assert isinstance(st, State) and st.local == (OLD,) and st.mode == "trash"
        bad = await loop.run_in_executor(None, answer, facade, {"v": 1, "op": "fly"})
        assert bad["ok"] is False and "unknown op 'fly'" in bad["error"]
        added = decode_reply(await loop.run_in_executor(None, answer, facade,
                                                        {"v": 1, "op": "add", "address": NEW}))
        assert isinstance(added, Done) and added.op == "add"
        # a connection whose handshake is not confirmed yet cannot migrate (RFC 9000 §9)
        config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN_MESSAGES])
        fresh = QuicConnection(configuration=config)
        early = QuicBindingDriver(QuicDriver(ClientEndpoint(fresh, *SERVER, lambda *_: None,
                                                            opener=ep.opener)), loop)
        refused = decode_reply(await loop.run_in_executor(None, answer, early,
                                                          {"v": 1, "op": "primary", "address": NEW}))
        assert isinstance(refused, Failed) and "handshake is not confirmed" in refused.error
    run(scenario())
