"""Movement events: what the detector tells transports and location management (spec §3).

One dataclass for every kind keeps the JSON-lines wire format flat and the same for every
subscriber; ``kind`` says which of the fields carry meaning. Kinds:

- ``link_up`` / ``link_down``: carrier (IFF_LOWER_UP with IFF_UP) appeared / went away.
- ``detected``: a network not seen on this link yet (RA with a new prefix, DHCPv4 ACK from a
  new server/subnet, or an address in an unknown subnet).
- ``configured``: an address in that network is usable (IPv6 non-tentative, or optimistic when
  optimistic DAD is on; IPv4 address added after the lease was bound).
- ``lost``: the network is gone (carrier lost, address removed, lifetime expired).
- ``untrusted``: a network outside the agent's trust list (a rogue RA or DHCP server): not
  bound to, no ``configured`` follows.
- ``metric``: a link metric changed (RTT probe, ``set-metric``); lets a policy re-rank links.
- ``shutdown``: the agent is stopping; the last event a subscriber sees.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

EventKind = Literal["link_up", "link_down", "detected", "untrusted", "configured", "lost", "metric",
                    "shutdown"]
KINDS: Final[frozenset[str]] = frozenset(
    {"link_up", "link_down", "detected", "untrusted", "configured", "lost", "metric", "shutdown"}
)


@dataclass(frozen=True)
class Event:
    """One movement event. ``seq`` is gap-free per agent run, so a subscriber sees drops."""

    kind: EventKind
    seq: int
    mono: float  # time.monotonic() of the observation that caused the event
    wall: float  # time.time() at the same moment, for reports across hosts
    ifname: str = ""
    prefix: str | None = None  # "2001:db8:a1::/64" or "192.0.2.0/24"
    router: str | None = None  # RA source (link-local) or DHCP router/server
    addresses: tuple[str, ...] = ()  # bare addresses (no /len) in that network on that link
    metrics: dict[str, float] = field(default_factory=dict)  # link metrics at that moment
    source: str = ""  # what caused it: "netlink", "ra", "dhcp", "address", "lifetime", ...
    reason: str = ""  # for lost/link_down: "carrier", "removed", "expired", "ra-zero", ...

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["addresses"] = list(self.addresses)
        return d

    def to_json(self) -> str:
        """One line of JSON, no trailing newline."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        known = {k: v for k, v in d.items() if k in _FIELDS}  # newer agents may add fields
        known["addresses"] = tuple(known.get("addresses", ()))
        known["metrics"] = dict(known.get("metrics") or {})
        return cls(**known)

    @classmethod
    def from_json(cls, line: str | bytes) -> Event:
        return cls.from_dict(json.loads(line))


_FIELDS: Final[frozenset[str]] = frozenset(Event.__dataclass_fields__)


def encode_lines(events: list[Event]) -> bytes:
    """JSON-lines bytes for a batch of events (one per line, newline-terminated)."""
    return b"".join(e.to_json().encode() + b"\n" for e in events)
