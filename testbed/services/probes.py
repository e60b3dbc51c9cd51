"""Readiness probes, meant to run inside a node's namespace through ``netns.call_in``.

Each is a plain function of picklable arguments returning a plain value.
"""

from __future__ import annotations

from pathlib import Path


def port_bound(port: int, proto: str = "udp") -> bool:
    """Is anything bound to ``port`` in this (the caller's) network namespace?"""
    for table in (f"/proc/self/net/{proto}", f"/proc/self/net/{proto}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]
            if int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def raw_icmp6_open() -> bool:
    """Is a raw ICMPv6 socket open in this namespace (radvd's listening socket)?"""
    try:
        lines = Path("/proc/self/net/raw6").read_text().splitlines()[1:]
    except OSError:
        return False
    # raw sockets show their protocol number where other tables show the local port
    return any(line.split()[1].rsplit(":", 1)[1] == "003A" for line in lines if line.strip())


def dns_soa(server: str, zone: str, timeout: float = 0.5) -> int | None:
    """The zone's SOA serial as ``server`` answers it, or None when it does not (yet)."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    q = dns.message.make_query(zone, "SOA")
    try:
        r = dns.query.udp(q, server, timeout=timeout)
    except (dns.exception.Timeout, OSError):
        return None
    if r.rcode() != dns.rcode.NOERROR or not r.answer:
        return None
    return r.answer[0][0].serial

