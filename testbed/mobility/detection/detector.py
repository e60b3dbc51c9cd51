"""``MovementDetector``: the I/O shell around ``DetectionCore`` inside the node's namespace.

Reads netlink (pyroute2 ``AsyncIPRoute``), a raw ICMPv6 socket filtered to RAs, a raw ICMP
socket for RFC 1256 router advertisements and packet sockets filtered to DHCP and DHCPv6
replies, sends a Router Solicitation at link-up (DNA, RFC 4957/6059; optionally an ICMP one),
optionally probes the gateway's RTT, and hands events to a sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from testbed.decode.dhcp6 import REPLY as DHCP6_REPLY
from testbed.decode.irdp import ROUTER_ADVERT, IcmpRouterAdvert, build_solicit_packet, decode_irdp
from testbed.decode.nd import ND_ROUTER_ADVERT, build_rs, decode_ra, internet_checksum
from testbed.errors import TestbedError
from testbed.mobility.detection.core import DetectionCore
from testbed.mobility.detection.observations import (
    DHCPACK,
    IFF_LOWER_UP,
    IFF_UP,
    AddrObs,
    Dhcp6Obs,
    DhcpObs,
    LinkObs,
    Observation,
    RAObs,
    RdiscObs,
    Stamp,
    parse_dhcp6_reply,
    parse_dhcp_reply,
)
from testbed.mobility.events import Event

log = logging.getLogger(__name__)

EventSink = Callable[[list[Event]], None]

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ICMP6_FILTER = 1
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
ALL_ROUTERS_MAC = b"\x33\x33\x00\x00\x00\x02"
ALL_ROUTERS4_MAC = b"\x01\x00\x5e\x00\x00\x02"  # 224.0.0.2
IP_PKTINFO = 8
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


# `tcpdump -dd -y RAW 'ip6 and udp dst port 546'`: DHCPv6 server messages to the client
DHCP6_REPLY_BPF: tuple[tuple[int, int, int, int], ...] = (
    (0x30, 0, 0, 0x00000000), (0x54, 0, 0, 0x000000F0), (0x15, 0, 5, 0x00000060),
    (0x30, 0, 0, 0x00000006), (0x15, 0, 3, 0x00000011), (0x28, 0, 0, 0x0000002A),
    (0x15, 0, 1, 0x00000222), (0x06, 0, 0, 0x00040000), (0x06, 0, 0, 0x00000000),
)  # fmt: skip


def _attach_bpf(sock: socket.socket, prog: Sequence[tuple[int, int, int, int]]) -> None:
    import ctypes  # only here: the one place a pointer has to be passed to the kernel

    insns = b"".join(struct.pack("HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it


def icmp6_filter_only(*types: int) -> bytes:
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
    rdisc: bool = False  # RFC 1256: solicit IPv4 routers at link-up (advertisements are always read)
    rtt_interval: float | None = None  # seconds between gateway RTT probes; None: off
    rtt_timeout: float = 1.0
    trusted: Sequence[str] | None = None  # networks the MN binds to; None: every one


class MovementDetector:
    """Watches the namespace it runs in and hands ordered events to ``sink``.

    Everything runs on one asyncio loop (pyroute2 ``AsyncIPRoute`` for netlink, loop readers
    for the raw sockets), so observations reach the core in the order they were read.
    """

    def __init__(self, sink: EventSink, options: DetectorOptions | None = None) -> None:
        self.opts = options or DetectorOptions()
        self.core = DetectionCore(self.opts.ifaces, optimistic_ok=self.opts.optimistic_dad,
                                  trusted=self.opts.trusted)
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
            self._open_dhcp6_socket(loop)
            self._open_rdisc_socket(loop)
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

    def set_metrics(self, ifname: str, values: dict[str, float]) -> None:
        self._dispatch(self.core.set_metrics(ifname, values, Stamp.now()))

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
                if self.opts.rdisc:
                    self._send_icmp_rs(e.ifname)
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
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter_only(ND_ROUTER_ADVERT))
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
            ra = decode_ra(data)
            if ra is None or ra.malformed:  # RFC 4861 §6.1.2: discarded
                log.debug("bad RA on %s: %s", name, ra.malformed if ra else "not an RA")
                continue
            w = self.wire.setdefault(name, {})
            w.setdefault("ra_first", at.mono)
            w["ra_last"] = at.mono
            self._feed(RAObs(name, router, ra.router_lifetime, ra.prefixes, ra.managed), at)

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

    # -- ICMP router discovery (RFC 1256), the IPv4 counterpart of RS/RA
    def _open_rdisc_socket(self, loop: asyncio.AbstractEventLoop) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.setblocking(False)
        self._socks.append(s)
        loop.add_reader(s.fileno(), self._read_rdisc, s)

    def _read_rdisc(self, s: socket.socket) -> None:
        while True:
            try:
                data, anc, _flags, src = s.recvmsg(65535, 256)
            except BlockingIOError:
                return
            icmp = data[(data[0] & 0x0F) * 4:]
            if not icmp or icmp[0] != ROUTER_ADVERT:
                continue
            ifindex = next((struct.unpack_from("i", v)[0] for lvl, typ, v in anc
                            if lvl == socket.IPPROTO_IP and typ == IP_PKTINFO), 0)
            name = self._names.get(ifindex)
            ra = decode_irdp(icmp)
            if not name or not isinstance(ra, IcmpRouterAdvert) or ra.malformed or not ra.routers:
                continue
            router = src[0] if any(a == src[0] for a, _ in ra.routers) else ra.routers[0][0]
            self._feed(RdiscObs(name, router, ra.lifetime, ra.routers))

    def _send_icmp_rs(self, ifname: str) -> None:
        """An ICMP router solicitation from 0.0.0.0 (the link has no IPv4 address yet)."""
        with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as s:
            try:
                s.sendto(build_solicit_packet(), (ifname, ETH_P_IP, 0, 0, ALL_ROUTERS4_MAC))
            except OSError as e:
                log.warning("ICMP router solicitation on %s failed: %s", ifname, e)

    # -- DHCPv4 and DHCPv6 replies (seen before the client acts on them)
    def _open_dhcp_socket(self, loop: asyncio.AbstractEventLoop) -> None:
        self._open_packet_socket(loop, ETH_P_IP, DHCP_REPLY_BPF, parse_dhcp_reply)

    def _open_dhcp6_socket(self, loop: asyncio.AbstractEventLoop) -> None:
        """A stateful network's address comes in a DHCPv6 REPLY."""
        self._open_packet_socket(loop, ETH_P_IPV6, DHCP6_REPLY_BPF, parse_dhcp6_reply)

    def _open_packet_socket(self, loop: asyncio.AbstractEventLoop, ethertype: int,
                            bpf: Sequence[tuple[int, int, int, int]],
                            parse: Callable[[bytes, str], Observation | None]) -> None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ethertype))
        _attach_bpf(s, bpf)
        s.setblocking(False)
        self._socks.append(s)
        loop.add_reader(s.fileno(), self._read_replies, s, parse)

    def _read_replies(self, s: socket.socket, parse: Callable[[bytes, str], Observation | None]) -> None:
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            obs = parse(data, addr[0])
            if obs is None:
                continue
            at = Stamp.now()
            w = self.wire.setdefault(obs.ifname, {})
            if isinstance(obs, DhcpObs) and obs.msg_type == DHCPACK:
                w.setdefault("dhcp_ack_first", at.mono)
            elif isinstance(obs, Dhcp6Obs) and obs.msg_type == DHCP6_REPLY and obs.addresses:
                w.setdefault("dhcp6_reply_first", at.mono)
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
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter_only(129))
        msg = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"tbmd"  # kernel fills checksum
        dest: tuple[Any, ...] = (target, 0, 0, ifindex if target.startswith("fe80:") else 0)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"tbmd"
        msg = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
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
