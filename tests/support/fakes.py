"""A fake node runtime and a fake lab backend: the lab's logic without namespaces or root.

``FakeRuntime`` records every call in one shared journal (so a test can assert the order of
operations across nodes) and answers the mobility agent's ``wait-configured`` from a script.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.model.addressing import LabPlan
from testbed.progress import Progress
from testbed.runtimes.base import KernelInfo
from testbed.state import LabState

Journal = list[tuple[str, ...]]


@dataclass
class FakeRuntime:
    name: str
    netns: str
    journal: Journal
    own_kernel: bool = False
    replies: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # argv[0] -> stdout
    running: set[int] = field(default_factory=set)
    sysctls: dict[str, str] = field(default_factory=dict)
    _pids: Any = field(default_factory=lambda: itertools.count(1000))

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        self.journal.append((self.name, "run", *argv))
        return subprocess.CompletedProcess(list(argv), 0, self.outputs.get(argv[0], ""), "")

    def spawn(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              err_log: Path | None = None) -> int:
        pid = next(self._pids)
        self.running.add(pid)
        self.journal.append((self.name, "spawn", argv[0]))
        return pid

    def wait(self, handle: int, timeout: float) -> int | None:
        return None if handle in self.running else 0

    def signal(self, handle: int, sig: int) -> None:
        self.journal.append((self.name, "signal", str(handle), str(sig)))

    def stop(self, handle: int, *, grace: float = 2.0) -> None:
        self.running.discard(handle)
        self.journal.append((self.name, "stop", str(handle)))

    def set_link(self, ifname: str, up: bool) -> None:
        self.journal.append((self.name, "link", ifname, "up" if up else "down"))

    def set_sysctl(self, key: str, value: str) -> None:
        self.sysctls[key] = value

    def set_sysctls(self, values: Mapping[str, str]) -> None:
        self.sysctls.update(values)

    def get_sysctl(self, key: str) -> str:
        return self.sysctls.get(key, "0")

    def unix_request(self, path: str, msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        self.journal.append((self.name, "request", str(msg.get("cmd") or msg.get("op"))))
        reply = self.replies.get(str(msg.get("cmd") or msg.get("op")))
        return reply(msg) if reply else {"ok": True}

    def kernel(self) -> KernelInfo:
        return KernelInfo("uml" if self.own_kernel else "host", "6.1.0-fake")

    def close(self) -> None:
        pass


@dataclass
class FakeBackend:
    """Makes nothing; hands out FakeRuntimes sharing one journal."""

    journal: Journal = field(default_factory=list)
    name: str = "fake"
    runtimes: dict[str, FakeRuntime] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)
    torn_down: list[str] = field(default_factory=list)

    def build(self, plan: LabPlan, state: LabState, progress: Progress,
              kernel_nodes: frozenset[str] = frozenset()) -> None:
        for n in plan.nodes:
            state.netns.append(state.ns(n))
        state.save()
        self.built = list(plan.nodes)
        self.journal.append(("backend", "build"))

    def runtime(self, state: LabState, node: str) -> FakeRuntime:
        if node not in self.runtimes:
            self.runtimes[node] = FakeRuntime(node, state.ns(node), self.journal)
        return self.runtimes[node]

    def terminal_argv(self, state: LabState, node: str, argv: list[str], tty: bool) -> list[str]:
        return ["fake-exec", node, *argv]

    def info(self, state: LabState) -> dict[str, Any]:
        return {"nodes": {}}

    def teardown(self, state: LabState, progress: Progress) -> None:
        self.torn_down = list(state.netns)
        self.journal.append(("backend", "teardown"))

    def labs(self) -> set[str]:
        return set()

    def sweep(self, lab: str) -> list[str]:
        return []
