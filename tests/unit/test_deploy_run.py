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
    sc = _scenario(steps=[{"move": {"to": "ar2"}}, {"listen": {"node": "cn"}}])
    with pytest.raises(ConfigError, match=r"scenario t: steps\.1: a listen step from host cn: not in the "
                                          r"inventory's attackers group"):
        Runner(sc, HostTarget(inv), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_attacks_come_from_the_attackers_group_and_keep_the_mns_key_on_the_mn(tmp_path):
    inv = tmp_path / "sec.yml"
    data = inventory.build(loader.load("two-ar-sec"))
    assert set(data["all"]["children"]["attackers"]["hosts"]) == {"atk", "imp"}
    inventory.write(data, inv)
    ok = model.load("stale-dns")
    assert Runner(ok, HostTarget(inv), tmp_path / "a").attacks.python == render.LAYOUT.python
    with pytest.raises(ConfigError, match=r"steps\.\d+: a forge_update step from host atk: the MN's private "
                                          r"key never leaves the MN"):
        Runner(model.load("forged-update"), HostTarget(inv), tmp_path / "b")


@pytest.mark.parametrize(("fault", "said"), [
    ({"kill": "node", "node": "cn"}, "a kill.node.cn fault on host cn: its kernel cannot be killed"),
    ({"vanish": "ar2"}, "a vanish.ar2 fault on host ar2: an access router cannot be made to vanish"),
    ({"kill": "binding"}, "a kill.binding fault on host mn: the deploy runs no binding there "
                          "(dhcpcd, agent)"),
])
def test_a_fault_a_host_cannot_take_names_the_host_the_step_and_why(tmp_path, fault, said):
    inv = tmp_path / "sec.yml"
    inventory.write(inventory.build(loader.load("two-ar-sec")), inv)
    sc = model.Scenario.model_validate({"name": "t", "topology": "two-ar-sec",
                                        "steps": [{"wait": 1}, {"fault": fault}]})
    with pytest.raises(ConfigError) as e:
        Runner(sc, HostTarget(inv), tmp_path / "out")
    assert str(e.value).startswith(f"scenario t: steps.1: {said}"), str(e.value)


def test_faults_a_host_can_take_are_played_there(inv, tmp_path):
    sc = _scenario(steps=[{"fault": {"kill": "named"}}, {"fault": {"kill": "dhcpd", "node": "ar2"}},
                          {"fault": {"flap": "ar1"}}])
    r = Runner(sc, HostTarget(inv), tmp_path / "out")
    assert set(r.steps) >= {model.Fault, model.Move}


def test_a_scenario_of_another_topology_is_refused(inv, tmp_path):
    with pytest.raises(ConfigError, match="all.vars.testbed_topology: the hosts run topology 'two-ar-sctp'"):
        Runner(_scenario(topology="two-ar"), HostTarget(inv), tmp_path / "out")


def test_a_quic_scenario_is_refused_naming_its_traffic_step(inv, tmp_path):
    with pytest.raises(ConfigError, match=r"scenario quic-handover: steps\.1: QUIC traffic is not played on "
                       r"inventory hosts .*\(run the scenario on a lab: testbed run quic-handover\)"):
        Runner(model.load("quic-handover"), HostTarget(inv), tmp_path / "out")


def test_an_attach_step_is_the_mns_radio_joining_one_more_network(inv, tmp_path, monkeypatch):
    t = HostTarget(inv)
    ran = []
    monkeypatch.setattr(t, "playbook", lambda name, limit=None, **kw: ran.append((name, limit, kw)))
    t.join("mn", "ar2", 20.0)
    (name, limit, kw), = ran
    assert name == "move.yml" and limit == ["mn"] and "--detach" not in kw["testbed_move_cmd"]
    assert "--attach mn-ar2" in kw["testbed_move_cmd"] and t.attached("mn") == ["ar1", "ar2"]


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


TOPOLOGIES = sorted(p.stem for p in (loader.TOPOLOGY_DIR).glob("*.yaml"))


def _render_all(name):
    """Every host's roles as the playbooks render them (what site.yml asks of each group)."""
    topo = loader.load(name)
    inv = inventory.build(topo)
    data = inv["all"]["vars"]["testbed_topology"]
    out = {}
    for group, g in inv["all"]["children"].items():
        for host in g["hosts"]:
            r = {"network": render.network(data, host)}
            if group == "dns_servers":
                r["dns"] = render.dns_server(data, [])
            elif group == "access_routers":
                r["ar"] = render.access_router(data, host)
            elif group == "mobile_nodes":
                r["mn"] = render.mobile_node(data, "/k", node=host)
            elif group == "correspondents":
                r["cn"] = render.correspondent(data, host)
            out[host] = r
    return topo, inv, out


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_every_shipped_topology_is_deployable(name):
    topo, inv, out = _render_all(name)
    assert set(out) == set(topo.nodes)
    assert yaml.safe_dump(inv)


def test_the_roles_deploy_what_the_lab_builds():
    """DHCPv6, NAT, ingress filters, shaping, single-family networks, MPTCP: the lab's own
    renderers and rules, on the hosts' paths."""
    from testbed.lab import middlebox

    _, _, out = _render_all("two-ar-dhcpv6")
    ar2 = out["ar2"]["ar"]
    assert [d["name"] for d in ar2["daemons"]] == ["radvd", "dhcpd", "dhcpd6"]
    conf6 = next(f["content"] for f in ar2["files"] if f["path"].endswith("dhcpd6.conf"))
    assert "range6 " in conf6 and "dhcpd6.conf" in " ".join(ar2["daemons"][2]["argv"])
    mn_conf = out["mn"]["mn"]["files"][0]["content"]
    assert "ipv6" in mn_conf.lower() and "-4" not in out["mn"]["mn"]["daemons"][0]["argv"]

    topo, _, out = _render_all("two-ar-nat-sctp")
    nat = next(a for a in topo.access_networks if a.nat)
    nat_ar = nat.router
    assert out[nat_ar]["network"]["nft"] == middlebox.rules_for(nat)
    assert "masquerade" in out[nat_ar]["network"]["nft"] and "nftables" in out[nat_ar]["network"]["packages"]

    _, _, out = _render_all("two-ar-bcp38")
    assert any("fib saddr . iif" in h["network"]["nft"] for h in out.values())

    _, _, out = _render_all("three-ar-sctp")
    shaped = {s["ifname"]: s for h in out.values() for s in h["network"]["shaping"]}
    assert shaped and all(s["netem"][:3] == ["tc", "qdisc", "replace"] for s in shaped.values())

    topo, _, out = _render_all("two-ar-v4v6-sctp")
    for a in topo.access_networks:
        names = [d["name"] for d in out[a.router]["ar"]["daemons"]]
        assert ("radvd" in names) == (a.ipv6 is not None) and ("dhcpd" in names) == (a.ipv4 is not None)

    topo, inv, out = _render_all("two-ar-mptcp")
    assert inv["all"]["children"]["correspondents"]["hosts"] == {"cn": inv["all"]["children"][
        "correspondents"]["hosts"]["cn"]}
    assert [d["name"] for d in out["mn"]["mn"]["daemons"]] == ["dhcpcd", "agent", "binding"]
    assert out["mn"]["network"]["mptcp"] == {"subflows": 8, "add_addr_accepted": 0}
    assert out["mn"]["network"]["sysctls"]["net.mptcp.enabled"] == "1"
    srv = out["cn"]["cn"]["daemons"][0]["argv"]
    assert srv[2:4] == ["testbed.traffic.stream", "server"] and "mptcp" in srv
    data = inv["all"]["vars"]["testbed_topology"]
    cli = render.traffic_client(data, "192.0.2.100", {"transport": "mptcp"})
    assert cli["setup"].startswith("sysctl -qw net.mptcp.pm_type=1") and "--control" in cli["daemon"]["argv"]


def test_router_discovery_runs_the_labs_advertiser_where_the_package_is_deployed():
    data = loader.load("two-ar-sctp").model_dump(mode="json")
    data["access_networks"][1]["router_discovery"] = 2.0
    topo = loader.from_dict(data, "t")
    ar2 = render.access_router(data, "ar2")
    irdp = next(d for d in ar2["daemons"] if d["name"] == "irdp")
    assert irdp["argv"][:3] == [render.LAYOUT.python, "-m", "testbed.services.irdp"]
    assert irdp["argv"][irdp["argv"].index("--address") + 1] == "198.51.100.1"
    assert render.needs_package(topo, "ar2") and not render.needs_package(topo, "ar1")
    inv = inventory.build(topo)
    assert inv["all"]["children"]["access_routers"]["hosts"]["ar2"]["testbed_package"] is True
    assert "--rdisc" in " ".join(render.mobile_node(data, "/k")["daemons"][1]["argv"])


def test_several_mobile_nodes_each_get_a_mobile_nodes_network_and_daemons():
    topo, inv, out = _render_all("many-mn-3")
    assert topo.mobiles == ["mn1", "mn2", "mn3"]
    assert set(inv["all"]["children"]["mobile_nodes"]["hosts"]) == {"mn1", "mn2", "mn3"}
    for mn in topo.mobiles:
        net = out[mn]["network"]
        assert net["attach"] == [f"{mn}-ar1"] and net["down"] == [f"{mn}-ar2"], (mn, net)
        assert net["sysctls"][f"net.ipv6.conf.{mn}-ar2.accept_ra"] == "2"
        assert net["sysctls"]["net.ipv6.conf.all.keep_addr_on_down"] == "0"
        assert out[mn]["mn"]["sig0"]["name"] == f"{mn}.mobile.test"
    srv = out["cn"]["cn"]["daemons"][0]["argv"]
    assert srv[srv.index("--connections") + 1] == "3"
    # the access networks captured once each, on the routers' bridges, as a lab of several MNs does
    assert inv["all"]["children"]["access_routers"]["hosts"]["ar1"]["testbed_capture"] == ["ar1-lan"]


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


def _fake_hosts(monkeypatch, fail_at: str | None = None):
    """The controller's side of a deployed run with the playbooks answered here: each call
    recorded (name, its action), the one named ``fail_at`` interrupted as by a Ctrl-C."""
    calls: list[tuple[str, str]] = []

    def playbook(name, inventory, out, *, extravars=None, limit=None, progress=None, timeout=0, hosts=None):
        ev = extravars or {}
        action = ev.get("testbed_capture_action") or ev.get("testbed_traffic_action") or ""
        calls.append((name, action))
        if name == fail_at:
            raise KeyboardInterrupt
        outputs = {}
        if name == "move.yml":
            outputs = {"mn": ['{"changed": true, "configured": 0.2, "detached": 2.3}']}
        return ansible.PlaybookResult(name, "successful", 0, 0.1, outputs=outputs)

    monkeypatch.setattr(ansible, "run_playbook", playbook)
    monkeypatch.setattr(version, "check_all", lambda hosts, want, inv: dict.fromkeys(hosts, want))
    monkeypatch.setattr(clock, "measure_all", lambda hosts, err: {})
    return calls


def test_a_ctrl_c_on_deployed_hosts_stops_the_runs_traffic_and_captures(inv, tmp_path, monkeypatch):
    """What the run started on the hosts (its tcpdumps, traffic server and client) is stopped
    after an interrupt, traffic first, and nothing is judged."""
    calls = _fake_hosts(monkeypatch, fail_at="move.yml")
    r = Runner(model.load("trash-handover"), HostTarget(inv), tmp_path / "out", dwell=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        r.run()
    assert calls == [("capture.yml", "start"), ("move.yml", ""), ("capture.yml", "stop")]
    calls.clear()
    sc = model.Scenario.model_validate({"name": "t", "topology": "two-ar-sctp", "steps": [
        {"traffic": "start"}, {"move": {"to": "ar2"}}, {"traffic": "stop"}]})
    r = Runner(sc, HostTarget(inv), tmp_path / "out2", dwell=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        r.run()
    assert calls == [("capture.yml", "start"), ("traffic.yml", "start"), ("move.yml", ""),
                     ("traffic.yml", "stop"), ("capture.yml", "stop")]
    assert not (tmp_path / "out2" / "verdict.json").exists()
    assert any(x.get("step") == "interrupted" for x in r.log.records)
