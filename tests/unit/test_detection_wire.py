"""The hand-rolled RA/RS/DHCP codecs agree with scapy (the reference dissector)."""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)

from testbed.mobility.detection.detector import icmp6_filter_only
from testbed.mobility.detection.observations import (
    PrefixInfo,
    WireError,
    build_rs,
    parse_dhcp_reply,
    parse_ra,
)


def test_parse_ra_reads_prefixes_and_skips_other_options() -> None:
    ra = (
        ICMPv6ND_RA(routerlifetime=1800)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
        / ICMPv6NDOptMTU(mtu=1500)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:a1::", prefixlen=64, validlifetime=600,
                                preferredlifetime=300)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:ff::", prefixlen=48, L=1, A=0)
    )  # fmt: skip
    icmp = bytes(IPv6(src="fe80::1", dst="ff02::1") / ra)[40:]
    lifetime, prefixes = parse_ra(icmp)
    assert lifetime == 1800
    assert prefixes == (
        PrefixInfo("2001:db8:a1::/64", 600, 300, True, True),
        PrefixInfo("2001:db8:ff::/48", 0xFFFFFFFF, 0xFFFFFFFF, True, False),
    )


def test_parse_ra_rejects_zero_length_option_and_other_types() -> None:
    icmp = bytes(IPv6() / ICMPv6ND_RA())[40:] + b"\x03\x00" + b"\0" * 6
    try:
        parse_ra(icmp)
    except WireError:
        pass
    else:
        raise AssertionError("zero-length option accepted")
    try:
        parse_ra(bytes(IPv6() / ICMPv6ND_RS())[40:])
    except WireError:
        pass
    else:
        raise AssertionError("RS parsed as RA")


def test_build_rs_matches_scapy_checksum_and_options() -> None:
    pkt = build_rs("fe80::5", bytes.fromhex("020000000005"))
    ip6 = IPv6(pkt)
    assert (ip6.src, ip6.dst, ip6.hlim) == ("fe80::5", "ff02::2", 255)
    assert ip6[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:05"
    ours = ip6[ICMPv6ND_RS].cksum
    del ip6[ICMPv6ND_RS].cksum
    assert IPv6(bytes(ip6))[ICMPv6ND_RS].cksum == ours


def test_build_rs_from_unspecified_has_no_link_layer_option() -> None:
    ip6 = IPv6(build_rs("::", bytes.fromhex("020000000005")))
    assert ip6.src == "::" and ICMPv6NDOptSrcLLAddr not in ip6  # RFC 4861 §4.1


def test_parse_dhcp_ack() -> None:
    pkt = (
        IP(src="198.51.100.1", dst="198.51.100.10")
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, yiaddr="198.51.100.10", chaddr=b"\x02" * 6)
        / DHCP(options=[("message-type", "ack"), ("server_id", "198.51.100.1"),
                        ("subnet_mask", "255.255.255.0"), ("router", "198.51.100.1"),
                        ("lease_time", 600), "end"])
    )  # fmt: skip
    obs = parse_dhcp_reply(bytes(pkt), "eth1")
    assert obs is not None
    assert (obs.msg_type, obs.yiaddr, obs.server, obs.subnet, obs.router, obs.lease_time) == (
        5, "198.51.100.10", "198.51.100.1", "198.51.100.0/24", "198.51.100.1", 600
    )  # fmt: skip


def test_parse_dhcp_ignores_requests_and_non_dhcp() -> None:
    req = IP() / UDP(sport=68, dport=67) / BOOTP(op=1) / DHCP(options=[("message-type", 3), "end"])
    assert parse_dhcp_reply(bytes(req), "eth1") is None
    assert parse_dhcp_reply(bytes(IP() / UDP(dport=68) / (b"x" * 20)), "eth1") is None


def test_icmp6_filter_passes_only_requested_type() -> None:
    import struct

    words = struct.unpack("8I", icmp6_filter_only(134))
    blocked = {t for t in range(256) if words[t >> 5] >> (t & 31) & 1}
    assert blocked == set(range(256)) - {134}
