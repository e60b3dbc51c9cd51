"""Movement detection on a mobile node (spec §3): netlink + Router Advertisements → events.

Three layers, I/O only in the last:

- observations (``LinkObs``, ``AddrObs``, ``RAObs``, ``DhcpObs``) and the wire codecs that make
  them from bytes (RA, RS, DHCPv4 reply). Hand-rolled rather than scapy: the formats are small
  and fixed (RFC 4861 §4.1/4.2/4.6.2, RFC 2131 §2), and the agent should not pay scapy's import
  time; tests check them against scapy.
- ``DetectionCore``: the decisions, I/O-free with time passed in (the aioquic shape): feed it
  observations, get ``Event``s out. Unit-tested with synthetic observations.
- ``MovementDetector``: runs inside the node's namespace, reads netlink (pyroute2
  ``AsyncIPRoute``), a raw ICMPv6 socket filtered to RAs and a packet socket filtered to
  DHCP replies, sends a Router Solicitation at link-up (DNA, RFC 4957/6059), optionally probes
  the gateway's RTT, and hands events to a sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.errors import TestbedError
from testbed.mobility.events import Event, EventKind

log = logging.getLogger(__name__)

# --- observations ---------------------------------------------------------------------------

IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
INFINITE = 0xFFFFFFFF


@dataclass(frozen=True)
class Stamp:
    """When an observation was made: monotonic for ordering/latency, wall for reports."""

    mono: float
    wall: float

    @classmethod
    def now(cls) -> Stamp:
        return cls(time.monotonic(), time.time())


@dataclass(frozen=True)
class LinkObs:
    """RTM_NEWLINK/RTM_DELLINK: admin state and carrier of one interface."""

    ifname: str
    ifindex: int
    up: bool
    carrier: bool
    mac: str | None = None
    gone: bool = False


@dataclass(frozen=True)
class AddrObs:
    """RTM_NEWADDR/RTM_DELADDR for one address."""

    ifname: str
    address: str
    prefixlen: int
    flags: int = 0
    scope: int = 0  # 0 universe, 253 link, 254 host
    removed: bool = False

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


@dataclass(frozen=True)
class PrefixInfo:
    prefix: str  # "2001:db8:a1::/64"
    valid: int
    preferred: int
    onlink: bool
    autonomous: bool


@dataclass(frozen=True)
class RAObs:
    """A Router Advertisement received on ``ifname`` from ``router`` (link-local)."""

    ifname: str
    router: str
    router_lifetime: int
    prefixes: tuple[PrefixInfo, ...]


@dataclass(frozen=True)
class DhcpObs:
    """A DHCPv4 reply seen on the wire (before the client acts on it)."""

    ifname: str
    msg_type: int  # 2 OFFER, 5 ACK, 6 NAK
    yiaddr: str
    server: str | None
    subnet: str | None  # "192.0.2.0/24" from yiaddr + option 1
    router: str | None
    lease_time: int | None


Observation = LinkObs | AddrObs | RAObs | DhcpObs

DHCPACK = 5


# --- wire codecs ----------------------------------------------------------------------------


class WireError(ValueError):
    """A packet too short or malformed to use; the caller drops it."""


def parse_ra(icmp: bytes) -> tuple[int, tuple[PrefixInfo, ...]]:
    """ICMPv6 RA message (from the type byte on) → (router lifetime, prefix options)."""
    if len(icmp) < 16 or icmp[0] != 134 or icmp[1] != 0:
        raise WireError("not a router advertisement")
    router_lifetime = struct.unpack_from("!H", icmp, 6)[0]
    prefixes: list[PrefixInfo] = []
    off = 16
    while off + 2 <= len(icmp):
        otype, olen = icmp[off], icmp[off + 1] * 8
        if olen == 0 or off + olen > len(icmp):
            raise WireError("bad option length")  # RFC 4861 §4.6: length 0 → discard packet
        if otype == 3 and olen == 32:  # Prefix Information
            plen, flags = icmp[off + 2], icmp[off + 3]
            valid, preferred = struct.unpack_from("!II", icmp, off + 4)
            raw = icmp[off + 16 : off + 32]
            net = ipaddress.IPv6Network((raw, plen), strict=False)
            prefixes.append(PrefixInfo(str(net), valid, preferred, bool(flags & 0x80), bool(flags & 0x40)))
        off += olen
    return router_lifetime, tuple(prefixes)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_rs(src: str, mac: bytes | None) -> bytes:
    """IPv6 packet (header + ICMPv6 RS) to ff02::2, hop limit 255.

    Built whole because it goes out on a packet socket: at link-up the link-local address is
    often still tentative and the kernel refuses it as a source on a raw ICMPv6 socket, while
    RFC 4861 §6.3.7 allows an RS from ``::`` (then without a source link-layer option).
    """
    dst = ipaddress.IPv6Address("ff02::2").packed
    s = ipaddress.IPv6Address(src).packed
    body = b"\x85\x00\x00\x00" + b"\0" * 4
    if mac and src != "::":
        body += b"\x01\x01" + mac  # Source Link-Layer Address option, 8 bytes
    pseudo = s + dst + struct.pack("!I3xB", len(body), 58)
    csum = _checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    hdr = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + s + dst
    return hdr + body


def parse_dhcp_reply(ip_packet: bytes, ifname: str) -> DhcpObs | None:
    """IPv4 packet carrying a BOOTREPLY → DhcpObs; None for anything else."""
    if len(ip_packet) < 20 or ip_packet[0] >> 4 != 4 or ip_packet[9] != 17:
        return None
    ihl = (ip_packet[0] & 0x0F) * 4
    udp = ip_packet[ihl:]
    if len(udp) < 8 or struct.unpack_from("!H", udp, 2)[0] != 68:
        return None
    b = udp[8:]
    if len(b) < 240 or b[0] != 2 or b[236:240] != b"\x63\x82\x53\x63":
        return None
    yiaddr = socket.inet_ntoa(b[16:20])
    opts: dict[int, bytes] = {}
    off = 240
    while off < len(b):
        code = b[off]
        if code == 255:
            break
        if code == 0:
            off += 1
            continue
        if off + 2 > len(b):
            break
        ln = b[off + 1]
        opts.setdefault(code, b[off + 2 : off + 2 + ln])
        off += 2 + ln
    if 53 not in opts or len(opts[53]) != 1:
        return None
    mask = opts.get(1)
    subnet = None
    if mask and len(mask) == 4 and yiaddr != "0.0.0.0":
        subnet = str(ipaddress.IPv4Interface(f"{yiaddr}/{socket.inet_ntoa(mask)}").network)
    router = socket.inet_ntoa(opts[3][:4]) if len(opts.get(3, b"")) >= 4 else None
    server = socket.inet_ntoa(opts[54][:4]) if len(opts.get(54, b"")) == 4 else None
    lease = struct.unpack("!I", opts[51])[0] if len(opts.get(51, b"")) == 4 else None
    return DhcpObs(ifname, opts[53][0], yiaddr, server, subnet, router, lease)


# --- the I/O-free core ----------------------------------------------------------------------


@dataclass
class _Network:
    prefix: str
    family: int
    router: str | None
    source: str
    detected_mono: float
    expires: float | None  # monotonic; None = no lifetime
    addresses: set[str] = field(default_factory=set)


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
    """

    def __init__(self, ifaces: Iterable[str] | None = None, *, optimistic_ok: bool = False):
        self.ifaces = set(ifaces) if ifaces else None
        self.optimistic_ok = optimistic_ok
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
            a for lk in self.links.values() if lk.active for n in lk.networks.values() for a in n.addresses
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
                        "configured": bool(n.addresses),
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
            net = self._detect(link, prefix, None, "address", None, at, out)
        if obs.address not in net.addresses:
            net.addresses.add(obs.address)
            self._emit(out, "configured", link, at, net=net, source="netlink")

    def _on_ra(self, obs: RAObs, at: Stamp, out: list[Event]) -> None:
        link = self._link(obs.ifname)
        if not link.active:
            return
        for p in obs.prefixes:
            if ipaddress.IPv6Network(p.prefix).is_link_local or not (p.onlink or p.autonomous):
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
        net = self._detect(link, obs.subnet, obs.router or obs.server, "dhcp", expires, at, out)
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
        net = _Network(prefix, family, router, source, at.mono, expires)
        link.networks[prefix] = net
        self._emit(out, "detected", link, at, net=net, source=source)
        return net

    def _adopt_existing(self, link: _Link, net: _Network, at: Stamp, out: list[Event]) -> None:
        """Addresses kept by the kernel across a carrier flap are usable again at once."""
        netobj = ipaddress.ip_network(net.prefix)
        for addr, a in link.addrs.items():
            if a.scope == 0 and self._usable(a) and ipaddress.ip_address(addr) in netobj:
                net.addresses.add(addr)
        if net.addresses:
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


