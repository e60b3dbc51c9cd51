"""The detector's view of the wire: DHCP replies as observations, the ICMPv6 socket filter.

The RA/RS and DHCP codecs themselves are tested in test_decode_nd_dhcp.py."""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP

from testbed.mobility.detection.detector import icmp6_filter_only
from testbed.mobility.detection.observations import parse_dhcp_reply


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
