"""Which ladder column (role) an IP address belongs to.

The caller passes ``{role: [address or prefix, ...]}``, e.g. ``{"MN": ["192.0.2.0/24"], "New AR":
["198.51.100.1"], ...}``. Entries are host addresses ("198.51.100.1", or interface notation
"198.51.100.10/24", which names the host) or networks ("2001:db8:a2::/64", host bits zero). A host
entry beats any network entry, so an access router listed by address is not swallowed by the MN's
prefix; among networks the longest prefix wins. One address may serve several roles (dhcpd on the
access router): callers name the role they prefer for the message at hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from testbed.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Column names of the draft's Appendix A, in its order.
MN, NEW_AR, CN, DHCP, LOCATION_MANAGER = "MN", "New AR", "CN", "DHCP", "Location manager"
DEFAULT_COLUMNS = (MN, NEW_AR, CN, DHCP, LOCATION_MANAGER)
OTHER = "Other"  # column added only when a shown message has an end outside every role


def _strip_scope(text: str) -> str:
    """Drop an IPv6 zone ("fe80::1%eth0/64" → "fe80::1/64"): captures carry no zone."""
    addr, pct, rest = text.partition("%")
    return addr + ("/" + rest.split("/", 1)[1] if pct and "/" in rest else "")


@dataclass(slots=True)
class RoleMap:
    """Address → role lookup built from the caller's mapping (dict order = column order)."""

    hosts: dict[IPAddress, list[str]] = field(default_factory=dict)
    networks: list[tuple[IPNetwork, str]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, roles: Mapping[str, Iterable[str]]) -> RoleMap:
        rm = cls(roles=list(roles))
        for role, entries in roles.items():
            for entry in entries:
                text = _strip_scope(str(entry).strip())
                try:
                    net = ipaddress.ip_network(text, strict=True)
                except ValueError:
                    try:
                        host = ipaddress.ip_interface(text).ip
                    except ValueError as e:
                        raise ConfigError(
                            "report roles", role, f"{text!r} is not an address or prefix",
                            "give addresses like 192.0.2.1 or prefixes like 2001:db8:a2::/64",
                        ) from e  # fmt: skip
                    rm.hosts.setdefault(host, []).append(role)
                    continue
                if "/" in text and net.num_addresses > 1:
                    rm.networks.append((net, role))
                else:
                    rm.hosts.setdefault(net.network_address, []).append(role)
        rm.networks.sort(key=lambda nr: -nr[0].prefixlen)
        return rm

    def resolve(self, address: str, prefer: Sequence[str] = ()) -> str | None:
        """The role of ``address`` (``prefer`` breaks ties among roles sharing it), or None."""
        try:
            ip = ipaddress.ip_address(_strip_scope(address))
        except ValueError:
            return None
        owners = self.hosts.get(ip)
        if owners:
            return next((r for r in prefer if r in owners), owners[0])
        nets = [(n, r) for n, r in self.networks if ip.version == n.version and ip in n]
        if not nets:
            return None
        best = nets[0][0].prefixlen
        tied = [r for n, r in nets if n.prefixlen == best]
        return next((r for r in prefer if r in tied), tied[0])

    def hosts_in(self, prefix: str) -> list[str]:
        """Roles owning a host address inside ``prefix`` (to name a link-local RA's router)."""
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            return []
        out: list[str] = []
        for ip, owners in self.hosts.items():
            if ip.version == net.version and ip in net:
                out.extend(r for r in owners if r not in out)
        return out
