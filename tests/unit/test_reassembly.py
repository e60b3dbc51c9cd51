"""The checker reassembles what the lab's kernels may split: IP fragments (IPv4 and IPv6) and
DNS messages over TCP spread over several segments, out of order and retransmitted."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether

from testbed.conformance import check
from testbed.decode.reassembly import Defragmenter, DnsOverTcp, Fragment
from tests.support.synth import Capture, dns_update, dns_update_response

MN, DNS6, MN6 = "mn.mobile.test.", "2001:db8:53::53", "2001:db8:2::10"
T0 = 1_700_000_000.0


def _update() -> bytes:
    return dns_update(0x1234, "mobile.test.", MN, "198.51.100.10", signer=MN)


def _signed_verdict(tmp_path: Path, cap: Capture):
    cap.write_pcap(tmp_path / "dns.pcap")
    return check(tmp_path, rules="dns", mn_name=MN)


def test_fragmented_udp_update_over_ipv4_is_judged(tmp_path: Path) -> None:
    pkt = IP(src="198.51.100.10", dst="203.0.113.53", id=77) / UDP(sport=40000, dport=53) / _update()
    cap = Capture()
    frags = fragment(pkt, fragsize=48)
    assert len(frags) > 2
    for i, fr in enumerate(reversed(frags)):  # out of order
        cap.add(T0 + i * 1e-4, bytes(Ether() / fr))
    resp = IP(src="203.0.113.53", dst="198.51.100.10") / UDP(sport=53, dport=40000)
    cap.add(T0 + 0.01, bytes(Ether() / resp / dns_update_response(0x1234, "mobile.test.")))
    v = _signed_verdict(tmp_path, cap)
    assert v.statuses() == {"dns.signed": "pass", "dns.answered": "pass"}, v.rules
    assert v.stats["malformed"] == 0 and v.stats["dns_updates"] == 1


def test_fragmented_udp_update_over_ipv6_is_judged(tmp_path: Path) -> None:
    pkt = IPv6(src=MN6, dst=DNS6) / IPv6ExtHdrFragment(id=9) / UDP(sport=40000, dport=53) / _update()
    cap = Capture()
    for i, fr in enumerate(fragment6(pkt, 96)):
        cap.add(T0 + i * 1e-4, bytes(Ether() / fr))
    v = _signed_verdict(tmp_path, cap)
    assert v.statuses()["dns.signed"] == "pass" and v.stats["dns_updates"] == 1


def test_update_split_over_tcp_segments(tmp_path: Path) -> None:
    wire = len(_update()).to_bytes(2, "big") + _update()
    a, b = wire[:30], wire[30:]
    ip = IP(src="198.51.100.10", dst="203.0.113.53")
    cap = Capture()
    cap.add(T0, bytes(Ether() / ip / TCP(sport=41000, dport=53, flags="S", seq=999)))
    cap.add(T0 + 0.002, bytes(Ether() / ip / TCP(sport=41000, dport=53, flags="PA", seq=1030) / b))
    cap.add(T0 + 0.003, bytes(Ether() / ip / TCP(sport=41000, dport=53, flags="PA", seq=1000) / a))
    cap.add(T0 + 0.004, bytes(Ether() / ip / TCP(sport=41000, dport=53, flags="PA", seq=1000) / a))  # again
    resp = dns_update_response(0x1234, "mobile.test.")
    back = IP(src="203.0.113.53", dst="198.51.100.10") / TCP(sport=53, dport=41000, flags="PA", seq=5)
    cap.add(T0 + 0.01, bytes(Ether() / back / (len(resp).to_bytes(2, "big") + resp)))
    v = _signed_verdict(tmp_path, cap)
    assert v.statuses() == {"dns.signed": "pass", "dns.answered": "pass"}, v.rules
    assert v.stats["dns_updates"] == 1


def test_defragmenter_needs_every_byte_and_forgets_old_datagrams() -> None:
    d = Defragmenter(timeout=1.0)

    def frag(ident: int, off: int, more: bool, data: bytes) -> Fragment:
        return Fragment(4, 17, b"a" * 4, b"b" * 4, ident, off, more, data)

    part = frag(1, 0, True, b"x" * 8)
    assert d.add(part, 0.0) is None
    assert d.add(frag(1, 16, False, b"z" * 8), 0.1) is None  # a hole at 8..16
    assert d.add(frag(1, 8, True, b"y" * 8), 0.2) == b"x" * 8 + b"y" * 8 + b"z" * 8
    assert d.add(part, 0.3) is None and d.add(frag(2, 0, True, b""), 5.0) is None
    assert d.dropped == 1 and len(d.open) == 1


def test_stream_resynchronises_after_garbage() -> None:
    s = DnsOverTcp()
    flow = ("a", 1, "b", 53)
    assert s.add(flow, 0, 0x18, b"\x00\x03abc\x00\x01", 0.0) == [b"abc"]
    assert s.add(flow, 7, 0x18, b"d", 0.1) == [b"d"]
    assert s.add(flow, 8, 0x04, b"", 0.2) == [] and not s.streams  # RST forgets it
