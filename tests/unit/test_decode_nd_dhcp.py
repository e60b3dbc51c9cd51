"""Router Solicitation/Advertisement and DHCPv4 decoding (and the RS builder), against scapy."""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)

from testbed.decode.dhcp import decode_dhcp
from testbed.decode.nd import PrefixInfo, RouterAdvert, build_rs, decode_nd, decode_ra, decode_rs


def _icmp(pkt: object) -> bytes:
    return bytes(IPv6(src="fe80::1", dst="ff02::1") / pkt)[40:]  # type: ignore[operator]


def test_decode_ra_reads_prefixes_mtu_and_skips_other_options() -> None:
    icmp = _icmp(
        ICMPv6ND_RA(routerlifetime=1800)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
        / ICMPv6NDOptMTU(mtu=1400)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:a1::", prefixlen=64, validlifetime=600,
                                preferredlifetime=300)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:ff::1", prefixlen=48, L=1, A=0)
    )  # fmt: skip
    ra = decode_ra(icmp)
    assert ra == RouterAdvert(
        1800,
        (
            PrefixInfo("2001:db8:a1::/64", 600, 300, True, True),
            PrefixInfo("2001:db8:ff::/48", 0xFFFFFFFF, 0xFFFFFFFF, True, False),  # host bits cleared
        ),
        1400,
    )
    assert decode_nd(icmp) == ra


def test_zero_length_option_or_bad_code_makes_the_ra_malformed() -> None:
    base = _icmp(ICMPv6ND_RA(routerlifetime=600) / ICMPv6NDOptPrefixInfo(prefix="2001:db8:a2::"))
    ra = decode_ra(base + b"\x03\x00" + bytes(6))
    assert ra is not None and ra.malformed == "option 3 with length 0"
    assert [p.prefix for p in ra.prefixes] == ["2001:db8:a2::/64"]  # what came before is kept
    overrun = decode_ra(base[:16] + b"\x03\x04" + bytes(6))
    assert overrun == RouterAdvert(600, (), None, "option 3 overruns the message")
    coded = decode_ra(base[:1] + b"\x01" + base[2:])
    assert coded is not None and coded.malformed == "ICMPv6 code 1"
    assert decode_ra(base[:10]) == RouterAdvert(0, (), None, "truncated router advertisement (10 bytes)")


def test_other_icmpv6_messages_are_not_ra_or_rs() -> None:
    rs = _icmp(ICMPv6ND_RS())
    assert decode_ra(rs) is None and decode_ra(b"") is None
    assert decode_rs(_icmp(ICMPv6ND_RA())) is None
    assert decode_nd(b"\x80\x00\x00\x00") is None  # echo request


def test_decode_rs_with_and_without_source_link_layer_address() -> None:
    rs = decode_rs(_icmp(ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:05")))
    assert rs is not None and (rs.source_lladdr, rs.malformed) == ("02:00:00:00:00:05", None)
    bare = decode_nd(_icmp(ICMPv6ND_RS()))
    assert bare is not None and bare.source_lladdr is None  # type: ignore[union-attr]
    cut = decode_rs(_icmp(ICMPv6ND_RS())[:6])
    assert cut is not None and cut.malformed and "truncated" in cut.malformed


def test_build_rs_matches_scapy_checksum_and_options() -> None:
    pkt = build_rs("fe80::5", bytes.fromhex("020000000005"))
    ip6 = IPv6(pkt)
    assert (ip6.src, ip6.dst, ip6.hlim) == ("fe80::5", "ff02::2", 255)
    assert ip6[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:05"
    ours = ip6[ICMPv6ND_RS].cksum
    del ip6[ICMPv6ND_RS].cksum
    assert IPv6(bytes(ip6))[ICMPv6ND_RS].cksum == ours
    rs = decode_rs(pkt[40:])
    assert rs is not None and rs.source_lladdr == "02:00:00:00:00:05"


def test_build_rs_from_unspecified_has_no_link_layer_option() -> None:
    ip6 = IPv6(build_rs("::", bytes.fromhex("020000000005")))
    assert ip6.src == "::" and ICMPv6NDOptSrcLLAddr not in ip6  # RFC 4861 §4.1


def test_decode_dhcp_fields() -> None:
    raw = bytes(
        BOOTP(op=2, xid=0xABCD, yiaddr="198.51.100.10")
        / DHCP(options=[("message-type", "ack"), ("server_id", "198.51.100.1"),
                        ("subnet_mask", "255.255.255.0"), ("lease_time", 600),
                        ("router", "198.51.100.1"), "end"])
    )  # fmt: skip
    m = decode_dhcp(raw)
    assert m is not None and m.malformed is None
    assert (m.op, m.xid, m.type_name, m.yiaddr) == (2, 0xABCD, "ACK", "198.51.100.10")
    assert (m.server_id, m.lease, m.router) == ("198.51.100.1", 600, "198.51.100.1")
    assert m.subnet == "198.51.100.0/24"
    assert decode_dhcp(raw[:200]) is None
    assert decode_dhcp(raw[:236] + b"XXXX" + raw[240:]) is None  # no magic cookie


def test_decode_dhcp_request_and_broken_options() -> None:
    raw = bytes(
        BOOTP(op=1, xid=7)
        / DHCP(options=[("message-type", "request"), ("requested_addr", "198.51.100.10"), "end"])
    )
    m = decode_dhcp(raw)
    assert m is not None and (m.type_name, m.requested, m.subnet) == ("REQUEST", "198.51.100.10", None)
    cut = decode_dhcp(raw[: raw.index(b"\x32\x04") + 4])  # option 50 cut after two bytes
    assert cut is not None and cut.malformed == "option 50 overruns the message"
    assert cut.type_name == "REQUEST" and cut.requested is None
    odd_mask = bytes(
        BOOTP(op=2, yiaddr="198.51.100.10")
        / DHCP(options=[("message-type", "ack"), ("subnet_mask", "255.0.255.0"), "end"])
    )
    m = decode_dhcp(odd_mask)
    assert m is not None and m.subnet is None  # a non-contiguous mask names no subnet


def test_ra_managed_and_other_flags():
    from testbed.decode.nd import decode_ra

    ra = bytes([134, 0, 0, 0, 64, 0xC0]) + (1800).to_bytes(2, "big") + bytes(8)
    m = decode_ra(ra)
    assert m is not None and m.managed and m.other
    plain = decode_ra(bytes([134, 0, 0, 0, 64, 0]) + (1800).to_bytes(2, "big") + bytes(8))
    assert not plain.managed and not plain.other
