"""What a UML lab machine cannot serve is refused before anything exists."""

from __future__ import annotations

import pytest

from testbed.errors import ConfigError
from testbed.machine.uml import refuse_unservable
from testbed.model import loader

UML_CONFIG = {"CONFIG_NET_NS": "y", "CONFIG_VETH": "m", "CONFIG_IP_SCTP": "m"}


def test_a_node_with_a_kernel_of_its_own_is_refused():
    topo = loader.load("two-ar-interop")  # qemu nodes
    with pytest.raises(ConfigError, match=r"nodes\.mn\.sctp\.stack: qemu nodes cannot run inside"):
        refuse_unservable(topo, "two-ar-interop.yaml", kernel_config=UML_CONFIG)


def test_a_feature_the_build_lacks_is_refused_with_the_fix():
    topo = loader.load("two-ar-sctp")
    refuse_unservable(topo, "t.yaml", kernel_config=UML_CONFIG)  # auto nodes: the machine's stack
    with pytest.raises(ConfigError, match="has no CONFIG_MPTCP .*run this lab on the host"):
        refuse_unservable(topo, "t.yaml", needs=("CONFIG_MPTCP",), kernel_config=UML_CONFIG)
    with pytest.raises(ConfigError, match="no kernel SCTP"):
        refuse_unservable(topo, "t.yaml", kernel_config={"CONFIG_NET_NS": "y", "CONFIG_VETH": "m"})


def test_an_mptcp_scenario_or_topology_needs_mptcp_in_the_machine():
    from testbed.scenario import model

    assert model.load("mptcp-handover").kernel_features() == ("CONFIG_MPTCP",)
    assert model.load("tcp-baseline").kernel_features() == ()
    assert model.load("trash-handover").kernel_features() == ("CONFIG_IP_SCTP",)
    topo = loader.load("two-ar-mptcp")  # its nodes ask for MPTCP themselves
    with pytest.raises(ConfigError, match="has no CONFIG_MPTCP"):
        refuse_unservable(topo, "two-ar-mptcp.yaml", kernel_config=UML_CONFIG)
    refuse_unservable(topo, "t.yaml", kernel_config={**UML_CONFIG, "CONFIG_MPTCP": "y"})
