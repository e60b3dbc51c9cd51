"""How long a request and its answer may take over a lossy link, from the loss and the
sender's retransmission timer: the room a run leaves its binding exchanges.

A request that goes unanswered is sent again when its timer expires, and the timer doubles on
each expiry (SCTP's T-4 RTO timer for an ASCONF, RFC 5061 §5.1 with RFC 9260 §6.3.3; TCP's RTO,
RFC 6298 §5.5; the location updater's own backoff). With loss ``l`` in each direction an
exchange fails with ``p = 1 - (1 - l)²``, and needs ``k`` retransmissions with ``p**k``. The
margin for ``n`` exchanges is the time up to the answer of the ``k``-th retransmission, for the
smallest ``k`` that leaves all ``n`` unanswered at most with probability ``target``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Timer:
    """A sender's retransmission timer: the first timeout, its ceiling, the factor per expiry."""

    first: float
    ceiling: float
    backoff: float = 2.0

    def waited(self, retransmissions: int) -> float:
        """Seconds from the first transmission to the ``retransmissions``-th retransmission."""
        return sum(min(self.first * self.backoff ** i, self.ceiling) for i in range(retransmissions))


# Linux's SCTP: an ASCONF is timed by the RTO of a path with a measured RTT, which
# net.sctp.rto_min (1000 ms) bounds from below; rto_max 60 s
SCTP = Timer(first=1.0, ceiling=60.0)
# Linux's TCP (and so MPTCP's subflows): TCP_RTO_MIN 200 ms, TCP_RTO_MAX 120 s
TCP = Timer(first=0.2, ceiling=120.0)
# testbed.mobility.location.updater.RetryPolicy's defaults: 0.5 s, doubling, at most 4 s
DNS = Timer(first=0.5, ceiling=4.0)
# a DHCPv4 client's retransmissions (RFC 2131 §4.1: 4 s, doubling, up to 64 s; randomised by
# ±1 s, so each waits up to 1 s more): DISCOVER → OFFER and REQUEST → ACK
DHCP = Timer(first=5.0, ceiling=65.0)

TARGET = 1e-3  # chance, per run, that an exchange of the last handover is still unanswered


def exchange_loss(loss_percent: float) -> float:
    """Probability that a request or its answer is lost, with ``loss_percent`` each way."""
    keep = 1.0 - min(max(loss_percent, 0.0), 100.0) / 100.0
    return 1.0 - keep * keep


def retransmissions(loss_percent: float, exchanges: int = 1, target: float = TARGET) -> int:
    """The fewest retransmissions after which ``exchanges`` exchanges all have an answer,
    but for a chance of at most ``target``."""
    p = exchange_loss(loss_percent)
    if p <= 0.0:
        return 0
    if p >= 1.0:
        raise ValueError(f"loss {loss_percent:g} % each way: no exchange ever completes")
    # exchanges * p ** (k + 1) <= target
    return max(0, math.ceil(math.log(target / exchanges) / math.log(p)) - 1)


def margin(loss_percent: float, timer: Timer, exchanges: int = 1, target: float = TARGET) -> float:
    """Seconds an exchange may take beyond its first round trip over a link with this loss."""
    return timer.waited(retransmissions(loss_percent, exchanges, target))
