"""The room a run leaves its binding exchanges, from the links' loss and the senders' timers."""

from __future__ import annotations

import pytest

from testbed.model import retransmission as rtx


def test_a_lossless_link_needs_no_retransmission():
    assert rtx.retransmissions(0.0, exchanges=3) == 0
    assert rtx.margin(0.0, rtx.SCTP, exchanges=3) == 0.0


def test_two_percent_each_way_leaves_three_asconfs_two_retransmissions():
    # p = 1 - 0.98² ≈ 3.96 %: three exchanges still unanswered after two retransmissions with
    # 3 × p³ ≈ 1.9e-4 (under 1e-3), after one with 3 × p² ≈ 4.7e-3 (over it)
    assert rtx.exchange_loss(2.0) == pytest.approx(0.0396)
    assert rtx.retransmissions(2.0, exchanges=3) == 2
    assert rtx.margin(2.0, rtx.SCTP, exchanges=3) == pytest.approx(1.0 + 2.0)  # RTO, then doubled
    assert rtx.margin(2.0, rtx.TCP, exchanges=3) == pytest.approx(0.2 + 0.4)


def test_the_timer_stops_doubling_at_its_ceiling():
    assert rtx.DNS.waited(5) == pytest.approx(0.5 + 1 + 2 + 4 + 4)
    assert rtx.retransmissions(30.0, exchanges=3) > rtx.retransmissions(10.0, exchanges=3)


def test_a_link_that_drops_everything_has_no_margin():
    with pytest.raises(ValueError, match="no exchange ever completes"):
        rtx.retransmissions(100.0)
