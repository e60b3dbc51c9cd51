"""``testbed run --inventory INVENTORY SCENARIO``: a scenario on deployed hosts, judged as a lab run.

The controller reaches the hosts as ``testbed deploy`` does (the inventory, SSH, ansible-runner)
and plays the scenario's steps with the action playbooks: ``capture.yml`` (tcpdump on every
captured link, started before the first step; stopped and fetched after the last, with the
mobile node's event logs), ``traffic.yml`` (the correspondent's SCTP server and the MN's client,
driven by the binding process the deploy started) and ``move.yml`` (the MN's radio: its access
interfaces up and down, ``testbed.mobility.radio``). ``wait`` steps dwell on the controller; a
playbook's own time adds to them, never shortens them.

Before anything starts, every host's clock is measured against the controller's
(``testbed.deploy.clock``); offsets larger than their uncertainty are taken out of the fetched
pcaps and events, and all of it goes into the verdict's ``lab.clocks``. The output directory is a
lab run's: ``pcaps/``, ``events.jsonl``, ``traffic.json``, ``verdict.json`` (the same checker,
the scenario's rules, transport and expectations) and ``report.html``; beside them ``hosts/``
(the MN's logs as fetched) and ``ansible/`` (the runner's record of every playbook).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from testbed.deploy import ansible, clock, inventory
from testbed.deploy.render import LAYOUT, correspondent_of
from testbed.errors import ConfigError, TestbedError
from testbed.model import addressing, loader
from testbed.progress import Progress, quiet
from testbed.scenario.model import Move, PingPong, Scenario, Traffic, TrafficStep, Wait
from testbed.scenario.runner import MOVEMENT_EVENTS, EventLog, RunResult, ladder_roles
from testbed.scenario.traffic import log_server

STEPS = (Move, PingPong, Wait, TrafficStep)  # what a deployed run plays; the rest need a lab's hands


class HostRun:
    def __init__(self, scenario: Scenario, inv: Path, out: Path, progress: Progress = quiet,
                 max_clock_error: float = clock.MAX_ERROR) -> None:
        self.sc, self.inv, self.out, self.progress = scenario, inv.resolve(), out.resolve(), progress
        self.max_clock_error = max_clock_error
        data = inventory.load(inv)
        all_vars = data["all"]["vars"]
        self.hosts = {n: {**all_vars, **hv} for n, hv in inventory.hosts(data).items()}
        self.topo = loader.from_dict(all_vars["testbed_topology"], f"{inv}: all.vars.testbed_topology")
        self.plan = addressing.plan(self.topo)
        self.mn = self.topo.mobile.node
        src = f"scenario {scenario.name}"
        if scenario.uses_traffic and scenario.transport == "quic":  # before any other mismatch
            n = next(i for i, st in enumerate(scenario.steps) if isinstance(st, TrafficStep))
            raise ConfigError(src, f"steps.{n}", "QUIC traffic is not played on inventory hosts (the "
                              "roles deploy no QUIC stack, and the mobile node's routing by source "
                              "address is the lab agent's)", "run the scenario on a lab: testbed run "
                              f"{scenario.name}")
        wanted = loader.load(scenario.topology).name
        if self.topo.name != wanted:
            raise ConfigError(str(inv), "all.vars.testbed_topology", f"the hosts run topology "
                              f"{self.topo.name!r}, scenario {scenario.name} wants {wanted!r}",
                              f"deploy {wanted} (testbed inventory {wanted}; testbed deploy)")
        traced = [f"networks.{ar}" for ar in scenario.networks] + [
            f"{self.topo.name}: access_networks.{i}.replay" for i, a in enumerate(self.topo.access_networks)
            if a.replay is not None]
        if traced:  # the replayers are lab daemons: nothing plays a trace on deployed hosts yet
            raise ConfigError(src, traced[0], "the trace replay step needs a lab (deployed hosts play "
                              "move, ping_pong, wait and traffic; no replayer is deployed)",
                              "run it on a lab, or drop the trace")
        if scenario.policy is not None and scenario.policy != self.topo.mobile.policy:
            raise ConfigError(src, "policy", "the deployed binding process runs the topology's "
                              "mobile.policy, and a run does not restart it on the hosts",
                              "set mobile.policy in the topology and deploy again, or drop policy")
        for n, step in enumerate(scenario.steps):
            if not isinstance(step, STEPS):
                raise ConfigError(src, f"steps.{n}", f"a {step.kind} step needs a lab (deployed hosts "
                                  "play move, ping_pong, wait and traffic)", "run it on a lab")
            if isinstance(step, Move) and step.mobiles not in ("all", [self.mn], (self.mn,)):
                raise ConfigError(src, f"steps.{n}.mobiles", f"the hosts have one mobile node, {self.mn}",
                                  "drop mobiles")
        self.params = scenario.traffic or Traffic()
        self.cn = None
        if scenario.uses_traffic:
            if self.params.transport != "sctp":
                raise ConfigError(src, "traffic.transport", f"{self.params.transport} traffic is not "
                                  "deployed (the correspondent role runs the SCTP server)", "use sctp")
            self.cn = correspondent_of(self.topo)
            if self.params.peer not in (None, self.cn):
                raise ConfigError(src, "traffic.peer", f"the deployed correspondent is {self.cn}",
                                  f"drop traffic.peer or set it to {self.cn}")
        self.run_id = f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.log = EventLog(self.out / "events.jsonl")
        self.attached = list(self.topo.mobile.attached)
        self.traffic_on = False
        self.traffic_res: dict[str, Any] | None = None
        self.clocks: dict[str, clock.Offset] = {}
        self.playbooks: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- playbooks
    def playbook(self, name: str, **extravars: Any) -> ansible.PlaybookResult:
        extravars = {"testbed_run": self.run_id, "testbed_fetch": str(self.out), **extravars}
        r = ansible.run_playbook(name, self.inv, self.out / "ansible", extravars=extravars,
                                 progress=lambda line: self.progress(f"{name}: {line}"),
                                 hosts=sorted(self.hosts))
        self.playbooks.append({"playbook": name, "seconds": round(r.seconds, 2), "ok": r.ok})
        if not r.ok:
            raise ansible.DeployError(f"{name} failed: " + "; ".join(r.errors()) + f" (see {r.artifacts})")
        return r

    # ---------------------------------------------------------------- steps
    def access_if(self, ar: str) -> str:
        return self.plan.access_iface(ar)[0].ifname

    def move(self, m: Move) -> None:
        if m.to not in [a.router for a in self.topo.access_networks]:
            raise TestbedError(f"move to {m.to!r}: not an access router of {self.topo.name}")
        acc = next(a for a in self.topo.access_networks if a.router == m.to)
        argv = [LAYOUT.python, "-m", "testbed.mobility.radio", "move", "--attach", self.access_if(m.to),
                "--mode", m.mode, "--overlap", f"{m.overlap:g}", "--gap", f"{m.gap:g}",
                "--agent", str(LAYOUT.agent_socket), "--timeout", f"{m.timeout:g}",
                "--families", ",".join(map(str, acc.families))]
        for a in self.topo.access_networks:
            if a.router != m.to:
                argv += ["--detach", self.access_if(a.router)]
        self.progress(f"move to {m.to} ({m.mode})")
        self.log.step("move", to=m.to, mode=m.mode, overlap=m.overlap, gap=m.gap)
        r = self.playbook("move.yml", testbed_move_cmd=shlex.join(argv))
        times = _last_json(r.outputs.get(self.mn)) or {}
        self.attached = [m.to]
        self.log.step("moved", to=m.to, **{f"{k}_s": v for k, v in times.items() if k != "changed"})

    def ping_pong(self, p: PingPong) -> None:
        for target in p.targets(self.attached):
            self.move(Move(to=target, mode=p.mode, overlap=p.overlap, gap=p.gap))
            self.wait(Wait(seconds=p.dwell))

    def wait(self, w: Wait) -> None:
        self.log.step("wait", seconds=w.seconds)
        time.sleep(w.seconds)  # the scenario's own dwell, not a wait for an event

    def traffic(self, t: TrafficStep) -> None:
        self.progress(f"traffic {t.action}")
        self.log.step("traffic", action=t.action)
        extravars: dict[str, Any] = {"testbed_traffic_action": t.action,
                                     "testbed_traffic": self.params.model_dump(mode="json")}
        if t.action == "start":
            here = next(a for a in self.topo.access_networks if a.router == self.attached[0])
            nets = {4: here.ipv4, 6: here.ipv6}
            argv = [LAYOUT.python, "-m", "testbed.mobility.radio", "address", "--ifname",
                    self.access_if(here.router)]
            for f in self.params.families:
                if nets[f] is None:
                    raise TestbedError(f"traffic.families: {here.router}'s network has no IPv{f}")
                argv += ["--network", str(nets[f])]
            extravars["testbed_address_cmd"] = shlex.join(argv)
            self.traffic_on = True
        r = self.playbook("traffic.yml", **extravars)
        if t.action == "stop":
            self.traffic_on = False
            self.traffic_res = {"server": _last_json(r.outputs.get(self.cn or "")),
                                "client": _last_json(r.outputs.get(self.mn))}

    def play(self) -> None:
        handlers = {Move: self.move, PingPong: self.ping_pong, Wait: self.wait, TrafficStep: self.traffic}
        for rep in range(self.sc.repeat):
            self.log.step("repeat", index=rep)
            for step in self.sc.steps:
                handlers[type(step)](step)

    # ---------------------------------------------------------------- the run
    def run(self) -> RunResult:
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress("clocks")
        self.clocks = clock.measure_all(self.hosts, self.max_clock_error)
        for o in self.clocks.values():
            self.log.add({"event": "clock", **o.to_dict()})
        self.progress("capturing every link")
        began = time.time()
        self.playbook("capture.yml", testbed_capture_action="start")
        failure: BaseException | None = None
        try:
            self.log.step("start", scenario=self.sc.name, seed=self.sc.seed, lab=str(self.inv))
            self.play()
            self.log.step("end")
        except BaseException as e:
            failure = e
            raise
        finally:
            try:
                if self.traffic_on:
                    self.traffic(TrafficStep(action="stop"))
            except TestbedError as e:  # reported with the results, not instead of them
                self.log.add({"event": "traffic", "op": "stop_failed", "error": str(e)})
            try:
                r = self.playbook("capture.yml", testbed_capture_action="stop",
                                  testbed_logs_cmd=shlex.join(self.logs_argv(began)))
                self.save_logs(_last_json(r.outputs.get(self.mn)) or {})
            except TestbedError as e:
                self.log.add({"event": "capture", "op": "stop_failed", "error": str(e)})
                if failure is None:
                    failure = e
                    raise
            finally:
                self.collect(began)
                self.log.write()
        return self.judge()

    def logs_argv(self, began: float) -> list[str]:
        """The MN's records since the run began (on its clock, a second early: the controller
        keeps what is this run's once the times are corrected)."""
        off = self.clocks[self.mn].offset_s if self.mn in self.clocks else 0.0
        return [LAYOUT.python, "-m", "testbed.host.jsonlines", "since", "--wall", f"{began + off - 1.0:.6f}",
                str(LAYOUT.agent_events), str(LAYOUT.location_log), str(LAYOUT.binding_actions)]

    def save_logs(self, logs: dict[str, Any]) -> None:
        d = self.out / "hosts" / self.mn
        d.mkdir(parents=True, exist_ok=True)
        for name, records in logs.items():
            (d / name).write_text("".join(json.dumps(r) + "\n" for r in records))

    def host_of_link(self) -> dict[str, str]:
        return {link: h for h, hv in self.hosts.items() for link in hv.get("testbed_capture") or []}

    def collect(self, began: float) -> None:
        """The fetched pcaps and records, on the controller's clock; only this run's records
        (the MN's logs are appended across runs)."""
        owner = self.host_of_link()
        for pcap in sorted((self.out / "pcaps").glob("*.pcap")):
            host = owner.get(pcap.stem)
            off = self.clocks.get(host) if host else None
            if off is not None and off.correction:
                clock.shift_pcap(pcap, off.correction)
        mn_fix = self.clocks[self.mn].correction if self.mn in self.clocks else 0.0
        logs = self.out / "hosts" / self.mn
        for name in ("agent-events.jsonl", "location.jsonl", "binding-actions.jsonl"):
            for r in _records(logs / name):
                if not isinstance(r.get("wall"), int | float) or r["wall"] + mn_fix < began:
                    continue
                r["wall"] += mn_fix
                r.pop("mono", None)  # the host's monotonic clock means nothing here
                if name == "agent-events.jsonl":
                    r = {"event": r.pop("kind", "agent"), **r}
                self.log.add(r)
        if self.traffic_res is not None:
            res = self.traffic_res
            cn_fix = self.clocks[self.cn].correction if self.cn in self.clocks else 0.0
            for sw in (res["server"] or {}).get("source_switches") or []:
                if isinstance(sw.get("t"), int | float):
                    sw["t"] += cn_fix
            (self.out / "traffic.json").write_text(json.dumps(res, indent=1))
            log_server(self.log, res["server"] or {})

    def judge(self) -> RunResult:
        from testbed.conformance.checker import check
        from testbed.report.html import render_report

        self.progress("checking the captures")
        key = self.topo.nodes[self.mn].sctp.auth_key
        events = [r for r in self.log.records if r.get("event") in MOVEMENT_EVENTS]
        verdict = check(self.out / "pcaps", rules=self.sc.rules, events=events,
                        budgets=self.sc.budgets or None, mn_name=self.topo.dns_name(self.mn),
                        lab=self.lab_block(), auth_keys={0: bytes.fromhex(key)} if key else {},
                        transport=self.sc.transport if self.sc.uses_traffic else None)
        if self.sc.expect:
            verdict = verdict.expecting(dict(self.sc.expect), f"scenario {self.sc.name}")
        verdict.write(self.out / "verdict.json")
        render_report(self.out, ladder_roles(self.topo, self.plan, self.sc, self.cn),
                      f"{self.sc.name} on the hosts of {self.inv.name}", budgets=self.sc.budgets or None,
                      verdict=verdict)
        return RunResult(self.out, verdict, str(self.inv))

    def lab_block(self) -> dict[str, Any]:
        """verdict.json's ``lab``: the hosts (inventory, addresses), their clocks, the playbooks."""
        return {"name": self.inv.name, "inventory": str(self.inv), "topology": self.topo.name,
                "machine": "deployed", "backend": "ssh", "scenario": self.sc.name, "seed": self.sc.seed,
                "hosts": {n: str(hv.get("ansible_host") or n) for n, hv in sorted(self.hosts.items())},
                "clocks": {"reference": "controller", "max_error_s": self.max_clock_error,
                           "hosts": {n: o.to_dict() for n, o in sorted(self.clocks.items())}},
                "playbooks": self.playbooks}


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a torn last line (the writer was mid-append when fetched)
        if isinstance(r, dict):
            out.append(r)
    return out


def _last_json(outputs: list[str] | None) -> Any:
    """The last JSON line of the last "result:" task's stdout (a raw command's output comes
    through a terminal: CR LF line ends, stderr mixed in); None when it printed none."""
    for line in reversed((outputs or [""])[-1].replace("\r", "").splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def run(scenario: Scenario, inv: Path, out: Path, progress: Progress = quiet,
        max_clock_error: float = clock.MAX_ERROR) -> RunResult:
    return HostRun(scenario, inv, out, progress, max_clock_error).run()
