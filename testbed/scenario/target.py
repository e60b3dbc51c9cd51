"""What a scenario is played on: the ``Target`` interface the runner drives.

A lab (``testbed.scenario.lab_target.LabTarget``) and the deployed hosts of an inventory
(``testbed.deploy.target.HostTarget``) implement it; the runner (``testbed.scenario.runner``)
plays every step kind through it and judges the run the same way for both. A target answers
for the topology it runs and its address plan, refuses what it cannot play before anything
starts (``refuse``), prepares (a deployed target measures its hosts' clocks and checks their
deployed version), captures every link, runs the scenario's traffic, moves its mobile nodes,
injects faults and attacks, and gives back the mobile nodes' records on the controller's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from testbed.conformance.verdict import RuleResult
from testbed.model.addressing import LabPlan
from testbed.model.topology import Topology
from testbed.scenario.model import Scenario


class EventSink(Protocol):
    """Where a target's parts log what they did (the runner's ``EventLog``)."""

    records: list[dict[str, Any]]

    def add(self, record: dict[str, Any]) -> None: ...

    def step(self, step: str, /, **kw: Any) -> None: ...


class Capturing(Protocol):
    """Every captured link of a target: started before the first step, stopped after the last;
    the pcaps are in the run's ``pcaps/`` once ``stop`` returns."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> Any: ...

    def drops(self) -> dict[str, int]: ...


class TrafficPart(Protocol):
    """The scenario's traffic on a target (``TrafficRun`` on a lab)."""

    cn: str

    def start(self) -> None: ...

    def stop(self, hurry: bool = False) -> None: ...

    def close(self, log: EventSink, hurry: bool = False) -> None: ...

    def lab_info(self) -> dict[str, Any]:
        """What served the traffic, for verdict.json's ``lab`` block."""

    def rules(self) -> list[RuleResult]:
        """Rules the traffic's own records judge, added to the verdict."""


class FaultPart(Protocol):
    """The ``fault`` steps: each injected one, and the rules they give at the end."""

    injected: list[Any]

    def handlers(self) -> dict[type, Callable[[Any], None]]: ...

    def rules(self, step_error: RuleResult | None, failed: list[RuleResult]) -> list[RuleResult]: ...


class AttackPart(Protocol):
    """The attacker steps: carried out, closed at the end, judged on the captures' facts."""

    def handlers(self) -> dict[type, Callable[[Any], None]]: ...

    def close(self) -> None: ...

    def rules(self, facts: Any) -> list[RuleResult]: ...


@runtime_checkable
class Target(Protocol):
    """A lab or deployed hosts, as the runner sees them."""

    topo: Topology
    plan: LabPlan
    replay: Any  # the run's link traces (``lab.replay.TraceReplay``), None without

    @property
    def name(self) -> str:
        """The lab's name, or the inventory's (``RunResult.lab``, the report's title)."""

    def refuse(self, scenario: Scenario) -> None:
        """Raise ``ConfigError`` (one line: the host or field, the step, why) for anything of
        ``scenario`` this target cannot play; called before anything runs."""

    def prepare(self, out: Path, log: EventSink, progress: Callable[[str], None]) -> None:
        """Before the capture starts, with the run's output directory (a deployed target: its
        hosts' versions and clocks)."""

    def capture(self, pcaps: Path) -> Capturing: ...

    def traffic(self, scenario: Scenario, out: Path) -> TrafficPart | None:
        """The scenario's traffic, or None when no correspondent speaks its transport."""

    def attached(self, mn: str) -> list[str]:
        """The access routers ``mn`` is attached to now."""

    def move(self, mn: str, to: str, mode: str, overlap: float, gap: float,
             timeout: float) -> dict[str, float]:
        """Attach ``mn`` to ``to`` and detach it from every other AR; the phases' times."""

    def join(self, mn: str, to: str, timeout: float) -> None:
        """Attach ``mn`` to ``to`` as well, keeping every network it is on."""

    def set_policy(self, policy: Any) -> None:
        """The mobile nodes' binding processes run ``policy`` (a run's; the topology's after)."""

    def start_traces(self) -> float | None:
        """Start replaying the link traces: their 0 (wall time), None without traces."""

    def stop_traces(self) -> None:
        """Stop the traces (the static shaping is back)."""

    def agent_dropped(self) -> int | None:
        """Events the agents dropped from full subscriber queues in all (None: unknown)."""

    def settle(self, mn: str, ars: set[str]) -> tuple[bool, float]:
        """Wait until ``mn``'s binding updates of its moves among ``ars`` are answered:
        (done, the bound waited for)."""

    def agent_request(self, mn: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """One request to ``mn``'s mobility agent (the metric step's)."""

    def depart(self, mn: str) -> list[dict[str, Any]]:
        """Announced departure: the agent withdraws ``mn``'s records and stops; the location
        outcomes it logged."""

    def leave(self, mn: str, notice: bool) -> None:
        """``mn`` drops off every network; without notice its agent dies first."""

    def pause(self) -> None:
        """Before a scenario's dwell: let go of what others may use meanwhile."""

    def faults(self, log: EventSink, progress: Callable[[str], None]) -> FaultPart: ...

    def attacks(self, out: Path, log: EventSink, progress: Callable[[str], None]) -> AttackPart: ...

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """Per mobile node, its agent events, location outcomes and binding actions since the
        capture started, as events.jsonl records on the controller's clock (called once the
        capture stopped)."""

    def lab_block(self, scenario: Scenario) -> dict[str, Any]:
        """verdict.json's ``lab``: what ran (nodes or hosts, clocks, versions)."""

    def close(self) -> None:
        """Release this process's connections (the lab or the hosts keep running)."""
