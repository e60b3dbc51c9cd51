"""ICMP Router Discovery (RFC 1256): Router Advertisement (type 9) and Solicitation (type 10),
decoded from the ICMP message and built, for the access router's advertiser and the mobile
node's detector (§3 of the draft: "With IPv4, ICMP router discovery messages may be used for
mobility detection").

Hand-rolled: no maintained router-discovery daemon or decoder is packaged for Debian (iputils
dropped ``rdisc``), and the format is two fixed headers. ``decode_irdp`` never raises.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from testbed.decode.nd import internet_checksum

ICMP = 1  # IP protocol number
ROUTER_ADVERT, ROUTER_SOLICIT = 9, 10
ALL_HOSTS, ALL_ROUTERS = "224.0.0.1", "224.0.0.2"


@dataclass(frozen=True, slots=True)
class IcmpRouterAdvert:
    lifetime: int  # seconds the routers may be used
    routers: tuple[tuple[str, int], ...]  # (address, preference level)
    malformed: str | None = None


@dataclass(frozen=True, slots=True)
class IcmpRouterSolicit:
    malformed: str | None = None


def decode_irdp(icmp: bytes) -> IcmpRouterAdvert | IcmpRouterSolicit | None:
    """An ICMP message as a router advertisement or solicitation; ``None`` for anything else."""
    if len(icmp) < 8 or icmp[0] not in (ROUTER_ADVERT, ROUTER_SOLICIT):
        return None
    if icmp[0] == ROUTER_SOLICIT:
        return IcmpRouterSolicit(None if icmp[1] == 0 else f"ICMP code {icmp[1]}")
    count, entry_words, lifetime = struct.unpack_from("!BBH", icmp, 4)
    routers = []
    bad = None if entry_words >= 2 else f"address entry size {entry_words}"
    for k in range(count if bad is None else 0):
        off = 8 + k * entry_words * 4
        if off + 8 > len(icmp):
            bad = f"{count} addresses announced, {k} present"
            break
        addr, pref = struct.unpack_from("!4si", icmp, off)
        routers.append((str(ipaddress.IPv4Address(addr)), pref))
    return IcmpRouterAdvert(lifetime, tuple(routers), bad)


def build_advert(routers: list[tuple[str, int]], lifetime: int) -> bytes:
    """The ICMP message (checksummed) advertising ``routers``."""
    body = struct.pack("!BBHBBH", ROUTER_ADVERT, 0, 0, len(routers), 2, lifetime)
    body += b"".join(ipaddress.IPv4Address(a).packed + struct.pack("!i", p) for a, p in routers)
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


def build_solicit_packet() -> bytes:
    """A whole IPv4 packet: a solicitation from 0.0.0.0 (RFC 1256 §5.1 allows an unaddressed
    source) to all-routers, TTL 1 — sent on a packet socket at link-up, before DHCP has given
    the interface an address."""
    icmp = struct.pack("!BBHI", ROUTER_SOLICIT, 0, 0, 0)
    icmp = icmp[:2] + struct.pack("!H", internet_checksum(icmp)) + icmp[4:]
    src, dst = bytes(4), ipaddress.IPv4Address(ALL_ROUTERS).packed
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(icmp), 0, 0x4000, 1, ICMP, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:]
    return hdr + icmp
