"""The MPTCP binding driver's commands to the path manager, per mode, on a fake manager."""

from __future__ import annotations

import threading

import pytest

from testbed.mptcp import pm
from testbed.mptcp.driver import MptcpDriver


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
    r = d.handle({"op": "add", "addr": "198.51.100.100"})
    assert r["ok"] and r["id"] == 1 and r["joined"] >= r["t"]
    assert d.handle({"op": "primary", "addr": "198.51.100.100"})["ok"]
    assert d.handle({"op": "del", "addr": "192.0.2.100"})["ok"]
    assert d.handle({"op": "status"})["local"] == ["198.51.100.100"]
    d.close()
    assert calls == [
        ("create", 7, "198.51.100.100", 1, "203.0.113.14", 5001, 42, True),
        ("announce", 7, "198.51.100.100", 1),
        ("backup", "198.51.100.100", False, 41000), ("backup", "192.0.2.100", True, 40000),
        ("remove", 7, 0), ("close",),
    ]


def test_auto_manages_endpoints_only():
    d, calls = _driver("auto")
    assert d.handle({"op": "add", "addr": "198.51.100.100"})["ok"]
    assert d.handle({"op": "primary", "addr": "198.51.100.100"})["skipped"] == "auto"
    assert d.handle({"op": "del", "addr": "192.0.2.100"})["ok"]
    d.close()  # the endpoint it added goes with it
    assert calls == [("endpoint_add", "198.51.100.100", 1, 42, pm.FLAG_SIGNAL | pm.FLAG_SUBFLOW),
                     ("endpoint_del", "192.0.2.100", 0), ("endpoint_del", "198.51.100.100", 1),
                     ("close",)]


def test_a_join_that_never_comes_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr("testbed.mptcp.driver.JOIN_TIMEOUT", 0.05)
    calls: list = []

    class Silent(FakeManager):
        def subflow_create(self, *a, **kw):
            calls.append("create")

    d = MptcpDriver(7, "192.0.2.100", "203.0.113.14", 5001, manager=lambda: Silent(calls, []),
                    ifindex=lambda a: 1)
    r = d.handle({"op": "add", "addr": "198.51.100.100"})
    assert not r["ok"] and "not established" in r["error"]
    d.close()


def test_unknown_mode_and_op():
    with pytest.raises(ValueError, match="driver mode"):
        MptcpDriver(1, "a", "b", 1, "sideways")
    d, _ = _driver("trash")
    assert d.handle({"op": "fly"}) == {"ok": False, "error": "unknown op 'fly'"}
    d.close()
