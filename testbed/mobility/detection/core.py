"""``DetectionCore``: movement decisions, I/O-free with time passed in (the aioquic shape).

Feed it observations, get ``Event``s out; unit-tested with synthetic observations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from testbed.decode.dhcp6 import REPLY as DHCP6_REPLY
from testbed.mobility.detection.observations import (
    DHCPACK,
    IFA_F_DADFAILED,
    IFA_F_OPTIMISTIC,
    IFA_F_TENTATIVE,
    INFINITE,
    AddrObs,
    Dhcp6Obs,
    DhcpObs,
    LinkObs,
    Observation,
    RAObs,
    RdiscObs,
    Stamp,
)
from testbed.mobility.events import Event, EventKind


@dataclass
class _Network:
    prefix: str
    family: int
    router: str | None
    source: str
    detected_mono: float
    expires: float | None  # monotonic; None = no lifetime
    addresses: set[str] = field(default_factory=set)
    trusted: bool = True  # False: outside the trust list; never configured, never published


@dataclass
class _Addr:
    prefixlen: int
    flags: int
    scope: int


@dataclass
class _Link:
    ifname: str
    ifindex: int = 0
    up: bool = False
    carrier: bool = False
    mac: str | None = None
    addrs: dict[str, _Addr] = field(default_factory=dict)
    networks: dict[str, _Network] = field(default_factory=dict)
    # on-link prefixes a managed RA (M flag) announced without SLAAC: DHCPv6 gives the
    # address, and the network it detects is the one of these holding it
    managed: dict[str, str] = field(default_factory=dict)  # prefix -> router
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.up and self.carrier


class DetectionCore:
    """Turns observations into movement events; keeps per-link state. No I/O, no clock.

    Rules (spec §3): a network is keyed by (link, prefix). It is ``detected`` the first time an
    RA prefix, a DHCPACK subnet or a usable address in an unknown subnet is seen on an active
    link; repeats only refresh its lifetime. ``configured`` follows once an address inside it
    is usable. On carrier loss every network of the link is ``lost`` and forgotten, so coming
    back (even to the same router) is detected again — a re-attachment is a movement too.

    ``trusted`` (a trust list of networks; None trusts every one): a network outside it, as a
    rogue RA or DHCP server announces, is reported ``untrusted`` instead of ``detected`` and
    the MN does not bind to it: no ``configured``, no ``lost``, none of its addresses usable.
    """

    def __init__(self, ifaces: Iterable[str] | None = None, *, optimistic_ok: bool = False,
                 trusted: Iterable[str] | None = None):
        self.ifaces = set(ifaces) if ifaces else None
        self.optimistic_ok = optimistic_ok
        self.trusted = [ipaddress.ip_network(t) for t in trusted] if trusted is not None else None
        self.links: dict[str, _Link] = {}
        self.seq = 0
        self._last_mono = 0.0

    # -- inputs
    def observe(self, obs: Observation, at: Stamp) -> list[Event]:
        if not self._wanted(obs.ifname):
            return []
        out: list[Event] = []
        if isinstance(obs, LinkObs):
            self._on_link(obs, at, out)
        elif isinstance(obs, AddrObs):
            self._on_addr(obs, at, out)
        elif isinstance(obs, RAObs):
            self._on_ra(obs, at, out)
        elif isinstance(obs, DhcpObs):
            self._on_dhcp(obs, at, out)
        elif isinstance(obs, Dhcp6Obs):
            self._on_dhcp6(obs, at, out)
        elif isinstance(obs, RdiscObs):
            self._on_rdisc(obs, at, out)
        return out

    def tick(self, at: Stamp) -> list[Event]:
        """Expire networks whose RA/DHCP lifetime ran out without a refresh."""
        out: list[Event] = []
        for link in self.links.values():
            for net in list(link.networks.values()):
                if net.expires is not None and net.expires <= at.mono:
                    self._lose(link, net, net.addresses, "expired", "lifetime", at, out)
        return out

    def next_deadline(self) -> float | None:
        times = [n.expires for lk in self.links.values() for n in lk.networks.values() if n.expires]
        return min(times, default=None)

    def set_metric(
        self, ifname: str, name: str, value: float, at: Stamp, *, quiet: bool = False
    ) -> list[Event]:
        """Record a link metric; emit ``metric`` unless unchanged or ``quiet`` (periodic
        probes update the state and ride on later events without flooding subscribers)."""
        link = self._link(ifname)
        if link.metrics.get(name) == value:
            return []
        link.metrics[name] = value
        out: list[Event] = []
        if quiet:
            return out
        self._emit(out, "metric", link, at, source="metric", reason=name)
        return out

    def set_metrics(self, ifname: str, values: dict[str, float], at: Stamp) -> list[Event]:
        """Record several link metrics at once: one ``metric`` event when any changed (a trace
        replayer's reading of signal, loss and rate together), none when none did."""
        link = self._link(ifname)
        changed = sorted(k for k, v in values.items() if link.metrics.get(k) != v)
        if not changed:
            return []
        link.metrics.update(values)
        out: list[Event] = []
        self._emit(out, "metric", link, at, source="metric", reason=",".join(changed))
        return out

    def shutdown(self, at: Stamp, reason: str = "sigterm") -> list[Event]:
        out: list[Event] = []
        self._emit(out, "shutdown", None, at, source="agent", reason=reason)
        return out

    # -- queries
    def rs_source(self, ifname: str) -> str:
        """A usable link-local source for an RS on ``ifname``, else ``::``."""
        link = self.links.get(ifname)
        for addr, a in link.addrs.items() if link else ():
            if addr.startswith("fe80:") and self._usable(a):
                return addr
        return "::"

    def usable_addresses(self) -> list[str]:
        """Every configured address on every active link (what location management publishes)."""
        return sorted(
            a for lk in self.links.values() if lk.active for n in lk.networks.values() if n.trusted
            for a in n.addresses
        )

    def snapshot(self) -> dict[str, Any]:
        """The state file's content: per interface link, networks, addresses, metrics."""
        ifs: dict[str, Any] = {}
        for name, lk in sorted(self.links.items()):
            ifs[name] = {
                "link": "up" if lk.active else "down",
                "admin_up": lk.up,
                "carrier": lk.carrier,
                "mac": lk.mac,
                "metrics": dict(lk.metrics),
                "networks": [
                    {
                        "prefix": n.prefix,
                        "family": n.family,
                        "router": n.router,
                        "source": n.source,
                        "configured": bool(n.addresses) and n.trusted,
                        "trusted": n.trusted,
                        "addresses": sorted(n.addresses),
                        "detected_mono": n.detected_mono,
                        "expires_mono": n.expires,
                    }
                    for n in lk.networks.values()
                ],
                "addresses": {
                    f"{a}/{x.prefixlen}": {"flags": x.flags, "usable": self._usable(x)}
                    for a, x in sorted(lk.addrs.items())
                },
            }
        return {"seq": self.seq, "interfaces": ifs}

    # -- rules
    def _wanted(self, ifname: str) -> bool:
        if ifname == "lo" or not ifname:
            return False
        return self.ifaces is None or ifname in self.ifaces

    def _link(self, ifname: str) -> _Link:
        return self.links.setdefault(ifname, _Link(ifname))

    def _usable(self, a: _Addr) -> bool:
        if a.flags & IFA_F_DADFAILED:
            return False
        if a.flags & IFA_F_TENTATIVE:
            return self.optimistic_ok and bool(a.flags & IFA_F_OPTIMISTIC)
        return True

    def _on_link(self, obs: LinkObs, at: Stamp, out: list[Event]) -> None:
        link = self._link(obs.ifname)
        was = link.active
        link.ifindex, link.mac = obs.ifindex, obs.mac or link.mac
        link.up, link.carrier = obs.up and not obs.gone, obs.carrier and not obs.gone
        if link.active and not was:
            self._emit(out, "link_up", link, at, source="netlink")
        elif was and not link.active:
            reason = "gone" if obs.gone else ("admin" if not obs.up else "carrier")
            self._emit(out, "link_down", link, at, source="netlink", reason=reason)
            for net in list(link.networks.values()):
                self._lose(link, net, net.addresses, reason, "netlink", at, out)
            link.managed.clear()  # the next attachment's RA says again
        if obs.gone:
            self.links.pop(obs.ifname, None)

    def _on_addr(self, obs: AddrObs, at: Stamp, out: list[Event]) -> None:
        link = self._link(obs.ifname)
        if obs.removed:
            link.addrs.pop(obs.address, None)
            self._drop_address(link, obs.address, "removed", at, out)
            return
        a = _Addr(obs.prefixlen, obs.flags, obs.scope)
        link.addrs[obs.address] = a
        if obs.scope != 0:
            return  # link-local/host: only an RS source, never a network
        if not self._usable(a):
            self._drop_address(link, obs.address, "dad", at, out)
            return
        if not link.active:
            return  # stale or pre-configured: wait for the link and an RA/DHCP to confirm
        net = self._network_of(link, obs.address)
        if net is None:
            prefix = str(ipaddress.ip_interface(f"{obs.address}/{obs.prefixlen}").network)
            net = self._rdisc_network(link, prefix) or self._detect(link, prefix, None, "address", None,
                                                                    at, out)
        if obs.address not in net.addresses:
            net.addresses.add(obs.address)
            if net.trusted:
                self._emit(out, "configured", link, at, net=net, source="netlink")

    def _on_ra(self, obs: RAObs, at: Stamp, out: list[Event]) -> None:
        link = self._link(obs.ifname)
        if not link.active:
            return
        for p in obs.prefixes:
            if ipaddress.IPv6Network(p.prefix).is_link_local or not (p.onlink or p.autonomous):
                continue
            if obs.managed and not p.autonomous:  # stateful DHCPv6 will tell (§3)
                link.managed[p.prefix] = obs.router
                continue
            known = link.networks.get(p.prefix)
            if p.valid == 0:
                if known:
                    self._lose(link, known, known.addresses, "ra-zero", "ra", at, out)
                continue
            expires = None if p.valid == INFINITE else at.mono + p.valid
            if known:
                known.expires, known.router = expires, obs.router
                continue
            net = self._detect(link, p.prefix, obs.router, "ra", expires, at, out)
            self._adopt_existing(link, net, at, out)

    def _on_dhcp(self, obs: DhcpObs, at: Stamp, out: list[Event]) -> None:
        link = self._link(obs.ifname)
        if obs.msg_type != DHCPACK or not obs.subnet or not link.active:
            return
        expires = at.mono + obs.lease_time if obs.lease_time not in (None, INFINITE) else None
        known = link.networks.get(obs.subnet)
        if known:
            known.expires = expires
            return
        seen = self._rdisc_network(link, obs.subnet)  # detected by router discovery already
        if seen:
            seen.expires = expires
            self._adopt_existing(link, seen, at, out)
            return
        net = self._detect(link, obs.subnet, obs.router or obs.server, "dhcp", expires, at, out)
        self._adopt_existing(link, net, at, out)

    def _on_rdisc(self, obs: RdiscObs, at: Stamp, out: list[Event]) -> None:
        """ICMP router discovery (RFC 1256) detects an IPv4 network before DHCP configures it.
        It names a router, not a prefix: the network is the router's address (/32) until the
        DHCP lease or the address says which subnet holds it (``_rdisc_network``)."""
        link = self._link(obs.ifname)
        if not link.active or obs.lifetime == 0:
            return
        ip = ipaddress.IPv4Address(obs.router)
        expires = at.mono + obs.lifetime
        for net in link.networks.values():
            if net.family == 4 and ip in ipaddress.ip_network(net.prefix):
                net.expires = max(net.expires or expires, expires)
                return  # known already (by its lease or an earlier advertisement)
        self._detect(link, f"{obs.router}/32", obs.router, "rdisc", expires, at, out)

    def _rdisc_network(self, link: _Link, subnet: str) -> _Network | None:
        """The network a router advertisement detected inside ``subnet``, now keyed by it."""
        net_obj = ipaddress.ip_network(subnet, strict=False)
        for key, net in list(link.networks.items()):
            if net.source == "rdisc" and key.endswith("/32") and net_obj.version == 4 and \
                    ipaddress.ip_address(key[:-3]) in net_obj and key != str(net_obj):
                del link.networks[key]
                net.prefix = str(net_obj)
                link.networks[net.prefix] = net
                return net
        return None

    def _on_dhcp6(self, obs: Dhcp6Obs, at: Stamp, out: list[Event]) -> None:
        """A DHCPv6 REPLY giving addresses: their network is detected by it (on a managed
        network the RA only said "ask DHCPv6"). The network is the managed RA's on-link prefix
        holding the address, else the address alone (/128, as DHCPv6 assigns it)."""
        link = self._link(obs.ifname)
        if obs.msg_type != DHCP6_REPLY or not link.active:
            return
        for addr, valid in obs.addresses:
            if valid == 0:
                continue  # released or withdrawn
            ip = ipaddress.IPv6Address(addr)
            prefix = next((p for p in link.managed if ip in ipaddress.IPv6Network(p)), f"{addr}/128")
            expires = at.mono + valid if valid != INFINITE else None
            known = link.networks.get(prefix)
            if known:
                known.expires = expires
                continue
            router = link.managed.get(prefix) or obs.server
            net = self._detect(link, prefix, router, "dhcpv6", expires, at, out)
            self._adopt_existing(link, net, at, out)

    def _detect(
        self,
        link: _Link,
        prefix: str,
        router: str | None,
        source: str,
        expires: float | None,
        at: Stamp,
        out: list[Event],
    ) -> _Network:
        family = ipaddress.ip_network(prefix).version
        net = _Network(prefix, family, router, source, at.mono, expires, trusted=self._trusts(prefix))
        link.networks[prefix] = net
        self._emit(out, "detected" if net.trusted else "untrusted", link, at, net=net, source=source)
        return net

    def _trusts(self, prefix: str) -> bool:
        if self.trusted is None:
            return True
        net = ipaddress.ip_network(prefix)
        return any(net.version == t.version and net.subnet_of(t) for t in self.trusted)  # type: ignore[arg-type]

    def _adopt_existing(self, link: _Link, net: _Network, at: Stamp, out: list[Event]) -> None:
        """Addresses kept by the kernel across a carrier flap are usable again at once."""
        netobj = ipaddress.ip_network(net.prefix)
        for addr, a in link.addrs.items():
            if a.scope == 0 and self._usable(a) and ipaddress.ip_address(addr) in netobj:
                net.addresses.add(addr)
        if net.addresses and net.trusted:
            self._emit(out, "configured", link, at, net=net, source="existing")

    def _network_of(self, link: _Link, address: str) -> _Network | None:
        ip = ipaddress.ip_address(address)
        for net in link.networks.values():
            if ip in ipaddress.ip_network(net.prefix):
                return net
        return None

    def _drop_address(self, link: _Link, address: str, reason: str, at: Stamp, out: list[Event]) -> None:
        for net in list(link.networks.values()):
            if address in net.addresses:
                self._lose(link, net, {address}, reason, "netlink", at, out)

    def _lose(
        self,
        link: _Link,
        net: _Network,
        addresses: Iterable[str],
        reason: str,
        source: str,
        at: Stamp,
        out: list[Event],
    ) -> None:
        """``lost`` carries the addresses that went; the network is forgotten when it is
        empty or when the loss is of the network itself (carrier, lifetime, RA zero)."""
        gone = set(addresses)
        whole = reason not in ("removed", "dad") or not (net.addresses - gone)
        if net.trusted:  # an untrusted network was never bound to: nothing to lose
            self._emit(out, "lost", link, at, net=net, addrs=gone, source=source, reason=reason)
        net.addresses -= gone
        if whole:
            link.networks.pop(net.prefix, None)

    def _emit(
        self,
        out: list[Event],
        kind: EventKind,
        link: _Link | None,
        at: Stamp,
        *,
        net: _Network | None = None,
        addrs: Iterable[str] | None = None,
        source: str = "",
        reason: str = "",
    ) -> None:
        self.seq += 1
        shown = net.addresses if net else ()
        mono = max(at.mono, self._last_mono)  # events never go back in time
        self._last_mono = mono
        out.append(
            Event(
                kind=kind,
                seq=self.seq,
                mono=mono,
                wall=at.wall,
                ifname=link.ifname if link else "",
                prefix=net.prefix if net else None,
                router=net.router if net else None,
                addresses=tuple(sorted(addrs if addrs is not None else shown)),
                metrics=dict(link.metrics) if link else {},
                source=source,
                reason=reason,
            )
        )
