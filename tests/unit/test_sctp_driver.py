"""The SCTP binding driver's socket calls per command, driven through the binding-driver
protocol in memory (no SCTP needed: the socket API is faked)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from testbed.mobility.driver import BindingDriver, loopback, request
from testbed.mobility.protocol import Add, Command, Delete, Done, Failed, Primary, Reply, State, Status
from testbed.sctp import driver as drv
from testbed.sctp.sockapi import Status as SockStatus

ESTABLISHED = SockStatus("ESTABLISHED", ("203.0.113.10", 5001), 12, 200, 0)


def ask(d: drv.SctpDriver, cmd: Command) -> Reply:
    return request(loopback(d), cmd, "sctp")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        drv.sockapi, "bindx", lambda s, a, p, add=True: seen.append(("bindx", tuple(a), p, add))
    )
    monkeypatch.setattr(drv.sockapi, "set_peer_primary", lambda s, a, p: seen.append(("peerprim", a, p)))
    monkeypatch.setattr(drv.sockapi, "set_primary", lambda s, a, p: seen.append(("prim", a, p)))
    monkeypatch.setattr(drv.sockapi, "status", lambda s: ESTABLISHED)
    return seen


def test_trash_mode_maps_commands_to_calls(calls: list[tuple[Any, ...]]) -> None:
    d = drv.SctpDriver(socket.socket(), local_port=4000, peer_port=5001)
    assert isinstance(d, BindingDriver)
    assert isinstance(ask(d, Add("198.51.100.10", "mn-ar2")), Done)
    primary = ask(d, Primary("198.51.100.10"))
    assert isinstance(primary, Done) and primary.peer == ""  # our destination is of that family
    assert ask(d, Delete("192.0.2.10")) == d.log[-1]
    assert calls == [
        ("bindx", ("198.51.100.10",), 4000, True),
        ("peerprim", "198.51.100.10", 4000),  # SET_PEER_PRIMARY needs the LOCAL port
        ("bindx", ("192.0.2.10",), 4000, False),
    ]
    assert [(e.op, e.acked) for e in d.log] == [("add", None), ("primary", None), ("delete", None)]
    assert all(e.dt is not None and e.dt >= 0 for e in d.log)


def test_auto_asconf_mode_does_nothing(calls: list[tuple[Any, ...]]) -> None:
    d = drv.SctpDriver(socket.socket(), 4000, 5001, mode="auto_asconf")
    r = ask(d, Add("198.51.100.10"))
    assert isinstance(r, Done) and r.skipped == "auto_asconf" and r.dt is None and calls == []


def test_errors_come_back_as_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise OSError(99, "Cannot assign requested address")

    monkeypatch.setattr(drv.sockapi, "bindx", boom)
    d = drv.SctpDriver(socket.socket(), 4000, 5001)
    assert ask(d, Add("192.0.2.99")) == Failed("add", "OSError: [Errno 99] Cannot assign requested address")
    assert d.log == []  # nothing was done


def test_status_is_the_associations_addresses(calls, monkeypatch) -> None:
    monkeypatch.setattr(drv.sockapi, "local_addrs",
                        lambda s: [("::ffff:192.0.2.10", 4000), ("2001:db8:a1::5", 4000)])
    monkeypatch.setattr(drv.sockapi, "peer_addrs", lambda s: [("203.0.113.10", 5001)])
    st = ask(drv.SctpDriver(socket.socket(), 4000, 5001, families=(4, 6)), Status())
    assert st == State("ESTABLISHED", ("192.0.2.10", "2001:db8:a1::5"), ("203.0.113.10",), "203.0.113.10",
                       (4, 6), "trash", {"srtt_ms": 12})


def test_bad_mode_rejected() -> None:
    with pytest.raises(ValueError):
        drv.SctpDriver(socket.socket(), 1, 2, mode="magic")


@pytest.mark.parametrize("primary, want", [("203.0.113.14", "2001:db8:ff:c::2"),
                                           ("2001:db8:ff:c::2", None)])
def test_primary_of_the_other_family_follows_to_a_peer_address_of_the_new_one(
        calls, monkeypatch, primary, want) -> None:
    monkeypatch.setattr(drv.sockapi, "status",
                        lambda s: SockStatus("ESTABLISHED", (primary, 5001), 1, 200, 0))
    monkeypatch.setattr(drv.sockapi, "peer_addrs",
                        lambda s: [("::ffff:203.0.113.14", 5001), ("2001:db8:ff:c::2", 5001)])
    d = drv.SctpDriver(socket.socket(), local_port=4000, peer_port=5001, families=(4, 6))
    reply = ask(d, Primary("2001:db8:a2::5"))
    assert isinstance(reply, Done) and reply.peer == (want or "")
    assert calls == [("peerprim", "2001:db8:a2::5", 4000)] + ([("prim", want, 5001)] if want else [])


def test_each_call_is_answered_once_its_asconf_is_acknowledged(calls) -> None:
    class Acks:
        count = 0

        def wait_for(self, n, timeout):
            return n <= self.count

    acks = Acks()
    d = drv.SctpDriver(socket.socket(), local_port=4000, peer_port=5001, acks=acks, ack_timeout=0.01)
    acks.count = 1
    added = ask(d, Add("198.51.100.10"))
    assert isinstance(added, Done) and added.acked is True and added.ack_s is not None
    reply = ask(d, Primary("198.51.100.10"))
    assert isinstance(reply, Done) and reply.acked is False  # the peer never answered the second ASCONF
