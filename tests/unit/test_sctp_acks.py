"""ASCONF-ACKs counted off the wire for the binding driver: distinct serials, this association
only, IPv4 (IP header included) and IPv6 (payload only) as raw sockets hand them over."""

from __future__ import annotations

import threading
import time

from testbed.decode.link import parse_ip
from testbed.sctp.acks import AsconfAcks
from tests.support.synth import Assoc

CN = "203.0.113.14"


def _sctp(frame: bytes, v6: bool) -> tuple[bytes, int]:
    """The frame as a raw socket reads it: from the IPv4 header, or from the SCTP header."""
    ip = frame[14:]
    if v6:
        _v, _p, _s, _d, l4, end, _id = parse_ip(ip, 0)
        return ip[l4:end], 0
    return ip, (ip[0] & 0x0F) * 4


def test_distinct_serials_of_this_association_are_counted() -> None:
    a = Assoc("192.0.2.100", CN)
    w = AsconfAcks(local_port=a.mn_port, peer_port=a.cn_port)
    for serial in (a.mn_itsn, a.mn_itsn, a.mn_itsn + 1):  # the second is a duplicate ACK
        w.feed(*_sctp(a.asconf_ack("192.0.2.100", serial), v6=False))
    other = AsconfAcks(local_port=a.mn_port + 1, peer_port=a.cn_port)
    other.feed(*_sctp(a.asconf_ack("192.0.2.100", a.mn_itsn), v6=False))
    w.feed(*_sctp(a.data_to_mn("192.0.2.100"), v6=False))  # no ASCONF-ACK in it
    assert w.serials == [a.mn_itsn, a.mn_itsn + 1] and other.count == 0  # another association


def test_ipv6_payloads_and_waiting_for_the_nth() -> None:
    a = Assoc("2001:db8:a1::5", "2001:db8:ff:c::2", v6=True)
    w = AsconfAcks(local_port=a.mn_port, peer_port=a.cn_port)
    assert not w.wait_for(1, 0.01)
    later = threading.Timer(0.05, lambda: w.feed(*_sctp(a.asconf_ack("2001:db8:a1::5", 7), v6=True)))
    later.start()
    t = time.monotonic()
    assert w.wait_for(1, 5.0) and time.monotonic() - t < 4.0
    w.close()
