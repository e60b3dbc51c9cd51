"""``ContainerNode``: a node that is a Docker container, on the host kernel.

Daemons and commands run in the container (``docker exec``), so they come from the image's
filesystem: its named, its dhcpd, its Python. What only touches the node's network stack runs
from the host in the container's network namespace, pinned as ``<lab>-<node>``: ``ip`` and
``sysctl`` commands, carrier changes, sysctls. They see exactly what the container sees and
skip the engine's round trip (a ``docker exec`` costs 75-100 ms here, ``ip netns exec`` 5 ms),
which keeps a move as fast as on namespace nodes.

Process handles are host pids: the engine reports an exec'd process's host pid, the process
is its own session and group leader (the engine starts exec'd processes with ``setsid``), so
the host stops it as it stops any lab process. The lab's run directory is bind-mounted at the
same path, so a daemon's config, log and Unix socket have one path on both sides.

The host's interpreter path in an argv (services start Python modules with ``sys.executable``)
stands for the testbed package's interpreter; in a container it becomes the image's own
(``python``, from the image's ``testbed.python`` label).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import CommandError, TestbedError
from testbed.host import netns
from testbed.host.poll import poll_until
from testbed.runtimes.namespace import HostStack

# commands that only read or change the network stack: run from the host in the pinned netns
NETNS_TOOLS = frozenset({"ip", "sysctl"})
API_TIMEOUT = 60.0
SPAWN_TIMEOUT = 10.0  # until the engine reports the exec'd process's pid


@dataclass
class ContainerNode(HostStack):
    """Unix sockets sit in the bind-mounted run dir: the host reaches them at the same path."""

    name: str
    netns: str
    container: str  # container id (or name)
    connect: Callable[[float], Any]  # socket timeout (s) -> docker.APIClient of the lab's engine
    python: str = ""  # the image's interpreter for the testbed package
    own_kernel: bool = False
    _clients: dict[float, Any] = field(default_factory=dict, repr=False)

    def _api(self, timeout: float = API_TIMEOUT) -> Any:
        """A client whose socket timeout outlasts a command of ``timeout`` s (cached)."""
        t = max(API_TIMEOUT, timeout + 15.0)
        if t not in self._clients:
            self._clients[t] = self.connect(t)
        return self._clients[t]

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as the container runs it: the host's interpreter becomes the image's."""
        if not self.python:
            return list(argv)
        return [self.python if a == sys.executable else a for a in argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if argv and argv[0] in NETNS_TOOLS:
            return netns.run(self.netns, argv, timeout=timeout, check=check, input=input)
        cmd = ["timeout", "-k", "2", f"{timeout:g}", *self.argv(argv)]
        env = None
        if input is not None:  # exec has no stdin here: the input goes in through the environment
            cmd = ["sh", "-c", 'printf "%s" "$TESTBED_INPUT" | "$@"', "sh", *cmd]
            env = {"TESTBED_INPUT": input}
        api = self._api(timeout)
        try:
            ex = api.exec_create(self.container, cmd, environment=env)
            out, err = api.exec_start(ex["Id"], demux=True)
            code = int(api.exec_inspect(ex["Id"])["ExitCode"])
        except Exception as e:  # noqa: BLE001 - any engine failure: the node is not usable
            raise self._engine_error(e) from e
        stdout = (out or b"").decode(errors="replace")
        stderr = (err or b"").decode(errors="replace")
        if code == 124:
            stderr += f"\ntimed out after {timeout:g} s"
        if check and code != 0:
            raise CommandError(list(argv), code, stderr or stdout)
        return subprocess.CompletedProcess(list(argv), code, stdout, stderr)

    def spawn(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
              err_log: Path | None = None) -> int:
        """Start a process in the container with its output appended to ``log`` (a path
        inside the bind-mounted run dir), its standard error too or to ``err_log``; returns its
        host pid."""
        cmd = ["sh", "-c", 'out=$1 err=$2; shift 2; exec "$@" >>"$out" 2>>"$err" </dev/null', "sh",
               str(log), str(err_log or log), *self.argv(argv)]
        api = self._api()
        try:
            ex = api.exec_create(self.container, cmd, environment=dict(env) if env else None)
            api.exec_start(ex["Id"], detach=True)
            info = poll_until(lambda: (i := api.exec_inspect(ex["Id"])).get("Pid") and i,
                              SPAWN_TIMEOUT, interval=0.005, backoff=2, max_interval=0.1)
        except Exception as e:  # noqa: BLE001
            raise self._engine_error(e) from e
        if not info:
            raise TestbedError(f"{self.name}: the engine reported no process for `{argv[0]}` "
                               f"within {SPAWN_TIMEOUT:g} s")
        return int(info["Pid"])

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def _engine_error(self, e: Exception) -> TestbedError:
        return TestbedError(f"{self.name}: container {self.container[:12]} did not take the "
                            f"command ({type(e).__name__}: {str(e)[:200]}); is the lab's engine "
                            "up? (`testbed status`, `testbed clean`)")
