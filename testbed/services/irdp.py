"""ICMP router discovery (RFC 1256) on an access router: advertisements of its address.

Debian packages no router-discovery daemon any more (iputils dropped ``rdisc``), so the lab
advertises from its own code (``python -m testbed.services.irdp``): an ICMP Router
Advertisement to 224.0.0.1 every ``interval`` seconds (jittered to 75-100 %, RFC 1256 §4.1)
and at once in answer to a solicitation to 224.0.0.2 (RFC 1256 waits up to 2 s; like radvd's
MinDelayBetweenRAs here, a mobility lab does not). The mobile node's agent reads them as an
IPv4 detection signal (§3 of the draft).
"""

from __future__ import annotations

import argparse
import random
import select
import socket
import sys
import time
from pathlib import Path

from testbed.decode.irdp import ALL_HOSTS, ALL_ROUTERS, ROUTER_SOLICIT, build_advert
from testbed.services.base import Daemon


def irdp_argv(python: str, ifname: str, address: str, interval: float, lifetime: int) -> list[str]:
    return [python, "-m", "testbed.services.irdp", "--ifname", ifname, "--address", address,
            "--interval", f"{interval:g}", "--lifetime", str(lifetime)]


def irdp_lifetime(interval: float) -> int:
    """An advertisement's lifetime: three intervals, at least 30 s (RFC 1256 §4.1's 1800 s would
    outlive a move)."""
    return max(30, int(3 * interval))


class IrdpAdvertiser(Daemon):
    NAME = "irdp"

    def __init__(self, node, directory: Path, ifname: str, address: str, interval: float,
                 lifetime: int) -> None:
        super().__init__(node, directory)
        self.ifname, self.address, self.interval, self.lifetime = ifname, address, interval, lifetime

    def argv(self) -> list[str]:
        return irdp_argv(sys.executable, self.ifname, self.address, self.interval, self.lifetime)

    def ready(self) -> bool:
        try:
            return "advertising" in self.log.read_text()
        except OSError:
            return False


def serve(ifname: str, address: str, interval: float, lifetime: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(ALL_ROUTERS) + socket.inet_aton(address))
    advert = build_advert([(address, 0)], lifetime)
    print(f"advertising {address} on {ifname} every {interval:g} s, lifetime {lifetime} s", flush=True)
    due = time.monotonic()
    while True:
        wait = max(0.0, due - time.monotonic())
        ready, _, _ = select.select([s], [], [], wait)
        solicited = False
        if ready:
            data = s.recv(65535)
            icmp = data[(data[0] & 0x0F) * 4:]
            solicited = bool(icmp) and icmp[0] == ROUTER_SOLICIT
        if solicited or time.monotonic() >= due:
            s.sendto(advert, (ALL_HOSTS, 0))
            if not solicited:
                due = time.monotonic() + random.uniform(0.75, 1.0) * interval


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.services.irdp", description=__doc__.splitlines()[0])
    ap.add_argument("--ifname", required=True)
    ap.add_argument("--address", required=True, help="the router's IPv4 address on that interface")
    ap.add_argument("--interval", type=float, default=3.0, help="seconds between advertisements")
    ap.add_argument("--lifetime", type=int, default=30)
    args = ap.parse_args(argv)
    try:
        serve(args.ifname, args.address, args.interval, args.lifetime)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
