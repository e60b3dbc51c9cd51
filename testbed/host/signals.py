"""Clean-up that a second Ctrl-C must not cut short.

A terminal sends SIGINT to the whole foreground process group; a user who presses Ctrl-C twice
would otherwise interrupt the clean-up of the first (tcpdump left writing, traffic running).
Inside ``interrupts_deferred`` a SIGINT is remembered instead and raised as KeyboardInterrupt
when the block ends, unless one is already propagating. Clean-up run there is bounded (short
graces), so deferring costs the user at most that.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda sig, _frame: caught.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and sys.exc_info()[0] is None:
        raise KeyboardInterrupt
