"""Path quality: which interfaces are shaped, the qdiscs and rules for each kernel, and a delay
refused before anything is built where the kernel has no netem."""

from __future__ import annotations

import pytest

from testbed.errors import ConfigError
from testbed.lab import shaping
from testbed.model import addressing, loader
from testbed.model.shaping import shaped
from testbed.model.topology import Shaping


def test_an_access_networks_shape_is_both_ends_of_the_radio_link():
    plan = addressing.plan(loader.load("three-ar-sctp"))
    got = {(s.node, s.ifname): s.shape for s in shaped(plan)}
    assert got == {("ar2", "ar2-mn"): Shaping(rate="1mbit"), ("mn", "mn-ar2"): Shaping(rate="1mbit"),
                   ("ar3", "ar3-mn"): Shaping(loss=2), ("mn", "mn-ar3"): Shaping(loss=2)}


def test_netem_carries_everything_in_one_qdisc():
    argv = shaping.netem_argv("mn-ar2", Shaping(rate="1mbit", delay_ms=20, jitter_ms=5, loss=1.5))
    assert argv[argv.index("netem"):] == ["netem", "delay", "20ms", "5ms", "loss", "1.5%", "rate", "1mbit"]


def test_without_netem_rate_is_tbf_and_loss_an_egress_rule():
    argv = shaping.tbf_argv("ar2-mn", "1mbit")
    assert argv[argv.index("tbf") + 1:argv.index("tbf") + 3] == ["rate", "1mbit"]
    assert int(argv[argv.index("burst") + 1]) >= 1_000_000 // 8 // 250  # tbf needs >= rate/HZ
    rules = shaping.loss_rules("ar3-mn", 2)
    assert 'hook egress device "ar3-mn"' in rules and "numgen random mod 10000 < 200 drop" in rules


def test_delay_without_netem_is_refused_before_the_build(monkeypatch):
    monkeypatch.setattr(shaping, "host_has_netem", lambda: False)
    topo = loader.load("three-ar-sctp")
    nets = [a.model_copy(update={"shape": Shaping(delay_ms=30)}) if a.router == "ar1" else a
            for a in topo.access_networks]
    plan = addressing.plan(topo.model_copy(update={"access_networks": nets}))
    with pytest.raises(ConfigError) as e:
        shaping.check(plan, frozenset({"mn", "cn"}), "t.yaml")
    assert e.value.field == "access_networks.0.shape" and "ar1" in str(e.value)
    assert "--machine uml" in str(e.value)


def test_a_rate_is_written_as_tc_writes_it():
    with pytest.raises(ValueError, match="tc does"):
        Shaping(rate="10 Mbps")
