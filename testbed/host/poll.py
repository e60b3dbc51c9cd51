"""``poll_until``: the one deadline loop, for conditions that have no change notification."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    probe: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.02,
    backoff: float = 1.0,
    max_interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T | None:
    """Call ``probe`` until it returns something truthy (returned) or ``timeout`` seconds pass
    (returns None after a last try). ``backoff`` > 1 grows the interval up to ``max_interval``."""
    deadline = clock() + timeout
    delay = interval
    while True:
        value = probe()
        if value:
            return value
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(delay, left))
        delay = min(delay * backoff, max_interval) if backoff > 1 else delay
