"""The TraSH decisions (spec Appendix A) in one place, configurable per node.

TraSH's ladder — add the new address, make it primary, delete the old one — needs three
yes/no answers. Transports (binding drivers) ask them here instead of hard-coding a rule, so a
scenario can compare policies (e.g. make-before-break on a metric vs. switch on loss only)
without touching a transport. Pure functions of the detector's view: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Metrics = Mapping[str, Mapping[str, float]]  # ifname → metric name → value


@dataclass(frozen=True)
class NetworkView:
    """What a policy sees of one network on one link (built from events or the state file)."""

    ifname: str
    prefix: str
    addresses: tuple[str, ...] = ()
    configured: bool = False
    lost: bool = False  # carrier gone, address removed or lifetime expired
    family: int = 0  # 4 or 6; 0 = unknown

    @property
    def usable(self) -> bool:
        return self.configured and not self.lost and bool(self.addresses)


@dataclass(frozen=True)
class Policy:
    """Per-node TraSH settings.

    ``switch``: "on-loss" makes a new network primary only when the current one is lost
    (break-before-make fallback); "metric" also when ``metric`` is better on the new link by
    more than ``hysteresis`` and has stayed so for ``dwell`` seconds (the sequencer keeps that
    clock); "newest" whenever a new network appears (the draft's default handover when moving
    into a new cell).
    """

    switch: Literal["on-loss", "metric", "newest"] = "newest"
    metric: str = "signal"
    higher_is_better: bool = True  # signal: higher is better; rtt_ms: set False
    hysteresis: float = 0.0
    dwell: float = 0.0  # seconds the new network must keep beating the current one (metric)
    families: frozenset[int] = field(default_factory=lambda: frozenset({4, 6}))
    delete_on_loss: bool = True  # delete the old address once its network is lost
    keep_old: bool = True  # False: delete the old address as soon as the new one is primary

    def should_add(self, new: NetworkView) -> bool:
        """Add the new network's address(es) to the association (TraSH step 1)."""
        fam_ok = new.family in self.families or new.family == 0
        return new.usable and fam_ok

    def should_make_primary(self, new: NetworkView, current: NetworkView | None, metrics: Metrics) -> bool:
        """Move the primary path to ``new`` (TraSH step 2)."""
        if not self.should_add(new):
            return False
        if current is None or not current.usable:
            return True  # the old link is gone: any working network beats none
        if new.ifname == current.ifname:
            return False  # the other family on the same link (dual stack) is not a move
        if self.switch == "newest":
            return True
        if self.switch == "on-loss":
            return False
        m_new = metrics.get(new.ifname, {}).get(self.metric)
        m_cur = metrics.get(current.ifname, {}).get(self.metric)
        if m_new is None:
            return False  # cannot judge: stay
        if m_cur is None:
            return True  # the current link has no reading any more: prefer the measured one
        gain = m_new - m_cur if self.higher_is_better else m_cur - m_new
        return gain > self.hysteresis

    def needs_dwell(self, current: NetworkView | None) -> bool:
        """Does a switch away from ``current`` wait ``dwell`` seconds? Only a metric switch away
        from a network that still works does: a lost one is left at once."""
        return self.switch == "metric" and self.dwell > 0 and current is not None and current.usable

    def should_delete(self, old: NetworkView, primary: NetworkView | None = None) -> bool:
        """Delete the old network's address(es) from the association (TraSH step 3)."""
        if primary is not None and (old.ifname, old.prefix) == (primary.ifname, primary.prefix):
            return False  # never delete the primary path
        if old.lost:
            return self.delete_on_loss
        return not self.keep_old and primary is not None and primary.usable
