"""QUIC in the lab's models and records: topology and scenario checks, the stack checks made
before anything starts, keylogs, the timer-migration rule, and the binding process's DNS
UPDATEs beside its actions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from testbed.errors import ConfigError, MissingDependency
from testbed.mobility.binding import Action, LocationUpdates
from testbed.model import loader
from testbed.quic import keylog, stacks
from testbed.scenario import model
from testbed.scenario.quic_traffic import preflight, timer_migration_rule


def _topo(**quic):
    data = loader.yaml.safe_load(loader.resolve("two-ar-quic").read_text())
    for node, stack in quic.items():
        data["nodes"][node]["quic"] = {"stack": stack}
    return loader.from_dict(data, "t.yaml")


def _scenario(**traffic) -> model.Scenario:
    return model.Scenario.model_validate({"name": "s", "topology": "two-ar-quic",
                                          "traffic": {"transport": "quic", **traffic},
                                          "steps": [{"traffic": "start"}, {"wait": 3},
                                                    {"move": {"to": "ar2", "overlap": 1}},
                                                    {"traffic": "stop"}]})


def test_quic_is_for_endpoints_on_the_host_kernel():
    data = loader.yaml.safe_load(loader.resolve("two-ar-quic").read_text())
    data["nodes"]["ar1"]["quic"] = {"stack": "aioquic"}
    with pytest.raises(ConfigError, match=r"nodes\.ar1\.quic\.stack: QUIC endpoints are mobile or host"):
        loader.from_dict(data, "t.yaml")
    data = loader.yaml.safe_load(loader.resolve("two-ar-quic").read_text())
    data["nodes"]["cn"]["sctp"] = {"stack": "uml"}
    assert loader.from_dict(data, "t.yaml").nodes["cn"].quic.stack == "aioquic"  # in the guest
    data["nodes"]["cn"]["quic"] = {"stack": "ngtcp2"}
    with pytest.raises(ConfigError, match=r"nodes\.cn\.quic\.stack: ngtcp2 runs in a namespace"):
        loader.from_dict(data, "t.yaml")
    with pytest.raises(ConfigError, match="quic.stack"):
        loader.from_dict({**data, "nodes": {**data["nodes"], "cn": {"role": "host", "quic": {"stack": "x"}}}},
                         "t.yaml")


def test_the_binding_fits_the_mobile_nodes_stack():
    topo = _topo()
    with pytest.raises(ConfigError, match=r"traffic\.binding: timer: an aioquic MN is migrated by the "
                       r"binding process \(use binding: trash\)"):
        preflight(topo, _scenario(binding="timer"), "cn", "s.yaml")
    with pytest.raises(ConfigError, match=r"traffic\.binding: trash: gtlsclient migrates on its own timer"):
        preflight(_topo(mn="ngtcp2"), _scenario(), "cn", "s.yaml")
    with pytest.raises(ConfigError, match="ngtcp2 on both ends"):
        preflight(_topo(mn="ngtcp2", cn="ngtcp2"), _scenario(binding="timer"), "cn", "s.yaml")
    with pytest.raises(ValueError, match=r"binding auto is not one of quic.s"):
        _scenario(binding="auto")
    info = preflight(_topo(mn="ngtcp2"), _scenario(binding="timer", migrate_after=3), "cn", "s.yaml")
    assert info["agent_driven"] is False and info["migration"] == "timer" and info["migrate_after_s"] == 3
    assert info["nodes"]["mn"]["program"] == "/usr/bin/gtlsclient" and info["nodes"]["mn"]["version"]
    assert preflight(topo, _scenario(), "cn", "s.yaml")["nodes"]["cn"]["version"] == "1.7.2"


def test_missing_stacks_are_named_with_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(stacks.NGTCP2_PROGRAMS, stacks.Role.HOST, (tmp_path / "gtlsserver", "ngtcp2-server"))
    with pytest.raises(MissingDependency) as e:
        preflight(_topo(cn="ngtcp2"), _scenario(), "cn", "s.yaml")
    msg = str(e.value)
    assert "nodes.cn.quic.stack" in msg and "install the Debian package 'ngtcp2-server'" in msg
    assert "\n" not in msg
    monkeypatch.setattr(stacks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(stacks.AioquicMissing) as e:
        preflight(_topo(), _scenario(), "cn", "s.yaml")
    assert "nodes.mn.quic.stack: aioquic" in str(e.value) and "pip install aioquic==1.7.2" in str(e.value)


def test_the_htdocs_cover_the_longest_traffic_the_steps_allow():
    sc = _scenario()
    assert sc.traffic_seconds() == 3 + 1 + 20 + 1  # the wait, the move's overlap and timeout
    assert model.Scenario.model_validate({"name": "n", "steps": [{"wait": 1}]}).traffic_seconds() == 0


def test_keylogs_merge_every_secret_once(tmp_path: Path):
    line = "CLIENT_TRAFFIC_SECRET_0 " + "ab" * 32 + " " + "cd" * 48
    other = "SERVER_TRAFFIC_SECRET_0 " + "ab" * 32 + " " + "ef" * 48
    (tmp_path / "keylog-mn.txt").write_text(f"# aioquic\n{line}\n")
    (tmp_path / "keylog-cn.txt").write_text(f"{line}\n{other}\nnot a key line\n")
    out = tmp_path / "keylog.txt"
    counts = keylog.merge({"mn": tmp_path / "keylog-mn.txt", "cn": tmp_path / "keylog-cn.txt",
                           "gone": tmp_path / "nope.txt"}, out)
    assert counts == {"mn": 1, "cn": 1}
    assert keylog.secrets(out.read_text()) == [line, other]


def _conn(moves, first="192.0.2.100", t_req=100.0):
    last = moves[-1]["to"] if moves else first
    return {"requests": [{"t": t_req}], "peer": first, "source": last, "datagram_sources": moves}


def test_the_timer_migration_rule_needs_the_new_address_after_the_timer():
    ok = timer_migration_rule(_conn([{"t": 104.1, "from": "192.0.2.100", "to": "198.51.100.100"}]), 4.0)
    assert ok.status == "pass" and "not driven by the agent" in ok.message
    early = timer_migration_rule(_conn([{"t": 101.0, "from": "192.0.2.100", "to": "198.51.100.100"}]), 4.0)
    assert early.status == "fail"  # a change before the timer is not its migration
    back = timer_migration_rule(_conn([{"t": 104.1, "from": "192.0.2.100", "to": "198.51.100.100"},
                                       {"t": 105.0, "from": "198.51.100.100", "to": "192.0.2.100"}]), 4.0)
    assert back.status == "fail" and "still sending from 192.0.2.100" in back.message
    assert timer_migration_rule(_conn([]), 4.0).status == "fail"
    assert timer_migration_rule(None, 4.0).status == "skip"


class SlowUpdater:
    """An updater whose answers the test releases; ``retry.timeout`` as the real one's."""

    class retry:  # noqa: N801 - the attribute the binding process reads
        timeout = 0.05

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.gates: list[asyncio.Event] = []

    async def update(self, a, aaaa):
        gate = asyncio.Event()
        self.sent.append((tuple(a), tuple(aaaa)))
        self.gates.append(gate)
        await gate.wait()

        class Res:
            def to_dict(self):
                return {"rcode": "NOERROR", "ok": True}

        return Res()