# --- I/O: the detector inside the node's namespace ------------------------------------------

EventSink = Callable[[list[Event]], None]

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ICMP6_FILTER = 1
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
ALL_ROUTERS_MAC = b"\x33\x33\x00\x00\x00\x02"
# `tcpdump -dd -y RAW 'udp dst port 68'`: the packet socket wakes us for DHCP replies only.
DHCP_REPLY_BPF: tuple[tuple[int, int, int, int], ...] = (
    (0x30, 0, 0, 0x00000000), (0x54, 0, 0, 0x000000F0), (0x15, 0, 4, 0x00000060),
    (0x30, 0, 0, 0x00000006), (0x15, 0, 13, 0x00000011), (0x28, 0, 0, 0x0000002A),
    (0x15, 10, 11, 0x00000044), (0x30, 0, 0, 0x00000000), (0x54, 0, 0, 0x000000F0),
    (0x15, 0, 8, 0x00000040), (0x30, 0, 0, 0x00000009), (0x15, 0, 6, 0x00000011),
    (0x28, 0, 0, 0x00000006), (0x45, 4, 0, 0x00001FFF), (0xB1, 0, 0, 0x00000000),
    (0x48, 0, 0, 0x00000002), (0x15, 0, 1, 0x00000044), (0x06, 0, 0, 0x00040000),
    (0x06, 0, 0, 0x00000000),
)  # fmt: skip


