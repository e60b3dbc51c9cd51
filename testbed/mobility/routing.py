"""Routing by source address on the mobile node, as a multihomed host does it.

Each access interface gets a routing table of its own (``TABLE_BASE`` + its index) holding the
network's on-link prefix and a default route via the router the network was detected from (the
RA's source, the DHCP router); each configured address gets a rule ``from ADDR lookup`` that
table, before the main table. A socket bound to an address then leaves by that address's
network, whichever network's default route the main table prefers: in make-before-break both
networks are up, and without the rules the first network's route (the lower metric the lab's
DHCP client gives it) would carry the new address's packets too.

A socket bound to no address takes the network configured last (of its family): one more rule,
``from all lookup`` that network's table, after the source rules and before the main table, is
moved to each newly configured network and back to the previous one when it is lost. So the
routing table hands a new socket the newest network's address, as a mobile host prefers the
network it just joined (a peer that picks its source from the routing table, like gtlsclient's
timer migration, then moves to it). A lookup that finds no route in a table (another
interface's on-link destination, a socket bound to another device) goes on to the main table.

The agent applies the rules on the events it publishes, before any subscriber sees them:
``configured`` adds them, ``lost`` removes the lost addresses' rules (and the table's routes of
that family once no configured address of it is left on the interface). They live in the MN's
network namespace, so a removed namespace takes them with it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from testbed.mobility.events import Event

log = logging.getLogger(__name__)

TABLE_BASE = 1000  # an interface's table: TABLE_BASE + its index
PRIORITY = 1000  # of every source rule: before the main table's (32766)
NEWEST_PRIORITY = 1001  # the newest network's rule, for sockets bound to no address


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


@dataclass
class SourceRoutes:
    """The rules and tables the agent made. Netlink calls go through one worker thread, which
    makes and alone uses the pyroute2 IPRoute (its synchronous API runs an event loop of its
    own, which cannot run inside the agent's); ``apply`` waits for them, so a rule exists
    before the event that called for it is published."""

    ipr_factory: Callable[[], Any] | None = None
    rules: dict[str, tuple[str, int]] = field(default_factory=dict)  # address -> (ifname, table)
    # per family, the interfaces holding a configured address, the newest last
    order: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    newest: dict[int, int] = field(default_factory=dict)  # family -> table of the newest rule
    _ipr: Any = None
    _worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "source-routes"))

    def ipr(self) -> Any:
        if self._ipr is None:
            if self.ipr_factory is None:
                from pyroute2 import IPRoute

                self.ipr_factory = IPRoute
            self._ipr = self.ipr_factory()
        return self._ipr

    def apply(self, e: Event) -> list[dict[str, Any]]:
        """The routing changes ``e`` calls for (done before this returns); each as a record."""
        if e.kind == "configured" and e.prefix:
            return self._worker.submit(self._configured, e).result()
        if e.kind == "lost":
            return self._worker.submit(self._lost, e).result()
        return []

    def _index(self, ifname: str) -> int | None:
        found = self.ipr().link_lookup(ifname=ifname)
        return found[0] if found else None

    def _configured(self, e: Event) -> list[dict[str, Any]]:
        idx = self._index(e.ifname)
        if idx is None:
            return []
        table = TABLE_BASE + idx
        net = ipaddress.ip_network(e.prefix or "", strict=False)
        fam = _family(net.version)
        ipr = self.ipr()
        out: list[dict[str, Any]] = []
        routes = [{"dst": str(net), "oif": idx}]
        if e.router and net.prefixlen < net.max_prefixlen:  # (an RFC 1256 /32 names no subnet yet)
            routes.append({"dst": "0.0.0.0/0" if net.version == 4 else "::/0", "gateway": e.router,
                           "oif": idx})
        for r in routes:
            ipr.route("replace", table=table, family=fam, **r)
        for addr in e.addresses:
            ip = ipaddress.ip_address(addr)
            if ip.version != net.version or addr in self.rules:
                continue
            ipr.rule("add", table=table, priority=PRIORITY, src=addr, src_len=ip.max_prefixlen, family=fam)
            self.rules[addr] = (e.ifname, table)
            out.append({"op": "rule_add", "address": addr, "ifname": e.ifname, "table": table,
                        "router": e.router})
        if out:
            order = self.order.setdefault(net.version, [])
            if (e.ifname, table) in order:
                order.remove((e.ifname, table))
            order.append((e.ifname, table))
            out += self._follow_newest(net.version)
        return out

    def _lost(self, e: Event) -> list[dict[str, Any]]:
        ipr = self.ipr()
        out: list[dict[str, Any]] = []
        gone = [a for a in e.addresses if a in self.rules] or \
            ([a for a, (ifn, _) in self.rules.items() if ifn == e.ifname] if not e.prefix else [])
        for addr in gone:
            ifname, table = self.rules.pop(addr)
            ip = ipaddress.ip_address(addr)
            fam = _family(ip.version)
            self._quietly(ipr.rule, "del", table=table, priority=PRIORITY, src=addr, src_len=ip.max_prefixlen,
                          family=fam)
            out.append({"op": "rule_del", "address": addr, "ifname": ifname, "table": table})
            left = [a for a, (ifn, _) in self.rules.items()
                    if ifn == ifname and ipaddress.ip_address(a).version == ip.version]
            if not left:
                self._quietly(ipr.flush_routes, table=table, family=fam)
                order = self.order.get(ip.version, [])
                if (ifname, table) in order:
                    order.remove((ifname, table))
                out += self._follow_newest(ip.version)
        return out

    def _follow_newest(self, version: int) -> list[dict[str, Any]]:
        """Point the newest-network rule of ``version`` at the newest interface's table (or
        remove it when none is left): the new rule first, so no lookup falls between."""
        order = self.order.get(version, [])
        want = order[-1][1] if order else None
        have = self.newest.get(version)
        if want == have:
            return []
        ipr, fam = self.ipr(), _family(version)
        if want is not None:
            ipr.rule("add", table=want, priority=NEWEST_PRIORITY, family=fam)
            self.newest[version] = want
        else:
            del self.newest[version]
        if have is not None:
            self._quietly(ipr.rule, "del", table=have, priority=NEWEST_PRIORITY, family=fam)
        return [{"op": "newest", "family": version, "table": want, "was": have,
                 "ifname": order[-1][0] if order else None}]

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A removal whose object is gone already (the interface went down and took its
        routes) is no failure."""
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            fn(*args, **kwargs)
        except NetlinkError as err:
            log.debug("source routing: %s %s: %s", getattr(fn, "__name__", fn), args, err)

    def clear(self) -> None:
        """Remove every rule made here (the agent's shutdown)."""

        def remove_all() -> None:
            for addr in list(self.rules):
                self._lost(Event("lost", 0, 0.0, 0.0, ifname=self.rules[addr][0], addresses=(addr,)))
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

        self._worker.submit(remove_all).result()
        self._worker.shutdown()
