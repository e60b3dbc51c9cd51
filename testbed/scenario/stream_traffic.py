"""TCP and Multipath TCP traffic for a scenario: one server on the CN, one client per mobile node,
all ``python -m testbed.traffic.stream`` in their node's namespace (MPTCP nodes run on the host
kernel).

For MPTCP the client embeds the binding driver behind the MN's driver socket, which the
binding process joins; the MN's path manager is chosen for the scenario's binding mode before
the client connects: the userspace one (``net.mptcp.pm_type=1``) for ``trash``, the in-kernel
one for ``auto``. A plain TCP connection gets TCP_USER_TIMEOUT on both ends, so that the move
that breaks it shows within seconds (``Traffic.user_timeout``).

``traffic.json``: ``{"transport", "server": {"connections": [...]}, "clients": {mn: {...}}}``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from testbed.errors import TestbedError
from testbed.scenario.model import Traffic
from testbed.scenario.traffic import PORT, TrafficRun, log_server

PM_TYPE = {"trash": "1", "auto": "0"}  # net.mptcp.pm_type: userspace, in-kernel


def stream_argv(python: str, role: str, t: Traffic, *args: str) -> list[str]:
    """``python -m testbed.traffic.stream ROLE`` for the traffic's transport (a plain TCP
    connection with TCP_USER_TIMEOUT)."""
    argv = [python, "-m", "testbed.traffic.stream", role, "--transport", t.transport,
            "--port", str(PORT), *args]
    if t.transport == "tcp":
        argv += ["--user-timeout", str(int(t.user_timeout * 1000))]
    return argv


def stream_server_argv(python: str, t: Traffic, bind: str, stats: Path, connections: int) -> list[str]:
    """The CN's server: ``connections`` connections (one per MN), their stats in ``stats``."""
    return stream_argv(python, "server", t, "--bind", bind, "--stats", str(stats),
                       "--connections", str(connections), *(["--echo"] if t.echo else []))


def stream_client_argv(python: str, t: Traffic, local: str, server: str, stats: Path,
                       control: Path) -> list[str]:
    """An MN's client from ``local``; an MPTCP one embeds the binding driver on ``control``."""
    extra = ["--control", str(control), "--mode", t.binding] if t.transport == "mptcp" else []
    return stream_argv(python, "client", t, "--local", local, "--server", server, "--rate", f"{t.rate:g}",
                       "--size", str(t.size), "--stats", str(stats), *extra)


def summarise_stream(res: dict[str, Any], log, transport: str) -> None:
    """A stream run's results as events: each connection's, and where a client's died."""
    for conn in (res.get("server") or {}).get("connections", []):
        log_server(log, conn, transport=transport)
    for mn, c in (res.get("clients") or {}).items():
        if c and c.get("error"):  # where a plain TCP connection died
            log.add({"event": "traffic", "op": "client_error", "mn": mn, "wall": c.get("error_at"),
                     "error": c["error"], "sent": c.get("sent")})


class StreamTraffic(TrafficRun):
    def __init__(self, lab, cn: str, params: Traffic, out: Path) -> None:
        super().__init__(lab, cn, params, out)
        self.kind = f"{params.transport.upper()} traffic"
        self.mobiles = list(lab.topo.mobiles)
        self.server_pid = 0
        self.server_stats = self.dir_cn / "stream-server.json"
        self.clients: dict[str, int] = {}

    def client_dir(self, mn: str) -> Path:
        return self.lab.state.dir / mn / "traffic"

    def client_stats(self, mn: str) -> Path:
        return self.client_dir(mn) / "stream-client.json"

    def start(self) -> None:
        t = self.params
        cn_addr = self.lab.plan.address_of(self.cn, 4)
        if not cn_addr:
            raise TestbedError(f"{self.kind}: the correspondent {self.cn} has no IPv4 address")
        self.dir_cn.mkdir(parents=True, exist_ok=True)
        self.server_stats.unlink(missing_ok=True)
        self.server_pid = self.lab.runtime(self.cn).spawn(
            stream_server_argv(sys.executable, t, cn_addr, self.server_stats, len(self.mobiles)),
            log=self.dir_cn / "stream-server.log")
        self._wait("server", self.server_stats.exists, self.cn, self.server_pid,
                   self.dir_cn / "stream-server.log")
        ready = [self._start_client(mn, cn_addr) for mn in self.mobiles]  # all launched, then awaited
        for wait in ready:
            wait()

    def _start_client(self, mn: str, cn_addr: str):
        """Launch ``mn``'s client; returns what waits until it has connected."""
        t, rt, mobile = self.params, self.lab.runtime(mn), self.lab.mobile_node(mn)
        if not mobile.attached:
            raise TestbedError(f"{self.kind}: {mn} is attached to no access router")
        local = mobile.access_state(mobile.attached[0]).ipv4[0]
        d = self.client_dir(mn)
        d.mkdir(parents=True, exist_ok=True)
        stats = self.client_stats(mn)
        stats.unlink(missing_ok=True)
        control = self.lab.wiring.for_mobile(mn).traffic_control
        if t.transport == "mptcp":
            rt.set_sysctls({"net.mptcp.pm_type": PM_TYPE[t.binding]})
            control.unlink(missing_ok=True)
        pid = rt.spawn(stream_client_argv(sys.executable, t, local, cn_addr, stats, control),
                       log=d / "stream-client.log")
        self.clients[mn] = pid
        ready = control.exists if t.transport == "mptcp" else stats.exists  # once connected
        return lambda: self._wait(f"client on {mn}", ready, mn, pid, d / "stream-client.log")

    def stop(self, hurry: bool = False) -> None:
        errors = []
        for mn, pid in self.clients.items():  # every client ends its stream, then waits for the end
            try:
                self.lab.runtime(mn).signal(pid, signal.SIGTERM)
            except TestbedError as e:  # its node is gone (a fault): nothing left to stop
                errors.append(f"client on {mn}: {e}")
        for mn, pid in list(self.clients.items()):
            try:
                rt = self.lab.runtime(mn)
                if rt.wait(pid, 0.5 if hurry else 10.0) is None:
                    rt.stop(pid, grace=0.3 if hurry else 1.0)
            except TestbedError as e:
                errors.append(f"client on {mn}: {e}")
            del self.clients[mn]
        if self.server_pid:
            try:
                cn = self.lab.runtime(self.cn)
                if hurry or cn.wait(self.server_pid, 5.0) is None:  # it ends when every connection closed
                    cn.stop(self.server_pid, grace=0.3 if hurry else 2.0)
            except TestbedError as e:
                errors.append(f"server on {self.cn}: {e}")
            self.server_pid = 0
        if errors:
            raise TestbedError(f"{self.kind} could not be stopped: " + "; ".join(errors))

    def results(self) -> dict[str, Any]:
        return {"transport": self.params.transport, "server": self._read(self.server_stats),
                "clients": {mn: self._read(self.client_stats(mn)) for mn in self.mobiles}}

    def summarise(self, res: dict[str, Any], log) -> None:
        summarise_stream(res, log, self.params.transport)
