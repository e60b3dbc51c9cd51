"""A second Ctrl-C during clean-up is held until the clean-up ends, then raised."""

from __future__ import annotations

import os
import signal

import pytest

from testbed.host.signals import interrupts_deferred


def test_sigint_inside_the_block_is_raised_after_it() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("clean-up finished")
    assert done == ["clean-up finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_sigint_no_exception() -> None:
    with interrupts_deferred():
        pass
