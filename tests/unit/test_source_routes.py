"""The MN's routing by source address: which rules and routes each agent event makes."""

from __future__ import annotations

import socket

from testbed.mobility.events import Event
from testbed.mobility.routing import NEWEST_PRIORITY, PRIORITY, TABLE_BASE, SourceRoutes

INDEX = {"mn-ar1": 7, "mn-ar2": 9}


class FakeIpr:
    """The netlink calls, recorded; rules kept as the kernel would hold them."""

    def __init__(self) -> None:
        self.routes: list[dict] = []
        self.rules: list[dict] = []
        self.flushed: list[dict] = []
        self.closed = False

    def link_lookup(self, ifname: str) -> list[int]:
        return [INDEX[ifname]] if ifname in INDEX else []

    def route(self, cmd: str, **kw) -> None:
        assert cmd == "replace"
        self.routes.append(kw)

    def rule(self, cmd: str, **kw) -> None:
        if cmd == "add":
            self.rules.append(kw)
        else:
            self.rules.remove(kw)

    def flush_routes(self, **kw) -> None:
        self.flushed.append(kw)

    def close(self) -> None:
        self.closed = True


def ev(kind: str, ifname: str, prefix: str, *addrs: str, router: str | None = None, seq: int = 1) -> Event:
    return Event(kind, seq, 0.0, 0.0, ifname=ifname, prefix=prefix, router=router, addresses=addrs)


def test_a_configured_address_gets_a_rule_and_its_network_a_table():
    ipr = FakeIpr()
    r = SourceRoutes(ipr_factory=lambda: ipr)
    out = r.apply(ev("configured", "mn-ar1", "192.0.2.0/24", "192.0.2.100", router="192.0.2.1"))
    table = TABLE_BASE + 7
    assert {"table": table, "family": socket.AF_INET, "dst": "0.0.0.0/0", "gateway": "192.0.2.1",
            "oif": 7} in ipr.routes
    assert {"table": table, "family": socket.AF_INET, "dst": "192.0.2.0/24", "oif": 7} in ipr.routes
    assert {"table": table, "priority": PRIORITY, "src": "192.0.2.100", "src_len": 32,
            "family": socket.AF_INET} in ipr.rules
    assert {"table": table, "priority": NEWEST_PRIORITY, "family": socket.AF_INET} in ipr.rules
    assert [o["op"] for o in out] == ["rule_add", "newest"]


def test_unbound_sockets_follow_the_newest_network_and_fall_back_when_it_is_lost():
    ipr = FakeIpr()
    r = SourceRoutes(ipr_factory=lambda: ipr)
    r.apply(ev("configured", "mn-ar1", "192.0.2.0/24", "192.0.2.100", router="192.0.2.1"))
    r.apply(ev("configured", "mn-ar2", "198.51.100.0/24", "198.51.100.100", router="198.51.100.1"))
    newest = [x["table"] for x in ipr.rules if x["priority"] == NEWEST_PRIORITY]
    assert newest == [TABLE_BASE + 9]  # moved: one such rule per family, never two
    r.apply(ev("lost", "mn-ar2", "198.51.100.0/24", "198.51.100.100"))
    assert [x["table"] for x in ipr.rules if x["priority"] == NEWEST_PRIORITY] == [TABLE_BASE + 7]
    assert {"table": TABLE_BASE + 9, "family": socket.AF_INET} in ipr.flushed
    assert [x["src"] for x in ipr.rules if x["priority"] == PRIORITY] == ["192.0.2.100"]
    r.apply(ev("lost", "mn-ar1", "192.0.2.0/24", "192.0.2.100"))
    assert ipr.rules == []  # nothing left: the main table decides again


def test_families_are_kept_apart_and_a_repeated_configured_adds_nothing():
    ipr = FakeIpr()
    r = SourceRoutes(ipr_factory=lambda: ipr)
    r.apply(ev("configured", "mn-ar1", "2001:db8:a1::/64", "2001:db8:a1::5", router="fe80::1"))
    r.apply(ev("configured", "mn-ar1", "192.0.2.0/24", "192.0.2.100", router="192.0.2.1"))
    again = r.apply(ev("configured", "mn-ar1", "192.0.2.0/24", "192.0.2.100", router="192.0.2.1"))
    assert again == []
    v6 = [x for x in ipr.rules if x["family"] == socket.AF_INET6]
    assert {x.get("src") for x in v6} == {"2001:db8:a1::5", None} and all(x.get("src_len", 128) == 128
                                                                           for x in v6)
    r.apply(ev("lost", "mn-ar1", "2001:db8:a1::/64", "2001:db8:a1::5"))
    assert {x["family"] for x in ipr.rules} == {socket.AF_INET}


def test_an_rfc1256_router_network_gets_no_default_route_and_unknown_links_nothing():
    ipr = FakeIpr()
    r = SourceRoutes(ipr_factory=lambda: ipr)
    r.apply(ev("configured", "mn-ar1", "192.0.2.1/32", "192.0.2.100", router="192.0.2.1"))
    assert not [x for x in ipr.routes if x["dst"] == "0.0.0.0/0"]
    assert r.apply(ev("configured", "wlan9", "192.0.2.0/24", "192.0.2.7")) == []


def test_clear_removes_every_rule_it_made():
    ipr = FakeIpr()
    r = SourceRoutes(ipr_factory=lambda: ipr)
    r.apply(ev("configured", "mn-ar1", "192.0.2.0/24", "192.0.2.100", router="192.0.2.1"))
    r.apply(ev("configured", "mn-ar2", "198.51.100.0/24", "198.51.100.100", router="198.51.100.1"))
    r.clear()
    assert ipr.rules == [] and ipr.closed
