"""Building and removing a lab over fakes: the build order, rollback on failure, teardown."""

from __future__ import annotations

import pytest

from testbed.errors import ServiceError
from testbed.lab import Lab, build, teardown_state
from testbed.lab.wiring import Wiring
from testbed.state import LabState, ServiceRecord, lab_dir


class FakeDaemon:
    def __init__(self, nodes, node: str, name: str, fail: bool = False) -> None:
        self.nodes, self.node, self.name, self.fail = nodes, node, name, fail

    NAME = "fake"

    def launch(self) -> ServiceRecord:
        rt = self.nodes.runtime(self.node)
        pid = rt.spawn([self.name], log=self.nodes.state.dir / f"{self.name}.log")
        return ServiceRecord(self.node, self.name, pid, "", "", rt.own_kernel)

    def settle(self, record: ServiceRecord) -> None:
        if self.fail:
            raise ServiceError(f"{self.name} on {self.node} did not answer")


class FakeWiring(Wiring):
    """The lab's wiring with every daemon replaced by a FakeDaemon (``fail`` names one)."""

    fail = ""

    def _d(self, node: str, name: str) -> FakeDaemon:
        return FakeDaemon(self.nodes, node, name, name == self.fail)

    def named(self):
        return self._d("dns", "named")

    def ar_daemons(self, ar):
        return [self._d(ar, "radvd"), self._d(ar, "dhcpd")]

    def dhcp_client(self):
        return self._d("mn", "dhcpcd")

    def agent(self):
        return self._d("mn", "agent")


@pytest.fixture
def no_kernel_nodes(monkeypatch):
    monkeypatch.setattr("testbed.runtimes.kernel_nodes.kernel_nodes", lambda topo: {})
    monkeypatch.setattr("testbed.lab.lab.sig0_supported", lambda: True)


def test_build_order_agent_before_attach(fake_lab, fake_backend, no_kernel_nodes, monkeypatch):
    lab = fake_lab
    monkeypatch.setattr("testbed.lab.build.write_resolvers", lambda nodes: None)
    lab.runtime("mn").outputs["ip"] = '[{"flags": ["UP"], "addr_info": []}]'
    build.build(lab.nodes, FakeWiring(lab.nodes), [lab.mobile], lambda m: None)
    order = [e for e in fake_backend.journal if e[1] in ("build", "spawn", "link")]
    assert order[0] == ("backend", "build")
    spawned = [e[2] for e in order if e[1] == "spawn"]
    assert spawned == ["named", "radvd", "dhcpd", "radvd", "dhcpd", "dhcpcd", "agent"]
    assert order.index(("mn", "spawn", "agent")) < order.index(("mn", "link", "mn-ar1", "up"))
    assert ("mn", "request", "wait-configured") in fake_backend.journal
    assert {s.service for s in lab.state.service_records()} == {"named", "radvd", "dhcpd", "dhcpcd",
                                                                  "agent"}


def test_a_failed_up_removes_everything_it_made(run_root, fake_backend, no_kernel_nodes, monkeypatch):
    monkeypatch.setattr("testbed.lab.build.write_resolvers", lambda nodes: None)
    FakeWiring.fail = "dhcpd"
    monkeypatch.setattr("testbed.lab.lab.Wiring", FakeWiring)
    try:
        with pytest.raises(ServiceError, match="dhcpd on ar1"):
            Lab.up(None, "tbroll", backend=fake_backend)
    finally:
        FakeWiring.fail = ""
    assert fake_backend.torn_down == [f"tbroll-{n}" for n in fake_backend.built]
    launched = [e[2] for e in fake_backend.journal if e[1] == "spawn"]
    assert launched == ["named", "radvd", "dhcpd", "radvd", "dhcpd"]  # launched together
    assert not lab_dir("tbroll").exists()
    assert not LabState.exists("tbroll")


def test_ctrl_c_during_up_rolls_back_too(run_root, fake_backend, no_kernel_nodes, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("testbed.lab.build.build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Lab.up(None, "tbint", backend=fake_backend)
    assert ("backend", "teardown") in fake_backend.journal
    assert not lab_dir("tbint").exists()


def test_teardown_stops_host_daemons_not_guest_ones(run_root, fake_backend, monkeypatch):
    stopped = []
    monkeypatch.setattr("testbed.lab.teardown.stop_pids", lambda pids, grace: stopped.extend(pids))
    st = LabState("tbtd", "x.yaml", {}, backend="fake", netns=["tbtd-a"])
    st.services = [vars(ServiceRecord("a", "named", 11, "")),
                   vars(ServiceRecord("mn", "agent", 12, "", guest=True))]
    st.save()
    teardown_state(st)
    assert stopped == [11]
    assert fake_backend.torn_down == ["tbtd-a"]
    assert not lab_dir("tbtd").exists()


def test_a_second_up_is_refused(fake_lab, fake_backend):
    from testbed.errors import LabStateError

    with pytest.raises(LabStateError, match="already up"):
        Lab.up(None, fake_lab.state.lab, backend=fake_backend)


def test_teardown_stops_the_mobile_nodes_daemons_first_each_wave_at_once(run_root, fake_backend,
                                                                         monkeypatch):
    waves = []
    monkeypatch.setattr("testbed.lab.teardown.stop_pids", lambda pids, grace: waves.append((pids, grace)))
    st = LabState("tbtw", "x.yaml", {"mobile": {"node": "mn"}}, backend="fake", netns=["tbtw-a"])
    st.services = [vars(ServiceRecord("dns", "named", 11, "")), vars(ServiceRecord("ar1", "dhcpd", 12, "")),
                   vars(ServiceRecord("mn", "dhcpcd", 13, "")), vars(ServiceRecord("mn", "agent", 14, ""))]
    st.save()
    teardown_state(st)
    assert waves == [([13, 14], 0.5), ([11, 12], 1.0)]