def _attach_bpf(sock: socket.socket, prog: Sequence[tuple[int, int, int, int]]) -> None:
    import ctypes  # only here: the one place a pointer has to be passed to the kernel

    insns = b"".join(struct.pack("HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it


def _icmp6_filter_only(*types: int) -> bytes:
    """ICMP6_FILTER bitmap (bit set = block) passing only ``types``."""
    words = [0xFFFFFFFF] * 8
    for t in types:
        words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
    return struct.pack("8I", *words)


@dataclass
class DetectorOptions:
    """How the detector behaves on one node; the scenario sets these per node."""

    ifaces: Sequence[str] | None = None  # None: every interface but lo
    send_rs: bool = True  # DNA: RS from userspace at link-up instead of waiting for the kernel
    rs_count: int = 3  # RFC 4861 MAX_RTR_SOLICITATIONS
    rs_interval: float = 1.0  # shorter than RTR_SOLICITATION_INTERVAL (4 s): a lab, not a LAN
    optimistic_dad: bool = False  # RFC 4429: sets optimistic_dad/use_optimistic on the links
    rtt_interval: float | None = None  # seconds between gateway RTT probes; None: off
    rtt_timeout: float = 1.0


class MovementDetector:
    """Watches the namespace it runs in and hands ordered events to ``sink``.

    Everything runs on one asyncio loop (pyroute2 ``AsyncIPRoute`` for netlink, loop readers
    for the raw sockets), so observations reach the core in the order they were read.
    """

    def __init__(self, sink: EventSink, options: DetectorOptions | None = None) -> None:
        self.opts = options or DetectorOptions()
        self.core = DetectionCore(self.opts.ifaces, optimistic_ok=self.opts.optimistic_dad)
        self.sink = sink
        self.ready = asyncio.Event()
        # per link, since its last link-up: link_up, rs_first/rs_last/rs_count, ra_first/ra_last,
        # dhcp_ack_first (monotonic) — the raw exchange times behind the events
        self.wire: dict[str, dict[str, float]] = {}
        self._names: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._socks: list[socket.socket] = []
        self._link_up_at: dict[str, float] = {}
        self._ll_solicited: dict[str, float] = {}  # link-up time of the last link-local RS
        self._sysctl_done: set[str] = set()
        self.on_quiet_update: Callable[[], None] = lambda: None  # state changed, no event

    # -- public
    async def run(self) -> None:
        """Run until cancelled."""
        from pyroute2 import AsyncIPRoute
        from pyroute2.netlink.rtnl import (
            RTMGRP_IPV4_IFADDR,
            RTMGRP_IPV6_IFADDR,
            RTMGRP_LINK,
        )

        loop = asyncio.get_running_loop()
        mon = AsyncIPRoute()
        try:
            # subscribe before the dump so nothing falls between; the core is idempotent
            await mon.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            self._open_ra_socket(loop)
            self._open_dhcp_socket(loop)
            await self._initial_dump()
            self.ready.set()
            self._spawn(self._timer())
            if self.opts.rtt_interval:
                self._spawn(self._rtt_loop(self.opts.rtt_interval))
            while True:
                async for msg in mon.get():
                    self._on_netlink(msg)
        finally:
            for t in list(self._tasks):
                t.cancel()
            for s in self._socks:
                with contextlib.suppress(Exception):
                    loop.remove_reader(s.fileno())
                s.close()
            mon.close()

    def set_metric(self, ifname: str, name: str, value: float, *, quiet: bool = False) -> None:
        self._dispatch(self.core.set_metric(ifname, name, value, Stamp.now(), quiet=quiet))

    def shutdown(self, reason: str = "sigterm") -> None:
        self._dispatch(self.core.shutdown(Stamp.now(), reason))

    def snapshot(self) -> dict[str, Any]:
        snap = self.core.snapshot()
        for name, w in self.wire.items():
            if name in snap["interfaces"]:
                snap["interfaces"][name]["wire"] = dict(w)
        return snap

    # -- plumbing
    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception():
            log.error("detector task failed", exc_info=t.exception())

    def _feed(self, obs: Observation, at: Stamp | None = None) -> None:
        self._dispatch(self.core.observe(obs, at or Stamp.now()))

    def _dispatch(self, events: list[Event]) -> None:
        if not events:
            return
        for e in events:
            if e.kind == "link_up":
                self._link_up_at[e.ifname] = e.mono
                self.wire[e.ifname] = {"link_up": e.mono}
                if self.opts.send_rs and self.opts.rs_count > 0:
                    self._send_rs(e.ifname)  # now, before subscribers and hooks are served
                    self._spawn(self._solicit(e.ifname, e.mono))
            log.info("event %s", e.to_json())
        self._wake.set()  # lifetimes may have changed
        self.sink(events)

    async def _initial_dump(self) -> None:
        from pyroute2 import AsyncIPRoute

        async with AsyncIPRoute() as ipr:
            async for msg in await ipr.link("dump"):
                self._on_netlink(msg)
            async for msg in await ipr.addr("dump"):
                self._on_netlink(msg)

    def _on_netlink(self, msg: Any) -> None:
        at = Stamp.now()
        ev = msg.get("event")
        if ev in ("RTM_NEWLINK", "RTM_DELLINK"):
            name, idx, flags = msg.get("ifname"), msg["index"], msg["flags"]
            if not name:
                return
            self._names[idx] = name
            if self.opts.optimistic_dad and name not in self._sysctl_done and name != "lo":
                self._set_optimistic(name)
            obs: Observation = LinkObs(
                name,
                idx,
                bool(flags & IFF_UP),
                bool(flags & IFF_LOWER_UP),
                msg.get("address"),
                gone=ev == "RTM_DELLINK",
            )
            self._feed(obs, at)
        elif ev in ("RTM_NEWADDR", "RTM_DELADDR"):
            name = self._names.get(msg["index"])
            fam = msg["family"]
            addr = msg.get("local") if fam == socket.AF_INET else msg.get("address")
            if not name or not addr:
                return
            flags = msg.get_attr("IFA_FLAGS")
            flags = msg["flags"] if flags is None else flags
            self._feed(
                AddrObs(name, addr, msg["prefixlen"], flags, msg["scope"], ev == "RTM_DELADDR"),
                at,
            )
            if ev == "RTM_NEWADDR" and fam == socket.AF_INET6 and addr.startswith("fe80:"):
                self._solicit_on_link_local(name)

    def _solicit_on_link_local(self, ifname: str) -> None:
        """An RS sent at link-up can precede the kernel's IPv6 set-up on the link, and the RA
        answering it is then dropped; the link-local address appearing marks that set-up done,
        so solicit once more right then (once per link-up, and only while no RA came)."""
        up = self._link_up_at.get(ifname)
        if up is None or not self.opts.send_rs or self._ll_solicited.get(ifname) == up:
            return
        if self.wire.get(ifname, {}).get("ra_last", -1.0) >= up:
            return
        self._ll_solicited[ifname] = up
        self._send_rs(ifname)

    def _set_optimistic(self, ifname: str) -> None:
        base = f"/proc/sys/net/ipv6/conf/{ifname}"
        try:
            for knob in ("optimistic_dad", "use_optimistic"):
                with open(f"{base}/{knob}", "w") as f:
                    f.write("1")
            self._sysctl_done.add(ifname)
        except OSError as e:
            raise TestbedError(
                f"cannot enable optimistic DAD on {ifname}: {e} (run the agent as root in the "
                "node's namespace)"
            ) from e

    # -- RA in, RS out
    def _open_ra_socket(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        except PermissionError as e:
            raise TestbedError("raw ICMPv6 socket refused: run the agent as root") from e
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter_only(134))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        s.setblocking(False)
        self._socks.append(s)
        loop.add_reader(s.fileno(), self._read_ra, s)

    def _read_ra(self, s: socket.socket) -> None:
        while True:
            try:
                data, anc, _flags, src = s.recvmsg(65535, 256)
            except BlockingIOError:
                return
            at = Stamp.now()
            ifindex, hoplimit = src[3], None
            for level, typ, val in anc:
                if level == socket.IPPROTO_IPV6 and typ == socket.IPV6_PKTINFO:
                    ifindex = struct.unpack_from("I", val, 16)[0]
                elif level == socket.IPPROTO_IPV6 and typ == socket.IPV6_HOPLIMIT:
                    hoplimit = struct.unpack("i", val)[0]
            router = src[0].split("%")[0]
            name = self._names.get(ifindex)
            # RFC 4861 §6.1.2: only link-local sources and hop limit 255 are valid RAs
            if not name or hoplimit != 255 or not router.startswith("fe80:"):
                continue
            try:
                lifetime, prefixes = parse_ra(data)
            except (WireError, ValueError) as e:
                log.debug("bad RA on %s: %s", name, e)
                continue
            w = self.wire.setdefault(name, {})
            w.setdefault("ra_first", at.mono)
            w["ra_last"] = at.mono
            self._feed(RAObs(name, router, lifetime, prefixes), at)

    async def _solicit(self, ifname: str, link_up: float) -> None:
        """DNA (RFC 6059 §2.2): the first RS went at link-up; repeat until an RA arrives."""
        for _ in range(self.opts.rs_count - 1):
            await asyncio.sleep(self.opts.rs_interval)
            if self.wire.get(ifname, {}).get("ra_last", -1.0) >= link_up:
                return
            if self._link_up_at.get(ifname) != link_up:
                return  # the link flapped since: that link-up has its own solicitor
            self._send_rs(ifname)

    def _send_rs(self, ifname: str) -> None:
        link = self.core.links.get(ifname)
        mac = bytes.fromhex(link.mac.replace(":", "")) if link and link.mac else None
        src = self.core.rs_source(ifname)
        pkt = build_rs(src, mac)
        with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6)) as s:
            try:
                s.sendto(pkt, (ifname, ETH_P_IPV6, 0, 0, ALL_ROUTERS_MAC))
            except OSError as e:
                log.warning("RS on %s failed: %s", ifname, e)
                return
        w, now = self.wire.setdefault(ifname, {}), time.monotonic()
        w.setdefault("rs_first", now)
        w["rs_last"] = now
        w["rs_count"] = w.get("rs_count", 0) + 1
        log.debug("RS sent on %s from %s", ifname, src)

    # -- DHCPv4 replies (seen before the client acts on them)
    def _open_dhcp_socket(self, loop: asyncio.AbstractEventLoop) -> None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        _attach_bpf(s, DHCP_REPLY_BPF)
        s.setblocking(False)
        self._socks.append(s)
        loop.add_reader(s.fileno(), self._read_dhcp, s)

    def _read_dhcp(self, s: socket.socket) -> None:
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            obs = parse_dhcp_reply(data, addr[0])
            if obs is None:
                continue
            at = Stamp.now()
            if obs.msg_type == DHCPACK:
                self.wire.setdefault(obs.ifname, {}).setdefault("dhcp_ack_first", at.mono)
            self._feed(obs, at)

    # -- lifetimes and metrics
    async def _timer(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            self._dispatch(self.core.tick(Stamp.now()))

    async def _rtt_loop(self, interval: float) -> None:
        while True:
            for name, link in list(self.core.links.items()):
                target = next((n.router for n in reversed(link.networks.values()) if n.router), None)
                if not link.active or not target:
                    continue
                rtt = await probe_rtt(name, link.ifindex, target, self.opts.rtt_timeout)
                if rtt is not None:
                    self.set_metric(name, "rtt_ms", round(rtt * 1000, 3), quiet=True)
                    self.on_quiet_update()
            await asyncio.sleep(interval)


async def probe_rtt(ifname: str, ifindex: int, target: str, timeout: float) -> float | None:
    """One ICMP(v6) echo to ``target`` out of ``ifname``; seconds, or None on timeout.

    In-process rather than ``ping``: iputils is not in the base image and a process start
    costs more than the RTT being measured.
    """
    loop = asyncio.get_running_loop()
    v6 = ":" in target
    ident, seq = secrets.randbits(16), secrets.randbits(16)
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter_only(129))
        msg = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"tbmd"  # kernel fills checksum
        dest: tuple[Any, ...] = (target, 0, 0, ifindex if target.startswith("fe80:") else 0)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"tbmd"
        msg = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        dest = (target, 0)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.setblocking(False)
        t0 = time.monotonic()
        try:
            await loop.sock_sendto(s, msg, dest)
            async with asyncio.timeout(timeout):
                while True:
                    data = await loop.sock_recv(s, 2048)
                    icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
                    ours = len(icmp) >= 8 and struct.unpack_from("!HH", icmp, 4) == (ident, seq)
                    if ours and icmp[0] in (129, 0):
                        return time.monotonic() - t0
        except (TimeoutError, OSError):
            return None


def parse_ifaces(spec: str | None) -> list[str] | None:
    """``"a,b"`` → ["a", "b"]; empty/None → None (all interfaces)."""
    names = [x.strip() for x in (spec or "").split(",") if x.strip()]
    return names or None
