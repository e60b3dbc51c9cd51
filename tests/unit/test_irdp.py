"""ICMP router discovery (RFC 1256): the wire format both ways, and the agent's core detecting
an IPv4 network from an advertisement before DHCP names its subnet."""

from __future__ import annotations

import struct

from testbed.decode.irdp import (
    ALL_ROUTERS,
    ROUTER_SOLICIT,
    IcmpRouterAdvert,
    IcmpRouterSolicit,
    build_advert,
    build_solicit_packet,
    decode_irdp,
)
from testbed.decode.link import ntop, parse_ip
from testbed.decode.nd import internet_checksum
from testbed.mobility.detection.core import DetectionCore
from testbed.mobility.detection.observations import AddrObs, DhcpObs, LinkObs, RdiscObs, Stamp


def test_advert_round_trip_with_a_valid_checksum():
    msg = build_advert([("198.51.100.1", 0)], 30)
    assert internet_checksum(msg) == 0
    ra = decode_irdp(msg)
    assert isinstance(ra, IcmpRouterAdvert) and ra.lifetime == 30 and ra.routers == (("198.51.100.1", 0),)
    short = decode_irdp(msg[:10])
    assert isinstance(short, IcmpRouterAdvert) and short.malformed and short.routers == ()
    assert decode_irdp(bytes([8, 0, 0, 0, 0, 0, 0, 0])) is None  # an echo request


def test_solicitation_from_the_unspecified_address_to_all_routers():
    pkt = build_solicit_packet()
    ver, proto, src, dst, l4, end, _ = parse_ip(pkt, 0)
    assert (ver, proto, ntop(src), ntop(dst)) == (4, 1, "0.0.0.0", ALL_ROUTERS) and pkt[8] == 1  # TTL 1
    assert internet_checksum(pkt[:20]) == 0 and internet_checksum(pkt[l4:end]) == 0
    assert pkt[l4] == ROUTER_SOLICIT and isinstance(decode_irdp(pkt[l4:end]), IcmpRouterSolicit)
    assert struct.unpack_from("!H", pkt, 2)[0] == len(pkt)


def _at(t: float) -> Stamp:
    return Stamp(t, 1_700_000_000.0 + t)


def test_an_advert_detects_and_the_lease_configures_without_a_second_detection():
    core = DetectionCore()
    core.observe(LinkObs("mn-ar2", 3, True, True), _at(1.0))
    out = core.observe(RdiscObs("mn-ar2", "198.51.100.1", 30, (("198.51.100.1", 0),)), _at(1.01))
    assert [(e.kind, e.prefix, e.source) for e in out] == [("detected", "198.51.100.1/32", "rdisc")]
    assert core.observe(RdiscObs("mn-ar2", "198.51.100.1", 30, (("198.51.100.1", 0),)), _at(2)) == []
    ack = DhcpObs("mn-ar2", 5, "198.51.100.100", "198.51.100.1", "198.51.100.0/24", "198.51.100.1", 600)
    assert core.observe(ack, _at(2.1)) == []  # the same network, now named by its subnet
    out = core.observe(AddrObs("mn-ar2", "198.51.100.100", 24), _at(2.2))
    assert [(e.kind, e.prefix) for e in out] == [("configured", "198.51.100.0/24")]


def test_an_address_before_the_lease_also_names_the_advertised_network():
    core = DetectionCore()
    core.observe(LinkObs("mn-ar2", 3, True, True), _at(1.0))
    core.observe(RdiscObs("mn-ar2", "198.51.100.1", 30, (("198.51.100.1", 0),)), _at(1.01))
    out = core.observe(AddrObs("mn-ar2", "198.51.100.100", 24), _at(1.2))
    assert [(e.kind, e.prefix) for e in out] == [("configured", "198.51.100.0/24")]
