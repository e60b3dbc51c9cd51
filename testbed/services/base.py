"""A daemon of the lab: render its config, check it, start it in a node, wait until it answers.

Modelled on IPMininet's daemon classes, with every file a daemon writes under its own directory
``<run>/<node>/<service>/`` and given to it as an absolute path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from testbed.errors import ServiceError
from testbed.host.daemonctl import tail
from testbed.host.poll import poll_until
from testbed.host.tools import require
from testbed.runtimes.base import NodeRuntime
from testbed.state import ServiceRecord


class Daemon:
    """Base class: subclasses set NAME, BINARIES and implement ``configure``/``argv``/``ready``."""

    NAME = "daemon"
    BINARIES: tuple[tuple[str, str], ...] = ()  # (binary, Debian package)
    START_TIMEOUT = 10.0
    LOG_NOISE: tuple[str, ...] = ()  # log lines left out of error messages (their starts)

    def __init__(self, node: NodeRuntime, directory: Path, instance: str = "") -> None:
        self.node = node
        self.dir = directory
        self.instance = instance
        self.log = directory / (f"{self.NAME}{'-' + instance if instance else ''}.log")

    # --- to implement -------------------------------------------------------------------
    def configure(self) -> None:
        """Write config files under ``self.dir`` and check them with the daemon's own checker."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment the daemon gets on top of the node's."""
        return {}

    def ready(self) -> bool:
        """True once the daemon answers (a real probe, not the mere existence of a pid)."""
        return True

    # --- shared -------------------------------------------------------------------------
    def check_binaries(self) -> None:
        for binary, package in self.BINARIES:
            require(binary, package)

    def start(self) -> ServiceRecord:
        """Launch and wait until it answers."""
        record = self.launch()
        self.settle(record)
        return record

    def launch(self) -> ServiceRecord:
        """Configure (checked) and spawn, without waiting: daemons that do not depend on each
        other start together, and then each is ``settle``d."""
        self.check_binaries()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.configure()
        pid = self.node.spawn(self.argv(), log=self.log, env=self.env())
        return ServiceRecord(self.node.name, self.NAME, pid, str(self.log), self.instance,
                             self.node.own_kernel)

    def settle(self, record: ServiceRecord) -> None:
        """Until the launched daemon answers; stops it and raises when it never does."""
        try:
            self.wait(lambda: self.ready(), record.pid)
        except BaseException:
            self.node.stop(record.pid, grace=0.5)
            raise

    def wait(self, probe: Callable[[], bool], pid: int) -> None:
        """Until ``probe`` holds (a socket or file with no change notification: polled, with
        backoff), failing early with the log's tail when the daemon exits."""
        exited = False

        def settled() -> bool:
            nonlocal exited
            if probe():
                return True
            exited = self.node.wait(pid, 0) is not None
            return exited

        ok = poll_until(settled, self.START_TIMEOUT, interval=0.005, backoff=2, max_interval=0.1)
        if ok and not exited:
            return
        said = tail(self.log, skip=self.LOG_NOISE)
        if exited:
            raise ServiceError(f"{self.NAME} on {self.node.name} exited during start-up: {said}")
        raise ServiceError(f"{self.NAME} on {self.node.name} did not answer within "
                           f"{self.START_TIMEOUT:g} s: {said}")

    def check(self, argv: list[str]) -> None:
        """Run the daemon's own config checker; a bad config fails before start with its words."""
        cp = self.node.run(argv, check=False, timeout=20)
        if cp.returncode != 0:
            raise ServiceError(
                f"{self.NAME} config for {self.node.name} rejected by `{' '.join(argv[:2])}`: "
                + " | ".join((cp.stdout + cp.stderr).strip().splitlines()[-4:])
            )
