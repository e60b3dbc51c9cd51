"""``testbed run --inventory``'s pure parts: clock offsets and their correction, pcap timestamps
moved, the deployed target's refusals and version check before anything runs, the action
playbooks' renderings."""

from __future__ import annotations

import json
import struct

import pytest
import yaml

from testbed.deploy import ansible, clock, inventory, package, render, version
from testbed.deploy.target import HostTarget, last_json
from testbed.errors import ConfigError
from testbed.model import loader
from testbed.scenario import model
from testbed.scenario.runner import Runner
from testbed.scenario.target import Target


def _pcap(path, stamps, endian="<", nano=False):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for sec, frac in stamps:
        out += struct.pack(endian + "IIII", sec, frac, 4, 4) + b"\0\0\0\0"
    path.write_bytes(out)


def _stamps(path, endian="<"):
    data = path.read_bytes()
    pos, out = 24, []
    while pos < len(data):
        sec, frac, incl, _ = struct.unpack_from(endian + "IIII", data, pos)
        out.append((sec, frac))
        pos += 16 + incl
    return out


@pytest.mark.parametrize("endian", ["<", ">"])
def test_shift_pcap_moves_every_timestamp_across_second_boundaries(tmp_path, endian):
    p = tmp_path / "a.pcap"
    _pcap(p, [(100, 999_900), (101, 50)], endian)
    assert clock.shift_pcap(p, 0.0002) == 2
    assert _stamps(p, endian) == [(101, 100), (101, 250)]
    assert clock.shift_pcap(p, -1.0) == 2
    assert _stamps(p, endian) == [(100, 100), (100, 250)]


def test_shift_pcap_keeps_nanoseconds_and_refuses_pcapng(tmp_path):
    p = tmp_path / "n.pcap"
    _pcap(p, [(5, 999_999_999)], nano=True)
    clock.shift_pcap(p, 1e-9)
    assert _stamps(p) == [(6, 0)]
    ng = tmp_path / "x.pcapng"
    ng.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(28))
    with pytest.raises(clock.ClockError, match="not a libpcap file"):
        clock.shift_pcap(ng, 1.0)


def test_an_offset_is_corrected_only_beyond_its_uncertainty():
    assert clock.Offset("a", 0.0003, 0.0005, 8).correction == 0.0
    far = clock.Offset("b", 0.25, 0.001, 8)
    assert far.corrected and far.correction == -0.25
    assert far.to_dict() == {"host": "b", "offset_s": 0.25, "uncertainty_s": 0.001, "samples": 8,
                             "corrected": True}


def test_a_host_known_too_roughly_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(clock, "measure", lambda n, hv: clock.Offset(n, 0.0, 0.5 if n == "far" else 0.001, 8))
    with pytest.raises(clock.ClockError, match=r"^far: clock offset .* ±500.0 ms \(max ±20 ms\)"):
        clock.measure_all({"near": {}, "far": {}})


def test_clock_reads_over_ssh_as_ansible_would_connect():
    argv = clock.ssh_argv("mn", {"ansible_host": "198.51.100.7", "ansible_user": "root", "ansible_port": 2222,
                                 "ansible_ssh_private_key_file": "/k/id",
                                 "ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new"})
    assert argv[-1] == "root@198.51.100.7"
    assert argv[argv.index("-p"):argv.index("-p") + 2] == ["-p", "2222"]
    assert "-i" in argv and "StrictHostKeyChecking=accept-new" in argv


def test_clock_measure_against_a_local_echo(monkeypatch):
    """The echo program the host runs, run here: an offset near zero, known to a round trip."""
    import sys

    monkeypatch.setattr(clock, "ssh_argv", lambda n, hv: ["sh", "-c"])  # the command, as ssh runs it
    o = clock.measure("self", {"ansible_python_interpreter": sys.executable}, samples=4)
    assert abs(o.offset_s) <= o.uncertainty_s + 0.001 and o.samples == 4


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "inventory.yml"
    inventory.write(inventory.build(loader.load("two-ar-sctp")), path)
    return path


