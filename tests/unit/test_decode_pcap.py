"""The pcap/pcapng reader and link-layer decoding, checked against scapy's own reader."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.utils import PcapNgWriter, rdpcap, wrpcap

from testbed.decode import PcapReader, UnusableCapture, decode_frame
from testbed.decode.link import NotIP, ip_span, locate_ip, parse_ip
from testbed.decode.pcap import LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW
from tests.support.synth import trash_capture, write_pcap, write_pcapng


def _frames() -> list[tuple[float, bytes]]:
    return trash_capture().sorted_frames()[:20]


def _scapy_view(path: Path) -> list[tuple[float, bytes]]:
    return [(float(p.time), bytes(p)) for p in rdpcap(str(path))]


def _ours(path: Path) -> list[tuple[float, bytes]]:
    with PcapReader(path) as r:
        return [(ts, data) for ts, _lt, data, _if in r]


def _same(a: list[tuple[float, bytes]], b: list[tuple[float, bytes]]) -> None:
    assert len(a) == len(b)
    for (ta, da), (tb, db) in zip(a, b, strict=True):
        assert da == db
        assert ta == pytest.approx(tb, abs=2e-6)


@pytest.mark.parametrize(("nano", "big"), [(False, False), (True, False), (False, True), (True, True)])
def test_classic_pcap_matches_scapy(tmp_path: Path, nano: bool, big: bool) -> None:
    path = tmp_path / "x.pcap"
    write_pcap(path, _frames(), nano=nano, big_endian=big)
    _same(_ours(path), _scapy_view(path))


def test_scapy_written_pcap_and_pcapng(tmp_path: Path) -> None:
    pkts = [Ether(bytes(d)) for _t, d in _frames()]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.001
    wrpcap(str(tmp_path / "s.pcap"), pkts)
    with PcapNgWriter(str(tmp_path / "s.pcapng")) as w:
        for p in pkts:
            w.write(p)
    for name in ("s.pcap", "s.pcapng"):
        _same(_ours(tmp_path / name), _scapy_view(tmp_path / name))


def test_our_pcapng_matches_scapy_with_nanosecond_resolution(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    write_pcapng(path, _frames())
    _same(_ours(path), _scapy_view(path))
    with PcapReader(path) as r:
        assert r.format == "pcapng"


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def test_pcapng_simple_packet_block_and_two_interfaces(tmp_path: Path) -> None:
    raw = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"hi")
    eth = bytes(Ether(dst="02:00:00:00:00:02") / raw)
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb_eth = _block(1, struct.pack("<HHI", 1, 0, 0))
    idb_raw = _block(1, struct.pack("<HHI", LINKTYPE_RAW, 0, 0) + struct.pack("<HHB3xHH", 9, 1, 3, 0, 0))
    ms = 1_700_000_000_500
    epb = _block(6, struct.pack("<IIIII", 1, ms >> 32, ms & 0xFFFFFFFF, len(raw), len(raw)) + raw)
    spb = _block(3, struct.pack("<I", len(eth)) + eth)
    path = tmp_path / "m.pcapng"
    path.write_bytes(shb + idb_eth + idb_raw + epb + spb)
    with PcapReader(path) as r:
        recs = list(r)
    assert [(lt, iface) for _t, lt, _d, iface in recs] == [(LINKTYPE_RAW, 1), (1, 0)]
    assert recs[0][0] == pytest.approx(1_700_000_000.5)  # if_tsresol 10^-3
    assert recs[0][2] == raw and recs[1][2] == eth
    assert decode_frame(LINKTYPE_RAW, recs[0][2]).ip.dst == "192.0.2.2"


def test_truncated_file_reports_problem_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    write_pcap(path, _frames())
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with PcapReader(path) as r:
        got = list(r)
        assert len(got) == len(_frames()) - 1
        assert r.problems and "truncated" in r.problems[0]


def test_corrupt_record_length_stops_with_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    write_pcap(path, _frames()[:2])
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 24 + 8, 0x7FFFFFFF)  # first record's incl_len
    path.write_bytes(bytes(data))
    with PcapReader(path) as r:
        assert list(r) == []
        assert "corrupt" in r.problems[0]


def test_not_a_capture_is_unusable(tmp_path: Path) -> None:
    bad = tmp_path / "x.pcap"
    bad.write_text("hello world")
    with pytest.raises(UnusableCapture, match="not a pcap"):
        PcapReader(bad)
    with pytest.raises(UnusableCapture, match="cannot open"):
        PcapReader(tmp_path / "missing.pcap")


def _sctp_v6() -> bytes:
    return bytes(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / SCTP(sport=1, dport=2, tag=7)
        / SCTPChunkData(tsn=42, stream_id=3, stream_seq=4, proto_id=5, data=b"abc")
    )


def test_link_types_sll_sll2_raw_and_vlan() -> None:
    ip6 = _sctp_v6()
    sll = bytes(CookedLinux(pkttype=4, proto=0x86DD) / IPv6(ip6))
    sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 3, 1, 0, 6, b"\x02" * 6 + b"\0\0") + ip6
    vlan = struct.pack("!6s6sHHH", b"\x01" * 6, b"\x02" * 6, 0x8100, 10, 0x86DD) + ip6
    for lt, frame in ((LINKTYPE_LINUX_SLL, sll), (LINKTYPE_LINUX_SLL2, sll2), (LINKTYPE_RAW, ip6), (1, vlan)):
        pkt = decode_frame(lt, frame)
        assert pkt.malformed is None, lt
        assert pkt.ip is not None and pkt.ip.version == 6 and pkt.ip.src == "2001:db8::1"
        assert pkt.sctp is not None and pkt.sctp.chunks[0].tsn == 42


def test_ipv6_extension_headers_are_skipped() -> None:
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop

    frame = bytes(
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / SCTP(sport=1, dport=2)
        / SCTPChunkData(tsn=9, data=b"z")
    )
    pkt = decode_frame(LINKTYPE_RAW, frame)
    assert pkt.ip.proto == 132 and pkt.sctp.chunks[0].tsn == 9


def test_non_ip_and_other_protocols_are_unknown_not_malformed() -> None:
    arp = bytes(Ether(type=0x0806) / (b"\x00" * 28))
    assert decode_frame(1, arp).unknown and decode_frame(1, arp).malformed is None
    icmp = bytes(Ether(dst="02:00:00:00:00:02") / IP(proto=1) / b"\x08\x00\x00\x00")
    assert decode_frame(1, icmp).unknown == "IP protocol 1"


def test_truncated_ip_is_malformed() -> None:
    frame = bytes(
        Ether(dst="02:00:00:00:00:02")
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / SCTP()
        / SCTPChunkData(data=b"x" * 40)
    )
    for cut in (10, 20, 30, 40, len(frame) - 1):
        pkt = decode_frame(1, frame[:cut])
        assert pkt.malformed, cut


def test_big_endian_pcapng_section(tmp_path: Path) -> None:
    raw = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"be")

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack(">II", btype, len(body) + 12) + body + struct.pack(">I", len(body) + 12)

    us = 1_700_000_000_000_001
    data = (
        block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
        + block(1, struct.pack(">HHI", LINKTYPE_RAW, 0, 0))
        + block(6, struct.pack(">IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(raw), len(raw)) + raw)
    )
    path = tmp_path / "be.pcapng"
    path.write_bytes(data)
    with PcapReader(path) as r:
        ((ts, lt, got, iface),) = list(r)
    assert (lt, got, iface) == (LINKTYPE_RAW, raw, 0)
    assert ts == pytest.approx(1_700_000_000.000001, abs=1e-6)


def test_ip_span_short_cut_agrees_with_the_general_path() -> None:
    """Ethernet + plain IPv4 is read in one go; the result is the general path's, and every
    other shape (options, fragments, VLAN, IPv6) still goes the general way."""
    frames = [f for _t, f in trash_capture().sorted_frames()]
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames.append(bytes(eth / IP(src="192.0.2.1", dst="192.0.2.2", options=b"\x01" * 4) / UDP()))
    frames.append(bytes(eth / IP(src="192.0.2.1", dst="192.0.2.2", flags="MF") / UDP()))
    for frame in frames:
        try:
            general = (*parse_ip(frame, locate_ip(1, frame)[0]), 0)
        except NotIP as e:
            with pytest.raises(NotIP, match=re.escape(str(e))):
                ip_span(1, frame)
            continue
        assert ip_span(1, frame) == general


def test_decode_frame_reads_dhcp_and_router_advertisements() -> None:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo

    dhcp = bytes(
        Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
        / IP(src="198.51.100.1", dst="255.255.255.255") / UDP(sport=67, dport=68)
        / BOOTP(op=2, xid=9, yiaddr="198.51.100.10") / DHCP(options=[("message-type", "ack"), "end"])
    )  # fmt: skip
    p = decode_frame(1, dhcp)
    assert p.dhcp is not None and (p.dhcp.type_name, p.dhcp.xid, p.malformed) == ("ACK", 9, None)
    ra = bytes(
        Ether(src="02:00:00:00:00:01", dst="33:33:00:00:00:01")
        / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA()
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:a2::", prefixlen=64)
    )  # fmt: skip
    p = decode_frame(1, ra)
    assert p.nd is not None and [x.prefix for x in p.nd.prefixes] == ["2001:db8:a2::/64"]  # type: ignore[union-attr]
    ping = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(src="fe80::1", dst="fe80::2")
                 / b"\x80\x00\x00\x00")
    ping = ping[:20] + b"\x3a" + ping[21:]  # next header ICMPv6: an echo request, not ND
    assert decode_frame(1, ping).unknown == "ICMPv6 type 128"


def test_copies_differing_only_in_the_transport_checksum_are_one_packet():
    """Checksum offload: the same SCTP packet captured with its CRC32c still zero on one veth
    and filled in past a bridge is the same packet (its copy key leaves the checksum out)."""
    from testbed.conformance.dedup import transport_key

    sctp = bytes.fromhex("138913890000000100000000") + b"\x80\x00\x00\x08\x00\x00\x00\x01"
    filled = sctp[:8] + bytes.fromhex("73cb480e") + sctp[12:]
    ip = b"\x45" + b"\x00" * 19
    other_chunk = sctp[:13] + b"\x01" + sctp[14:]
    assert transport_key(132, ip + sctp, 20, 40) == transport_key(132, ip + filled, 20, 40)
    assert transport_key(132, ip + sctp, 20, 40) != transport_key(132, ip + other_chunk, 20, 40)
    udp = bytes.fromhex("00440043001c0000") + b"x" * 20
    udp_sum = udp[:6] + b"\xab\xcd" + udp[8:]
    assert transport_key(17, ip + udp, 20, 48) == transport_key(17, ip + udp_sum, 20, 48)


def test_iter_frames_reads_every_frame(tmp_path):
    """The convenience iterator (the benchmarks use it) yields Frame records, and the reader
    counts them once iteration ends."""
    from testbed.decode.pcap import PcapReader, iter_frames

    path = tmp_path / "two.pcap"
    pkts = [Ether() / IP() / UDP(), Ether() / IP() / UDP()]
    pkts[0].time, pkts[1].time = 1.0, 2.0
    wrpcap(str(path), pkts)
    frames = list(iter_frames(path))
    assert [round(f.time, 1) for f in frames] == [1.0, 2.0]
    with PcapReader(path) as r:
        list(r.frames())
        assert r.frame_count == 2
