"""The QUIC pairs of an interop run, before any lab: stacks, pairs, each cell's topology and
scenario, and settings that expect QUIC rules."""

from __future__ import annotations

import pytest

from testbed.errors import ConfigError
from testbed.interop import quic
from testbed.interop.cell import cell_topology
from testbed.interop.matrix import plan
from testbed.interop.settings import Setting
from testbed.scenario import model


def test_stacks_parse_each_once_with_its_version():
    choices = quic.parse_stacks("aioquic,ngtcp2,aioquic")
    assert [c.label for c in choices] == ["aioquic", "ngtcp2"]
    assert choices[0].release == "aioquic 1.7.2" and choices[1].release.startswith("ngtcp2 0.12.1")
    with pytest.raises(ConfigError, match="--stacks: quiche: not a QUIC stack of the lab"):
        quic.parse_stacks("quiche")


def test_every_pair_plays_but_ngtcp2_on_both_ends():
    choices = quic.parse_stacks("aioquic,ngtcp2")
    cells = [c for c in plan(choices, [quic.SETTING]) if quic.playable(c.mn, c.cn)]
    assert [(c.mn.label, c.cn.label) for c in cells] == [("aioquic", "aioquic"), ("aioquic", "ngtcp2"),
                                                         ("ngtcp2", "aioquic")]


def test_a_cell_sets_the_stacks_and_a_gtlsclient_mn_plays_the_timer_scenario():
    aioquic, ngtcp2 = quic.parse_stacks("aioquic,ngtcp2")
    sc = model.load("quic-handover")
    topo = cell_topology(sc, aioquic, ngtcp2, quic.SETTING)
    assert topo["nodes"]["mn"]["quic"] == {"stack": "aioquic"}
    assert topo["nodes"]["cn"]["quic"] == {"stack": "ngtcp2"}
    assert topo["nodes"]["mn"]["sctp"]["stack"] == "none"
    assert quic.scenario_of(sc, aioquic) is sc
    timer = quic.scenario_of(sc, ngtcp2)
    assert timer.name == "quic-gtlsclient-handover" and timer.traffic.binding == "timer"


def test_settings_may_expect_quic_rules():
    s = Setting(name="x", expect={"quic.retire": "fail", "quic.timer_migration": "pass",
                                  "order.quic": "fail"})
    assert s.expect["quic.retire"] == "fail"
    with pytest.raises(ValueError, match="unknown rule 'quic.nothing'"):
        Setting(name="y", expect={"quic.nothing": "pass"})
