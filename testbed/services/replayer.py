"""The trace replayer (testbed.replay.replayer) as a lab daemon: one per node with a traced
interface, resident for the run; ready once it has opened its netlink and nftables handles and
found its interfaces (its log's ``ready`` record)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from testbed.host import jsonlines
from testbed.services.base import Daemon


def replayer_argv(python: str, plan: Path, log: Path, start_file: Path) -> list[str]:
    return [python, "-m", "testbed.replay.replayer", "--plan", str(plan), "--log", str(log),
            "--start-file", str(start_file)]


class Replayer(Daemon):
    NAME = "replayer"
    START_TIMEOUT = 120.0  # a Python start in a UML guest is 1-2 s, more on loaded cores

    def __init__(self, node, directory: Path, plan_json: str) -> None:
        super().__init__(node, directory)
        self.plan_json = plan_json
        self.plan = directory / "plan.json"
        self.records = directory / "replay.jsonl"
        self.start_file = directory / "start"

    def configure(self) -> None:
        self.plan.write_text(self.plan_json)
        self.records.unlink(missing_ok=True)
        self.start_file.unlink(missing_ok=True)

    def argv(self) -> list[str]:
        return replayer_argv(sys.executable, self.plan, self.records, self.start_file)

    def go(self, pid: int, start: float) -> None:
        """Start the plan at wall time ``start`` (the replayer reads it at SIGUSR1)."""
        self.start_file.write_text(f"{start:.6f}\n")
        self.node.signal(pid, signal.SIGUSR1)

    def ready(self) -> bool:
        return any(r.get("op") == "ready" for r in jsonlines.read(self.records))
