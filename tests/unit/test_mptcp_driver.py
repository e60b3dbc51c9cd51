"""The MPTCP binding driver's commands to the path manager, per mode, on a fake manager,
driven through the binding-driver protocol in memory."""

from __future__ import annotations

import socket
import threading

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from testbed.mobility.driver import BindingDriver, loopback, request
from testbed.mobility.protocol import Add, Command, Delete, Done, Failed, Primary, Reply, State, Status
from testbed.mptcp import pm
from testbed.mptcp.driver import MptcpDriver


def ask(d: MptcpDriver, cmd: Command) -> Reply:
    return request(loopback(d), cmd, "mptcp")


class FakeManager:
    def __init__(self, calls: list, driver_box: list) -> None:
        self.calls, self.box = calls, driver_box

    def subflow_create(self, token, local, local_id, remote, rport, *, ifindex=None, backup=False):
        self.calls.append(("create", token, local, local_id, remote, rport, ifindex, backup))
        # the kernel's event, from another thread, as the event reader would deliver it
        ev = pm.PmEvent("sub_established", token, local=local, remote=remote, loc_id=local_id, sport=41000)
        threading.Thread(target=self.box[0].on_event, args=(ev,)).start()

    def announce(self, token, local, local_id):
        self.calls.append(("announce", token, local, local_id))

    def set_backup(self, token, local, remote, rport, backup, lport=None):
        self.calls.append(("backup", local, backup, lport))

    def remove(self, token, local_id):
        self.calls.append(("remove", token, local_id))

    def endpoint_add(self, local, *, addr_id=None, ifindex=None, flags=0):
        self.calls.append(("endpoint_add", local, addr_id, ifindex, flags))

    def endpoint_del(self, local, addr_id=0):
        self.calls.append(("endpoint_del", local, addr_id))

    def close(self):
        self.calls.append(("close",))


def _driver(mode: str) -> tuple[MptcpDriver, list]:
    calls: list = []
    box: list = []
    d = MptcpDriver(7, "192.0.2.100", "203.0.113.14", 5001, mode, manager=lambda: FakeManager(calls, box),
                    ifindex=lambda a: 42, local_port=40000)
    box.append(d)
    return d, calls


def test_trash_joins_announces_switches_and_removes_in_order():
    d, calls = _driver("trash")
    assert isinstance(d, BindingDriver)
    r = ask(d, Add("198.51.100.100"))
    assert isinstance(r, Done) and r.detail["id"] == 1 and r.detail["joined"] >= r.t
    assert isinstance(ask(d, Primary("198.51.100.100")), Done)
    assert ask(d, Delete("192.0.2.100")) == d.log[-1]
    st = ask(d, Status())
    assert isinstance(st, State) and st.local == ("198.51.100.100",) and st.detail["token"] == 7
    d.close()
    assert calls == [
        ("create", 7, "198.51.100.100", 1, "203.0.113.14", 5001, 42, True),
        ("announce", 7, "198.51.100.100", 1),
        ("backup", "198.51.100.100", False, 41000), ("backup", "192.0.2.100", True, 40000),
        ("remove", 7, 0), ("close",),
    ]
    assert [e.op for e in d.log] == ["add", "primary", "delete"]


def test_add_binds_the_subflow_to_the_interface_named():
    d, calls = _driver("trash")
    ask(d, Add("198.51.100.100", "lo"))
    d.close()
    assert calls[0][6] == socket.if_nametoindex("lo")


def test_auto_manages_endpoints_only():
    d, calls = _driver("auto")
    assert isinstance(ask(d, Add("198.51.100.100")), Done)
    assert ask(d, Primary("198.51.100.100")).skipped == "auto"
    assert ask(d, Delete("192.0.2.100")).detail == {"id": 0}
    d.close()  # the endpoint it added goes with it
    assert calls == [("endpoint_add", "198.51.100.100", 1, 42, pm.FLAG_SIGNAL | pm.FLAG_SUBFLOW),
                     ("endpoint_del", "192.0.2.100", 0), ("endpoint_del", "198.51.100.100", 1),
                     ("close",)]


def test_an_address_twice_or_never_there_is_skipped():
    d, calls = _driver("trash")
    assert ask(d, Add("192.0.2.100")).skipped == "already in the connection"
    assert ask(d, Delete("198.51.100.100")).skipped == "not in the connection"
    d.close()
    assert calls == []


def test_the_kernels_refusal_is_a_failed_reply_with_its_errno():
    calls: list = []

    class Refusing(FakeManager):
        def remove(self, token, local_id):
            raise NetlinkError(22, "Invalid argument")

    d = MptcpDriver(7, "192.0.2.100", "203.0.113.14", 5001, manager=lambda: Refusing(calls, []),
                    ifindex=lambda a: 1)
    r = ask(d, Delete("192.0.2.100"))
    d.close()
    assert isinstance(r, Failed) and r.op == "delete" and r.error.startswith("OSError: [Errno 22] netlink")


def test_a_join_that_never_comes_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr("testbed.mptcp.driver.JOIN_TIMEOUT", 0.05)
    calls: list = []

    class Silent(FakeManager):
        def subflow_create(self, *a, **kw):
            calls.append("create")

    d = MptcpDriver(7, "192.0.2.100", "203.0.113.14", 5001, manager=lambda: Silent(calls, []),
                    ifindex=lambda a: 1)
    r = ask(d, Add("198.51.100.100"))
    assert isinstance(r, Failed)
    assert r.error.startswith("TimeoutError: subflow from 198.51.100.100 not established")
    d.close()


def test_unknown_mode():
    with pytest.raises(ValueError, match="driver mode"):
        MptcpDriver(1, "a", "b", 1, "sideways")