def test_dns_updates_run_in_order_beside_the_actions_and_a_stuck_one_is_superseded(tmp_path):
    log = tmp_path / "actions.jsonl"

    async def scenario():
        up = SlowUpdater()
        q = LocationUpdates(up, str(log))
        q.submit(Action("location", a=("192.0.2.100",)), {"op": "location"})
        q.submit(Action("location", a=("192.0.2.100",), aaaa=("2001:db8:a1::5",)), {"op": "location"})
        await asyncio.sleep(0)  # (let the first start)
        assert up.sent == [(("192.0.2.100",), ())]  # the second waits for the first's answer
        up.gates[0].set()
        await asyncio.sleep(0.01)
        assert len(up.sent) == 2
        up.gates[1].set()
        await asyncio.sleep(0.01)
        q.submit(Action("location"), {"op": "location"})  # a withdrawal nobody answers
        await asyncio.sleep(0.1)  # past its first attempt's timeout
        q.submit(Action("location", a=("198.51.100.100",)), {"op": "location"})
        await asyncio.sleep(0.01)
        assert up.sent[-1] == (("198.51.100.100",), ())  # sent at once, not after the stuck one
        up.gates[-1].set()
        await q.drain()

    asyncio.run(scenario())
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r.get("superseded", False) for r in rows] == [False, False, True, False]


def test_the_binding_status_counts_an_event_seen_once_its_updates_are_answered(tmp_path):
    settled = []

    async def scenario():
        up = SlowUpdater()
        q = LocationUpdates(up, str(tmp_path / "a.jsonl"), on_settled=lambda: settled.append(q.seen(9)))
        q.submit(Action("location", a=("198.51.100.100",), cause=7), {"op": "location"})
        await asyncio.sleep(0)
        assert q.seen(9) == 6  # event 7's update is under way: 6 is the last done with
        up.gates[0].set()
        await q.drain()
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert settled == [9]  # answered: the status is refreshed at once, not at the next event
