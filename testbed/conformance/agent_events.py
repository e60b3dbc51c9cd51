"""The mobility agent's events (spec §3) as the timeline uses them, and their match to a handover.

A handover to address X belongs to the interface that came up with X. Its ``configured`` event
is the one listing X; that event's interface is the new link, whose latest ``link_up`` before
it is the handover's t0 and whose ``detected`` event for X's network (by prefix) comes between.
The old link's ``lost`` is the loss listing the old address (DELETE_IP's), else a loss on
another interface, nearest to the new link_up: before it in break-before-make, after the new
address is configured in make-before-break. Nothing is borrowed from a neighbouring handover:
what is not found is reported missing.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

EVENT_KINDS = ("link_up", "detected", "configured", "lost")


@dataclass(frozen=True, slots=True)
class AgentEvent:
    kind: str
    wall: float
    ifname: str | None
    prefix: str | None
    addresses: frozenset[str]

    def covers(self, address: str) -> bool:
        """The event's network (prefix) holds ``address``."""
        if self.prefix is None:
            return False
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.prefix, strict=False)
        except ValueError:
            return False


def _wall(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v).timestamp()
        except ValueError:
            return None
    return None


def _event(e: Mapping[str, Any]) -> AgentEvent | None:
    kind = str(e.get("event") or e.get("kind") or "")
    wall = _wall(e.get("wall"))
    if kind not in EVENT_KINDS or wall is None:
        return None
    addrs = set()
    for a in e.get("addresses") or ():
        try:
            addrs.add(str(ipaddress.ip_interface(str(a)).ip))
        except ValueError:
            continue
    prefix = e.get("prefix")
    return AgentEvent(kind, wall, e.get("ifname"), str(prefix) if prefix else None, frozenset(addrs))


def parse_events(events: Iterable[Mapping[str, Any]]) -> list[AgentEvent]:
    """The movement events among ``events`` (agent records with ``event`` or ``kind`` and a
    ``wall`` time), in time order; anything else is left out."""
    return sorted((ev for e in events if (ev := _event(e)) is not None), key=lambda e: e.wall)


def _last(events: Iterable[AgentEvent]) -> AgentEvent | None:
    last = None
    for e in events:
        last = e
    return last


def match_events(
    events: list[AgentEvent], address: str, old_address: str | None, start: float, lo: float, hi: float
) -> dict[str, AgentEvent]:
    """The events of the handover to ``address`` whose first ASCONF went at ``start``; ``lo`` and
    ``hi`` are the neighbouring handovers' starts (see the module docstring)."""
    found: dict[str, AgentEvent] = {}
    conf = [e for e in events if e.kind == "configured" and address in e.addresses]
    conf = [e for e in conf if lo < e.wall < hi] or conf
    if conf:
        found["configured"] = _last(e for e in conf if e.wall <= start) or conf[0]
    else:  # no configured event: the network detected for the address still names the link
        det = _last(e for e in events if e.kind == "detected" and e.covers(address) and lo < e.wall <= start)
        if det is not None:
            found["detected"] = det
    anchor = found.get("configured") or found.get("detected")
    if anchor is not None:
        found.update(_new_link(events, anchor, address, lo, have_detected="detected" in found))
    ref = found["link_up"].wall if "link_up" in found else start
    lost = _old_loss(events, anchor.ifname if anchor else None, old_address, ref, lo, hi)
    if lost is not None:
        found["lost"] = lost
    return found


def _new_link(
    events: list[AgentEvent], anchor: AgentEvent, address: str, lo: float, *, have_detected: bool
) -> dict[str, AgentEvent]:
    """``link_up`` (latest before ``anchor`` on its interface) and ``detected`` (between the two,
    for the address's network if the event names one)."""
    out: dict[str, AgentEvent] = {}
    mine = [e for e in events if e.ifname == anchor.ifname and e.wall <= anchor.wall]
    up = _last(e for e in mine if e.kind == "link_up")
    if up is not None:
        out["link_up"] = up
    if not have_detected:
        since = up.wall if up is not None else lo
        dets = [e for e in mine if e.kind == "detected" and e.wall >= since]
        # the address's network; else one of its family (ICMP router discovery detects a
        # router, /32, before DHCP names the subnet); else the latest
        fam = 6 if ":" in address else 4
        det = (_last(e for e in dets if e.covers(address))
               or _last(e for e in dets if e.prefix and (":" in e.prefix) == (fam == 6)) or _last(dets))
        if det is not None:
            out["detected"] = det
    return out


def _old_loss(
    events: list[AgentEvent], link: str | None, old_address: str | None, ref: float, lo: float, hi: float
) -> AgentEvent | None:
    """The loss listing the old address, else one on another interface than the new ``link``;
    the nearest to ``ref`` within ``(lo, hi)``."""
    losses = [e for e in events if e.kind == "lost" and lo < e.wall < hi]
    cands = [e for e in losses if old_address is not None and old_address in e.addresses]
    cands = cands or [e for e in losses if link is not None and e.ifname != link]
    return min(cands, key=lambda e: abs(e.wall - ref)) if cands else None


def window(starts: list[float], i: int) -> tuple[float, float]:
    """``(lo, hi)``: the starts of handover ``i``'s neighbours (infinite at the ends)."""
    lo = starts[i - 1] if i else -math.inf
    hi = starts[i + 1] if i + 1 < len(starts) else math.inf
    return lo, hi


# a loss is timed by the agent's netlink event; what the MN's stack had queued may still be
# captured just after it (and the guest's clock is the host's to within a millisecond)
LEFT_GRACE = 0.1


def left_networks(events: list[AgentEvent]) -> dict[str, list[tuple[float, float, float]]]:
    """address -> [(from, until, lost)]: after each ``lost`` event listing it (plus a grace)
    until a later ``configured`` event lists it again (a move back to the same network)."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    for i, e in enumerate(events):
        if e.kind != "lost":
            continue
        for addr in e.addresses:
            back = next((x.wall for x in events[i + 1:] if x.kind == "configured" and addr in x.addresses),
                        math.inf)
            out.setdefault(addr, []).append((e.wall + LEFT_GRACE, back, e.wall))
    return out
