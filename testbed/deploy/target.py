"""An inventory's deployed hosts as a scenario's target (``testbed run --inventory``).

The controller reaches the hosts as ``testbed deploy`` does (the inventory, SSH, ansible-runner)
and plays the steps with the action playbooks: ``capture.yml`` (tcpdump on every captured link,
started before the first step; stopped and fetched after the last, with the mobile nodes' event
logs), ``traffic.yml`` (the correspondent's server of the scenario's transport and each MN's
client, driven by the binding process the deploy started), ``move.yml`` (an MN's radio: its
access interfaces up and down, ``testbed.mobility.radio``) and ``command.yml`` (one command on
the host a step names: a request to an agent, its departure, the MN leaving, whether its binding
updates are done, a fault, an attack program; ``faults``, ``attacks``).

Before anything starts, each host that runs the package is checked to run the controller's
version (``testbed.deploy.version``) and every host's clock is measured against the
controller's (``testbed.deploy.clock``); offsets larger than their uncertainty are taken out of
the fetched pcaps and events, and all of it goes into the verdict's ``lab.clocks``. What the
hosts cannot play is refused by ``refuse`` before that. Beside a lab run's output: ``hosts/``
(the MNs' logs as fetched) and ``ansible/`` (every playbook's record).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.deploy import ansible, attacks, clock, faults, inventory, package, version
from testbed.deploy.render import LAYOUT, correspondent_of, daemons_of
from testbed.errors import ConfigError, TestbedError
from testbed.lab.mobile import binding_bound
from testbed.model import addressing, loader
from testbed.progress import Progress, quiet
from testbed.scenario.model import (
    Attach,
    Depart,
    Fault,
    ForgeAsconf,
    ForgeUpdate,
    Impostor,
    Leave,
    Listen,
    Metric,
    Move,
    PingPong,
    Probe,
    RogueRouter,
    Scenario,
    Traffic,
    TrafficStep,
    Wait,
)
from testbed.scenario.stream_traffic import summarise_stream
from testbed.scenario.target import EventSink
from testbed.scenario.traffic import log_server

# what deployed hosts play; the rest is refused before anything runs, naming the step
STEPS = (Move, Attach, PingPong, Wait, TrafficStep, Metric, Depart, Leave, Fault, Listen, ForgeUpdate,
         ForgeAsconf, Impostor, Probe, RogueRouter)
ATTACK_STEPS = (Listen, ForgeUpdate, ForgeAsconf, Impostor, Probe, RogueRouter)
DEPLOYED_TRANSPORTS = ("sctp", "mptcp", "tcp")


class HostTarget:
    """``Target`` over the hosts of an inventory that ``testbed deploy`` configured."""

    def __init__(self, inv: Path, progress: Progress = quiet,
                 max_clock_error: float = clock.MAX_ERROR) -> None:
        self.inv, self.progress = inv.resolve(), progress
        self.max_clock_error = max_clock_error
        data = inventory.load(inv)
        all_vars = data["all"]["vars"]
        self.hosts = {n: {**all_vars, **hv} for n, hv in inventory.hosts(data).items()}
        self.packaged = sorted(inventory.packaged(data))
        self.groups = inventory.groups(data)
        self.data = all_vars["testbed_topology"]
        self.topo = loader.from_dict(self.data, f"{inv}: all.vars.testbed_topology")
        self.plan = addressing.plan(self.topo)
        self.mn = self.topo.mobile.node
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.out = Path.cwd()  # the run's, given by prepare
        self._attached = {mn: list(self.topo.mobile.attached) for mn in self.topo.mobiles}
        self.clocks: dict[str, clock.Offset] = {}
        self.versions: dict[str, str] = {}
        self.playbooks: list[dict[str, Any]] = []
        self.began = 0.0
        self.replay = None  # no trace is replayed on deployed hosts (``refuse``)
        self.logs: dict[str, dict[str, list[dict[str, Any]]]] = {}

    @property
    def name(self) -> str:
        return self.inv.name

    # ---------------------------------------------------------------- refusals
    def refuse(self, sc: Scenario) -> None:
        src = f"scenario {sc.name}"
        if sc.uses_traffic and sc.transport not in DEPLOYED_TRANSPORTS:  # before any other mismatch
            n = next(i for i, st in enumerate(sc.steps) if isinstance(st, TrafficStep))
            raise ConfigError(src, f"steps.{n}", f"{sc.transport.upper()} traffic is not played on inventory "
                              f"hosts (the roles deploy no {sc.transport.upper()} stack, and the mobile "
                              "node's routing by source address is the lab agent's)",
                              f"run the scenario on a lab: testbed run {sc.name}")
        wanted = loader.load(sc.topology).name
        if self.topo.name != wanted:
            raise ConfigError(str(self.inv), "all.vars.testbed_topology", f"the hosts run topology "
                              f"{self.topo.name!r}, scenario {sc.name} wants {wanted!r}",
                              f"deploy {wanted} (testbed inventory {wanted}; testbed deploy)")
        traced = [f"networks.{ar}" for ar in sc.networks] + [
            f"{self.topo.name}: access_networks.{i}.replay" for i, a in enumerate(self.topo.access_networks)
            if a.replay is not None]
        if traced:  # the replayers are lab daemons: nothing plays a trace on deployed hosts yet
            raise ConfigError(src, traced[0], "the trace replay step needs a lab (no replayer is deployed "
                              "on inventory hosts)", "run it on a lab, or drop the trace")
        if sc.policy is not None and sc.policy != self.topo.mobile.policy:
            raise ConfigError(src, "policy", "the deployed binding process runs the topology's "
                              "mobile.policy, and a run does not restart it on the hosts",
                              "set mobile.policy in the topology and deploy again, or drop policy")
        for n, step in enumerate(sc.steps):
            if not isinstance(step, STEPS):
                raise ConfigError(src, f"steps.{n}", f"a {step.kind} step is not played on deployed hosts "
                                  f"(they play {', '.join(s.model_fields['kind'].default for s in STEPS)})",
                                  "run it on a lab")
            if isinstance(step, Fault) and (why := faults.refusal(self, step)) is not None:
                host, reason = why
                raise ConfigError(src, f"steps.{n}", f"a {step.rule_id.removeprefix('fault.')} fault on "
                                  f"host {host}: {reason}", "run it on a lab")
            if isinstance(step, ATTACK_STEPS) and (why := attacks.refusal(self, step)) is not None:
                host, reason = why
                raise ConfigError(src, f"steps.{n}", f"a {step.kind} step from host {host}: {reason}",
                                  "run it on a lab")
        if sc.uses_traffic:
            params = sc.traffic or Traffic()
            cn = correspondent_of(self.topo)
            if params.peer not in (None, cn):
                raise ConfigError(src, "traffic.peer", f"the deployed correspondent is {cn}",
                                  f"drop traffic.peer or set it to {cn}")

    # ---------------------------------------------------------------- playbooks
    def playbook(self, name: str, limit: list[str] | None = None, **extravars: Any) -> ansible.PlaybookResult:
        extravars = {"testbed_run": self.run_id, "testbed_fetch": str(self.out), **extravars}
        r = ansible.run_playbook(name, self.inv, self.out / "ansible", extravars=extravars,
                                 progress=lambda line: self.progress(f"{name}: {line}"),
                                 hosts=sorted(limit or self.hosts),
                                 limit=",".join(limit) if limit else None)
        self.playbooks.append({"playbook": name, "seconds": round(r.seconds, 2), "ok": r.ok})
        if not r.ok:
            raise ansible.DeployError(f"{name} failed: " + "; ".join(r.errors()) + f" (see {r.artifacts})")
        return r

    def command(self, host: str, argv: list[str] | str) -> Any:
        """One command on ``host`` (``command.yml``): its last line of JSON output."""
        cmd = argv if isinstance(argv, str) else shlex.join(argv)
        r = self.playbook("command.yml", [host], testbed_cmd=cmd)
        return last_json(r.outputs.get(host))

    def access_if(self, ar: str, mn: str | None = None) -> str:
        return self.plan.access_iface(ar, mn)[0].ifname

    # ---------------------------------------------------------------- the run's frame
    def prepare(self, out: Path, log: EventSink, progress: Callable[[str], None]) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        progress("versions")
        self.versions = version.check_all({n: self.hosts[n] for n in self.packaged}, package.version(),
                                          str(self.inv))
        progress("clocks")
        self.clocks = clock.measure_all(self.hosts, self.max_clock_error)
        for o in self.clocks.values():
            log.add({"event": "clock", **o.to_dict()})

    def capture(self, pcaps: Path) -> HostCapture:
        return HostCapture(self)

    def traffic(self, scenario: Scenario, out: Path) -> HostTraffic:
        return HostTraffic(self, scenario.traffic or Traffic(), out)

    def attached(self, mn: str) -> list[str]:
        return list(self._attached[mn])

    def move(self, mn: str, to: str, mode: str, overlap: float, gap: float,
             timeout: float) -> dict[str, float]:
        nets = {a.router: a for a in self.topo.access_networks}
        if to not in nets:
            raise TestbedError(f"move to {to!r}: not an access router of {self.topo.name}")
        argv = [LAYOUT.python, "-m", "testbed.mobility.radio", "move", "--attach", self.access_if(to, mn),
                "--mode", mode, "--overlap", f"{overlap:g}", "--gap", f"{gap:g}",
                "--agent", str(LAYOUT.agent_socket), "--timeout", f"{timeout:g}",
                "--families", ",".join(map(str, nets[to].families))]
        for ar in nets:
            if ar != to:
                argv += ["--detach", self.access_if(ar, mn)]
        if mode == "make-before-break" and self.binds(mn):
            argv += ["--settle-state", str(LAYOUT.agent_state), "--settle-socket", str(LAYOUT.binding_socket),
                     "--settle-timeout", f"{binding_bound(self.topo, [to, *self._attached[mn]]):g}"]
        r = self.playbook("move.yml", [mn], testbed_move_cmd=shlex.join(argv))
        times = last_json(r.outputs.get(mn)) or {}
        self._attached[mn] = [to]
        return {k: v for k, v in times.items() if k != "changed"}

    def join(self, mn: str, to: str, timeout: float) -> None:
        """The MN's radio joins ``to``, leaving every other network up (``radio move`` with
        nothing to detach)."""
        nets = {a.router: a for a in self.topo.access_networks}
        if to not in nets:
            raise TestbedError(f"attach to {to!r}: not an access router of {self.topo.name}")
        argv = [LAYOUT.python, "-m", "testbed.mobility.radio", "move", "--attach", self.access_if(to, mn),
                "--agent", str(LAYOUT.agent_socket), "--timeout", f"{timeout:g}",
                "--families", ",".join(map(str, nets[to].families))]
        self.playbook("move.yml", [mn], testbed_move_cmd=shlex.join(argv))
        self._attached[mn] = [*self._attached[mn], to] if to not in self._attached[mn] else self._attached[mn]

    def set_policy(self, policy: Any) -> None:
        """The deployed binding process runs the topology's policy (``refuse`` holds the run's to it)."""

    def start_traces(self) -> None:
        return None

    def stop_traces(self) -> None:
        """No trace is replayed on deployed hosts."""

    def agent_dropped(self) -> int | None:
        """What each MN's agent says it dropped (its ``state``), in all: asked only where the
        policy's rules judge it (``switch: metric``; no trace plays here), a playbook run each."""
        if self.topo.mobile.policy.switch != "metric":
            return None
        total = 0
        for mn in self.topo.mobiles:
            r = self.agent_request(mn, {"cmd": "state"})
            if not r.get("ok", True) or "state" not in r:
                return None
            total += int(r["state"].get("dropped_total", 0))
        return total

    def binds(self, mn: str) -> bool:
        """Does the deploy run a binding process on ``mn``?"""
        return "binding" in daemons_of(self.data, mn)

    def settle(self, mn: str, ars: set[str]) -> tuple[bool, float]:
        """On the MN (``testbed.mobility.settle``): its agent's state and its binding process's
        status, until they match its attachments; at once where no binding process runs."""
        bound = binding_bound(self.topo, ars)
        if not self.binds(mn):
            return True, bound
        every = [self.access_if(a.router, mn) for a in self.topo.access_networks]
        up = [self.access_if(ar, mn) for ar in self._attached[mn]]
        r = self.command(mn, [LAYOUT.python, "-m", "testbed.mobility.settle",
                              "--state", str(LAYOUT.agent_state), "--socket", str(LAYOUT.binding_socket),
                              "--up", ",".join(up),
                              "--down", ",".join(i for i in every if i not in up), "--timeout", f"{bound:g}"])
        return bool((r or {}).get("done")), bound

    def agent_request(self, mn: str, cmd: dict[str, Any]) -> dict[str, Any]:
        r = self.command(mn, [LAYOUT.python, "-m", "testbed.host.jsonlines", "request",
                              str(LAYOUT.agent_socket), json.dumps(cmd)])
        return r if isinstance(r, dict) else {"ok": False, "error": "no answer from the agent"}

    def depart(self, mn: str) -> list[dict[str, Any]]:
        """SIGTERM: the agent withdraws the MN's records before it exits (its location outcomes
        come back with the MN's logs at the end)."""
        self.command(mn, [LAYOUT.python, "-m", "testbed.host.daemonctl", "stop", "agent", "--grace", "15"])
        return []

    def leave(self, mn: str, notice: bool) -> None:
        cmds = [] if notice else [shlex.join([LAYOUT.python, "-m", "testbed.host.daemonctl", "stop", "agent",
                                              "--signal", "KILL"])]
        for ar in self._attached[mn]:
            i = shlex.quote(self.access_if(ar, mn))
            cmds += [f"ip link set dev {i} down", f"ip addr flush dev {i} scope global"]
        self.command(mn, " && ".join(cmds + ["echo '{}'"]))
        self._attached[mn] = []

    def pause(self) -> None:
        """Nothing is held between steps (every playbook run ends its own connections' use)."""

    def faults(self, log: EventSink, progress: Callable[[str], None]) -> faults.HostFaults:
        return faults.HostFaults(self, log, progress)

    def alive(self, host: str, pid: int) -> bool:
        """Does process ``pid`` run on ``host``?"""
        r = self.command(host, f"kill -0 {int(pid)} 2>/dev/null && echo true || echo false")
        return r is True

    def attacks(self, out: Path, log: EventSink, progress: Callable[[str], None]) -> attacks.HostAttacks:
        return attacks.HostAttacks(self, out, log, progress)

    # ---------------------------------------------------------------- records
    def logs_argv(self, mn: str) -> list[str]:
        """The MN's records since the run began (on its clock, a second early: ``records``
        keeps what is this run's once the times are corrected)."""
        off = self.clocks[mn].offset_s if mn in self.clocks else 0.0
        return [LAYOUT.python, "-m", "testbed.host.jsonlines", "since",
                "--wall", f"{self.began + off - 1.0:.6f}",
                str(LAYOUT.agent_events), str(LAYOUT.location_log), str(LAYOUT.binding_actions)]

    def save_logs(self, mn: str, logs: dict[str, Any]) -> None:
        d = self.out / "hosts" / mn
        d.mkdir(parents=True, exist_ok=True)
        for name, records in logs.items():
            (d / name).write_text("".join(json.dumps(r) + "\n" for r in records))
        self.logs[mn] = logs

    def host_of_link(self) -> dict[str, str]:
        return {link: h for h, hv in self.hosts.items() for link in hv.get("testbed_capture") or []}

    def correction(self, host: str | None) -> float:
        off = self.clocks.get(host) if host else None
        return off.correction if off is not None else 0.0

    def shift_pcaps(self) -> None:
        """The fetched pcaps on the controller's clock."""
        owner = self.host_of_link()
        for pcap in sorted((self.out / "pcaps").glob("*.pcap")):
            fix = self.correction(owner.get(pcap.stem))
            if fix:
                clock.shift_pcap(pcap, fix)

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """Only this run's records (the MN's logs are appended across runs), on the controller's
        clock; the host's monotonic clock means nothing here."""
        out: dict[str, list[dict[str, Any]]] = {}
        for mn in self.topo.mobiles:
            fix = self.correction(mn)
            logs = self.logs.get(mn, {})
            out[mn] = []
            for name in ("agent-events.jsonl", "location.jsonl", "binding-actions.jsonl"):
                for r in logs.get(name) or []:
                    if not isinstance(r, dict) or not isinstance(r.get("wall"), int | float) \
                            or r["wall"] + fix < self.began:
                        continue
                    r = {**r, "wall": r["wall"] + fix}
                    r.pop("mono", None)
                    if name == "agent-events.jsonl":
                        r = {"event": r.pop("kind", "agent"), **r}
                    out[mn].append(r)
        return out

    def lab_block(self, scenario: Scenario) -> dict[str, Any]:
        """The hosts (inventory, addresses), their versions and clocks, the playbooks."""
        return {"name": self.inv.name, "inventory": str(self.inv), "topology": self.topo.name,
                "machine": "deployed", "backend": "ssh", "scenario": scenario.name, "seed": scenario.seed,
                "hosts": {n: str(hv.get("ansible_host") or n) for n, hv in sorted(self.hosts.items())},
                "versions": dict(sorted(self.versions.items())),
                "clocks": {"reference": "controller", "max_error_s": self.max_clock_error,
                           "hosts": {n: o.to_dict() for n, o in sorted(self.clocks.items())}},
                "playbooks": self.playbooks}

    def close(self) -> None:
        """The hosts keep running; SSH masters expire on their own (ansible.cfg)."""


