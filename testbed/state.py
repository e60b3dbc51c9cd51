"""The lab's run directory and state file: what exists, so any new process can drive or remove it.

Layout: ``<root>/<lab>/`` with ``state.json`` (written ahead of every creation: a crash leaves a
record of what may exist), ``lock`` (one command at a time) and ``<node>/<service>/`` dirs.
The root is ``$TESTBED_RUN_ROOT`` or ``/run/testbed``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import LabStateError


@dataclass(frozen=True)
class ServiceRecord:
    """What the state file keeps of a started daemon, so any later process can stop or probe it."""

    node: str
    service: str
    pid: int
    log: str
    instance: str = ""  # e.g. the interface for per-interface clients
    guest: bool = False  # pid is in the node's own kernel (ends with it, not stopped by the host)


DEFAULT_LAB = "tb"
OWNER_LABEL = "testbed"  # interface alias prefix: "testbed:<lab>"


def run_root() -> Path:
    return Path(os.environ.get("TESTBED_RUN_ROOT", "/run/testbed")).resolve()


def lab_dir(lab: str) -> Path:
    return run_root() / lab


def namespace_label(lab: str) -> str:
    """The label on a lab namespace's loopback: the lab and its run root, so ``clean`` under
    one run root never takes another root's labs for orphans."""
    return f"{OWNER_LABEL}:{lab} {run_root()}"


def lab_of_label(label: str) -> str | None:
    """The lab a namespace label names, if it belongs to this run root."""
    head, _, root = label.partition(" ")
    if not head.startswith(f"{OWNER_LABEL}:") or root != str(run_root()):
        return None
    return head.split(":", 1)[1]


@dataclass
class LabState:
    lab: str
    topology_file: str
    topology: dict[str, Any]
    status: str = "building"  # building | up | failed | down
    backend: str = "mininet"  # the lab backend that made its nodes and links
    machine: str = "host"  # where the lab runs: the host, or inside one UML kernel
    owner_pid: int = 0  # the process building it (a dead owner + "building" = crashed build)
    holder: str = ""  # $TESTBED_LAB_HOLDER at build time: e.g. a test session whose labs these are
    created: float = field(default_factory=time.time)
    netns: list[str] = field(default_factory=list)  # named netns, written BEFORE creation
    etc_netns: list[str] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    attached: dict[str, list[str]] = field(default_factory=dict)  # MN -> ARs it is attached to
    kernel_nodes: list[dict[str, Any]] = field(default_factory=list)  # one record per booted guest
    engine: str = ""  # docker backend: the engine's URL
    containers: list[dict[str, str]] = field(default_factory=list)  # docker: written BEFORE creation
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return lab_dir(self.lab)

    def ns(self, node: str) -> str:
        return f"{self.lab}-{node}"

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))
        os.replace(tmp, self.dir / "state.json")

    def add_service(self, rec: ServiceRecord) -> None:
        self.services.append(asdict(rec))
        self.save()

    def service_records(self) -> list[ServiceRecord]:
        return [ServiceRecord(**s) for s in self.services]

    @classmethod
    def load(cls, lab: str) -> LabState:
        path = lab_dir(lab) / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabStateError(f"no lab {lab!r} is up (no {path}); start one with `testbed up`") from None
        except (OSError, ValueError) as e:
            raise LabStateError(f"{path}: unreadable state ({e}); run `testbed clean`") from e
        if isinstance(data.get("attached"), list):  # written before labs had several MNs
            mn = (data.get("topology", {}).get("mobile") or {}).get("node", "mn")
            data["attached"] = {mn: data["attached"]}
        return cls(**data)

    @staticmethod
    def exists(lab: str) -> bool:
        return (lab_dir(lab) / "state.json").exists()


def known_labs() -> list[str]:
    root = run_root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/state.json"))


def lock_file(lab: str) -> Path:
    return run_root() / f".{lab}.lock"


def _flock(path: Path, mode: int, what: str, wait: float) -> Iterator[None]:
    with open(path, "w") as f:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabStateError(f"{what} is busy (another testbed command holds it)") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def locked(lab: str, wait: float = 30.0, *, shared: bool = False) -> Iterator[None]:
    """Serialise commands that change one lab (up, down, a move). Moves of different mobile
    nodes take it ``shared`` (each also takes its MN's own lock: ``mobile_locked``), so they
    run at once while up and down still wait for them."""
    run_root().mkdir(parents=True, exist_ok=True)
    yield from _flock(lock_file(lab), fcntl.LOCK_SH if shared else fcntl.LOCK_EX, f"lab {lab!r}", wait)


@contextmanager
def mobile_locked(lab: str, mn: str, wait: float = 60.0) -> Iterator[None]:
    """One move of ``mn`` at a time (the lock file lives and goes with the lab's run dir)."""
    yield from _flock(lab_dir(lab) / f".{mn}.lock", fcntl.LOCK_EX, f"mobile node {mn} of lab {lab!r}", wait)


@contextmanager
def state_locked(lab: str, wait: float = 30.0) -> Iterator[None]:
    """A short read-modify-write of state.json by one of several concurrent moves."""
    yield from _flock(lab_dir(lab) / ".state.lock", fcntl.LOCK_EX, f"the state of lab {lab!r}", wait)
