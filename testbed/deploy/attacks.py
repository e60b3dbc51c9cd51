"""Attacks from deployed hosts: the attacker steps carried out by the programs of the package on
a host of the inventory's ``attackers`` group (a host on an access network beside the mobile
node), judged as a lab's (``AttackSteps.rules``) on the run's captures.

Each program is one command on its host (``command.yml``); what listens (tcpdump on the
attacker's access interface) and what must go on answering (an impostor's server) runs under
``testbed.host.daemonctl`` there until the run's end. A forged UPDATE signed with the MN's own
key (``other-name``) is refused: the deploy makes the MN's key pair on the MN, and its private
half never leaves it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.capture.tcpdump import tcpdump_argv
from testbed.deploy.render import LAYOUT, start_cmd, stop_cmd
from testbed.errors import TestbedError
from testbed.progress import Progress
from testbed.scenario.attacks import AttackSteps
from testbed.scenario.model import ForgeUpdate, Probe

if TYPE_CHECKING:
    from testbed.deploy.target import HostTarget

ATTACKERS = "attackers"  # the inventory group attacks come from


def refusal(target: HostTarget, step: Any) -> tuple[str, str] | None:
    """(host, why) when the attacker step cannot be played on the target's hosts, else None."""
    node = step.node
    if node not in target.hosts:
        return node, "not a host of the inventory"
    if isinstance(step, Probe):
        if node not in target.packaged:
            return node, "the testbed package is not deployed there"
        return None
    if node not in target.groups.get(ATTACKERS, ()):
        return node, f"not in the inventory's {ATTACKERS} group (a host on an access network)"
    if isinstance(step, ForgeUpdate) and step.form == "other-name":
        return node, "the MN's private key never leaves the MN (the deploy makes it there)"
    return None


@dataclass(frozen=True)
class Ran:
    """A program's output as the command playbook returns it."""

    stdout: str
    stderr: str = ""
    returncode: int = 0


class HostAttacks(AttackSteps):
    python = LAYOUT.python

    def __init__(self, target: HostTarget, out: Path, log, progress: Progress) -> None:
        super().__init__(target.topo, target.plan, out, log, progress)
        self.t = target
        self.kept: list[tuple[str, str, str]] = []  # (host, daemon, stop signal)

    def run(self, node: str, argv: list[str], timeout: float) -> Ran:
        # the report is the program's last line, also when it exits non-zero
        r = self.t.playbook("command.yml", [node], testbed_cmd=shlex.join(argv) + " || true")
        return Ran((r.outputs.get(node) or [""])[-1])

    def _start(self, node: str, name: str, argv: list[str], ready: list[str], log: Path,
               signal: str = "TERM") -> None:
        spec = {"name": name, "argv": argv, "env": {}, "log": str(log), "ready": ready, "ready_timeout": 30}
        self.t.command(node, start_cmd(spec))
        self.kept.append((node, name, signal))

    def keep(self, node: str, name: str, argv: list[str]) -> None:
        self._start(node, f"attack-{name}", argv, ["true"], LAYOUT.log / f"attack-{name}.log")

    def start_listening(self, node: str, ifnames: list[str]) -> Path:
        d = LAYOUT.lib / "attacker" / self.t.run_id
        for i in ifnames:
            log = d / f"{i}.tcpdump.log"
            self._start(node, f"attack-tcpdump-{i}", tcpdump_argv(i, d / f"{i}.pcap"),
                        ["grep", "-q", "listening on", str(log)], log, signal="INT")
        return d / f"{ifnames[0]}.pcap"

    def key_file(self) -> Path:
        raise TestbedError("forge_update other-name: the MN's private key never leaves the MN")

    def close(self) -> None:
        for node, name, sig in reversed(self.kept):
            try:
                self.t.command(node, stop_cmd(name, signal=sig))
            except TestbedError as e:  # reported with the results, not instead of them
                self.log.add({"event": "attack", "op": "stop_failed", "node": node, "error": str(e)})
        self.kept.clear()