class HostCapture:
    """tcpdump on every captured link of the hosts; stopping fetches the pcaps and the MNs'
    logs of this run."""

    def __init__(self, target: HostTarget) -> None:
        self.t = target

    def start(self) -> None:
        self.t.began = time.time()
        self.t.playbook("capture.yml", testbed_capture_action="start")

    def stop(self, timeout: float = 5.0) -> None:
        t = self.t
        r = t.playbook("capture.yml", testbed_capture_action="stop",
                       testbed_logs_cmd=shlex.join(t.logs_argv(t.mn)))
        for mn in t.topo.mobiles:
            t.save_logs(mn, last_json(r.outputs.get(mn)) or {})
        t.shift_pcaps()

    def drops(self) -> dict[str, int]:
        return {}


class HostTraffic:
    """The correspondent's server and each MN's client of the scenario's transport
    (``traffic.yml``); ``traffic.json`` as a lab run writes it."""

    def __init__(self, target: HostTarget, params: Traffic, out: Path) -> None:
        self.t, self.params, self.out = target, params, out
        self.cn = correspondent_of(target.topo)
        self.on = False
        self.res: dict[str, Any] | None = None

    def address_cmd(self, mn: str) -> str:
        """What prints ``mn``'s addresses of the traffic's families on the network it is on."""
        t = self.t
        attached = t.attached(mn)
        if not attached:
            raise TestbedError(f"traffic: {mn} is attached to no access router")
        here = next(a for a in t.topo.access_networks if a.router == attached[0])
        nets = {4: here.ipv4, 6: here.ipv6}
        argv = [LAYOUT.python, "-m", "testbed.mobility.radio", "address",
                "--ifname", t.access_if(here.router, mn)]
        for f in self.params.families:
            if nets[f] is None:
                raise TestbedError(f"traffic.families: {here.router}'s network has no IPv{f}")
            argv += ["--network", str(nets[f])]
        return shlex.join(argv)

    def start(self) -> None:
        cmds = {mn: self.address_cmd(mn) for mn in self.t.topo.mobiles}
        self.on = True
        self.t.playbook("traffic.yml", testbed_traffic_action="start",
                        testbed_traffic=self.params.model_dump(mode="json"), testbed_address_cmds=cmds)

    def stop(self, hurry: bool = False) -> None:
        r = self.t.playbook("traffic.yml", testbed_traffic_action="stop",
                            testbed_traffic=self.params.model_dump(mode="json"))
        self.on = False
        server = last_json(r.outputs.get(self.cn))
        clients = {mn: last_json(r.outputs.get(mn)) for mn in self.t.topo.mobiles}
        if self.params.transport == "sctp":
            self.res = {"server": server, "client": clients[self.t.mn]}
        else:
            self.res = {"transport": self.params.transport, "server": server, "clients": clients}

    def close(self, log: EventSink, hurry: bool = False) -> None:
        """Stop what still runs and put the results in the run (traffic.json + events), the
        server's times on the controller's clock."""
        try:
            if self.on:
                self.stop(hurry)
        except TestbedError as e:  # reported with the results, not instead of them
            log.add({"event": "traffic", "op": "stop_failed", "error": str(e)})
        if self.res is None:
            return
        fix = self.t.correction(self.cn)
        server = self.res.get("server") or {}
        for conn in server.get("connections") or [server]:
            for sw in conn.get("source_switches") or []:
                if isinstance(sw.get("t"), int | float):
                    sw["t"] += fix
        (self.out / "traffic.json").write_text(json.dumps(self.res, indent=1))
        if self.params.transport == "sctp":
            log_server(log, server)
        else:
            summarise_stream(self.res, log, self.params.transport)

    def lab_info(self) -> dict[str, Any]:
        """The traffic apps are the deployed package's (its version is in ``lab.versions``)."""
        return {}

    def rules(self) -> list[Any]:
        """The SCTP and stream apps' records add no rules (the captures judge them)."""
        return []


def last_json(outputs: list[str] | None) -> Any:
    """The last JSON line of the last "result:" task's stdout (a raw command's output comes
    through a terminal: CR LF line ends, stderr mixed in); None when it printed none."""
    for line in reversed((outputs or [""])[-1].replace("\r", "").splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None