def _scenario(**kw):
    base = {"name": "t", "topology": "two-ar-sctp", "steps": [{"traffic": "start"}, {"wait": 1},
                                                              {"traffic": "stop"}]}
    return model.Scenario.model_validate({**base, **kw})


def test_a_step_deployed_hosts_cannot_play_is_refused_before_anything_runs(inv, tmp_path):
    sc = _scenario(steps=[{"move": {"to": "ar2"}}, {"fault": {"kill": "agent"}}])
    with pytest.raises(ConfigError, match=r"scenario t: steps\.1: a fault step is not played on deployed"):
        Runner(sc, HostTarget(inv), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_scenario_of_another_topology_is_refused(inv, tmp_path):
    with pytest.raises(ConfigError, match="all.vars.testbed_topology: the hosts run topology 'two-ar-sctp'"):
        Runner(_scenario(topology="two-ar"), HostTarget(inv), tmp_path / "out")


def test_a_peer_other_than_the_deployed_correspondent_is_refused(inv, tmp_path):
    with pytest.raises(ConfigError, match="traffic.peer: the deployed correspondent is cn"):
        Runner(_scenario(traffic={"peer": "dns"}), HostTarget(inv), tmp_path / "out")


def test_the_default_handover_is_playable_on_the_one_runner(inv, tmp_path):
    t = HostTarget(inv)
    assert isinstance(t, Target)
    r = Runner(model.load("trash-handover"), t, tmp_path / "out")
    assert r.traffic is not None and r.traffic.cn == "cn" and t.attached("mn") == ["ar1"]
    assert t.host_of_link()["ar2-mn"] == "ar2" and t.host_of_link()["core-cn"] == "core"
    assert t.packaged == ["cn", "mn"]


def test_a_host_of_another_version_is_named_and_nothing_runs(inv, tmp_path, monkeypatch):
    """One line naming the host and both versions; no playbook (capture, traffic) ever ran."""
    want = package.version()
    monkeypatch.setattr(version, "read", lambda n, hv: "0.0.9+0123456789ab" if n == "mn" else want)
    ran: list[str] = []
    monkeypatch.setattr(ansible, "run_playbook", lambda name, *a, **kw: ran.append(name))
    monkeypatch.setattr(clock, "measure_all", lambda *a, **kw: ran.append("clocks") or {})
    r = Runner(model.load("trash-handover"), HostTarget(inv), tmp_path / "out")
    with pytest.raises(version.VersionError) as e:
        r.run()
    assert str(e.value) == (f"mn: deployed testbed 0.0.9+0123456789ab, the controller's {want}: deploy "
                            f"again (testbed deploy {inv.resolve()})")
    assert ran == []


def test_a_deployed_version_is_read_as_the_deploy_recorded_it():
    init = '"""doc"""\n\n__version__ = "0.1.0"\n'
    assert package.deployed_version("ab" * 32 + "\n", init) == "0.1.0+" + "ab" * 6
    assert package.version().startswith("0.1.0+") and len(package.version()) == len("0.1.0+") + 12


def test_capture_logs_are_per_run_so_an_old_listening_on_does_not_count(tmp_path):
    data = loader.load("two-ar-sctp").model_dump(mode="json")
    one, two = render.capture(data, "ar1", "run1"), render.capture(data, "ar1", "run2")
    assert one["daemons"][0]["log"] != two["daemons"][0]["log"]
    assert one["daemons"][0]["log"] in " ".join(one["daemons"][0]["ready"])


def test_a_runs_traffic_has_its_own_stats_and_the_families_addresses():
    data = loader.load("two-ar-sctp").model_dump(mode="json")
    srv = render.correspondent(data, "cn", {"families": [4, 6]}, "r1")
    argv = srv["daemons"][0]["argv"]
    assert srv["stats"].endswith("/traffic/r1/server.json")
    assert argv[argv.index("--bind") + 1].count(",") == 1  # an IPv4 and an IPv6 address
    cli = render.traffic_client(data, "192.0.2.100", {}, "r1")
    assert cli["stats"].endswith("/traffic/r1/client.json")
    assert "--control" in cli["daemon"]["argv"]


def test_result_tasks_outputs_are_kept_per_host():
    ev = ansible.Events(["mn"], lambda _: None)
    ev({"event": "playbook_on_task_start", "event_data": {"task": "result: the move's phase times"}})
    ev({"event": "runner_on_ok", "event_data": {"host": "mn", "res": {"changed": True,
                                                                     "stdout": '{"configured": 0.2}'}}})
    assert ev.outputs == {"mn": ['{"configured": 0.2}']}


def test_inventory_refuses_what_the_roles_do_not_deploy():
    with pytest.raises(ConfigError, match=r"access_networks\[0\]\.dhcpv6: the playbooks do not deploy"):
        inventory.build(loader.load("two-ar-dhcpv6"))
    assert yaml.safe_dump(inventory.build(loader.load("two-ar-sctp")))


def test_daemonctl_starts_once_ready_and_stops_the_session(tmp_path, monkeypatch):
    import sys

    from testbed.host import daemonctl

    monkeypatch.setattr(daemonctl, "RUN_DIR", tmp_path / "run")
    flag = tmp_path / "up"
    spec = {"name": "sleeper", "argv": ["sh", "-c", f"touch {flag}; exec sleep 30"], "env": {},
            "log": str(tmp_path / "logs" / "sleeper.log"), "ready": ["test", "-e", str(flag)],
            "ready_timeout": 10}
    out = daemonctl.start(spec)
    assert flag.exists() and daemonctl.pid_of("sleeper") == out["pid"]
    assert daemonctl.stop("sleeper", grace=2.0) == {"name": "sleeper", "stopped": True}
    assert not daemonctl.alive(out["pid"])
    quits = [sys.executable, "-c", "print('no config'); raise SystemExit(3)"]
    bad = {**spec, "name": "quitter", "argv": quits, "ready": ["false"]}
    with pytest.raises(SystemExit, match="quitter exited during start-up: no config"):
        daemonctl.start(bad)


def test_daemonctl_says_why_the_ready_probe_refused(tmp_path, monkeypatch):
    """A daemon that answers, but not as the probe wants (another protocol version), is named
    by the probe's own last line, not only by the time that ran out."""
    from testbed.host import daemonctl

    monkeypatch.setattr(daemonctl, "RUN_DIR", tmp_path)
    probe = ["sh", "-c", "echo starting >&2; echo 'binding driver at b.sock: protocol version 2' >&2; exit 1"]
    spec = {"name": "old", "argv": ["sleep", "30"], "log": str(tmp_path / "old.log"), "ready": probe,
            "ready_timeout": 0.3}
    with pytest.raises(SystemExit) as e:
        daemonctl.start(spec)
    assert str(e.value).startswith("old did not answer within 0.3 s (ready probe: binding driver at "
                                   "b.sock: protocol version 2)")


def test_daemonctl_stop_lets_a_daemon_end_by_itself_first(tmp_path, monkeypatch):
    from testbed.host import daemonctl

    monkeypatch.setattr(daemonctl, "RUN_DIR", tmp_path)
    daemonctl.start({"name": "brief", "argv": ["sleep", "0.2"], "log": str(tmp_path / "b.log")})
    assert daemonctl.stop("brief", wait=5.0) == {"name": "brief", "stopped": False, "ended": True}


def test_a_raw_commands_output_gives_its_last_json_line():
    assert last_json(['{"a": 1}\r\n{"configured": 0.1}\r\n']) == {"configured": 0.1}
    assert last_json(["Traceback ...\r\n"]) is None and last_json(None) is None


def test_jsonlines_since_keeps_a_runs_share_of_each_log(tmp_path, capsys):
    from testbed.host import jsonlines

    log = tmp_path / "agent-events.jsonl"
    jsonlines.write(log, [{"kind": "old", "wall": 10.0}, {"kind": "new", "wall": 20.0}, {"kind": "none"}])
    assert jsonlines.main(["since", "--wall", "15", str(log), str(tmp_path / "missing.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out) == {"agent-events.jsonl": [{"kind": "new", "wall": 20.0}],
                                                   "missing.jsonl": []}
