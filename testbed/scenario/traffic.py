"""Traffic for a scenario, on the host side: what every transport's run shares (``TrafficRun``)
and SCTP's: a server on the CN, a client on the MN whose association the TraSH binding process
drives (through the client's control socket).

Both run ``python -m testbed.sctp.traffic`` in their node's stack (a VM guest where the host
has no SCTP). The server checks continuity and records each message's arrival time and source
address; its stats land in ``traffic.json`` of the run and as records in ``events.jsonl``.
TCP and MPTCP are ``stream_traffic``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from testbed.errors import TestbedError
from testbed.host.daemonctl import tail
from testbed.host.poll import poll_until
from testbed.mobility.protocol import ProtocolError, State, Status, decode_reply, encode
from testbed.model import retransmission
from testbed.runtimes import kernel_nodes
from testbed.runtimes.guest import SCTP_SYSCTLS
from testbed.scenario.model import Traffic
from testbed.sctp.traffic import REFUSED, SHUTDOWN_WAIT

PORT = 5001


def server_argv(python: str, bind: str, stats: Path, params: Traffic,
                extra: list[str] | None = None) -> list[str]:
    """The CN's SCTP server: one association, its continuity and arrivals in ``stats``.
    ``bind``: its addresses, comma-separated; ``extra``: e.g. the node's ``--auth-key``."""
    return [python, "-m", "testbed.sctp.traffic", "server", "--bind", bind, "--port", str(PORT),
            "--stats", str(stats), *(["--echo"] if params.echo else []), *(extra or [])]


def client_argv(python: str, local: str, server: str, stats: Path, params: Traffic, control: Path,
                extra: list[str] | None = None, shutdown_wait: float = SHUTDOWN_WAIT) -> list[str]:
    """The MN's SCTP client, driven by the binding process through its ``control`` socket;
    ``shutdown_wait``: its graceful SHUTDOWN's time at the end, before it aborts."""
    return [python, "-m", "testbed.sctp.traffic", "client", "--local", local,
            "--shutdown-wait", f"{shutdown_wait:g}",
            "--server", server, "--port", str(PORT), "--rate", f"{params.rate:g}",
            "--size", str(params.size), "--control", str(control), "--mode", params.binding,
            "--families", ",".join(map(str, params.families)), *(extra or []),
            *(["--auto-asconf-sockopt"] if params.binding == "auto_asconf" else []),
            "--stats", str(stats)]


class AssociationRefused(TestbedError):
    """The CN answered the client's INIT with ABORT: a protocol outcome the checker judges
    (``continuity.association``), not a broken lab."""


class TrafficRun:
    """What every transport's traffic does on the host side: wait for its processes, and put
    their results in the run (``traffic.json`` and events)."""

    kind = "traffic"

    def __init__(self, lab, cn: str, params: Traffic, out: Path) -> None:
        self.lab, self.params, self.out = lab, params, out
        self.cn = cn
        self.dir_cn = lab.state.dir / self.cn / "traffic"

    def _wait(self, what: str, probe, node: str, pid: int, log: Path, timeout: float = 180.0) -> None:
        """Until ``probe`` holds (a stats file, a control socket: polled), failing at once with
        the log's tail when the process exits. (A Python start in a TCG guest whose cores
        other labs share took over a minute.)"""
        rt = self.lab.runtime(node)
        status: int | None = None

        def settled() -> bool:
            nonlocal status
            if probe():
                return True
            status = rt.wait(pid, 0)
            return status is not None

        if poll_until(settled, timeout, interval=0.02, backoff=1.5, max_interval=0.2) and status is None:
            return
        if status is not None:
            self.exited(what, node, status, log)
        raise TestbedError(f"{self.kind}: {what} not ready within {timeout:g} s; see {log.parent}")

    def exited(self, what: str, node: str, status: int, log: Path) -> None:
        """A process of the run exited while it was awaited: raise what that means."""
        raise TestbedError(f"{self.kind}: {what} exited: {tail(log)}")

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def results(self) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self, hurry: bool = False) -> None:
        """End the clients, then the server; ``hurry`` (an interrupted run): a short grace each,
        the user is waiting."""
        raise NotImplementedError

    def summarise(self, res: dict[str, Any], log) -> None:
        """The results as events (the run's timeline shows them)."""

    def lab_info(self) -> dict[str, Any]:
        """What served the traffic, for verdict.json's ``lab`` block (beyond the nodes' kernels)."""
        return {}

    def rules(self) -> list[Any]:
        """Rules the traffic's own records judge (``RuleResult``s), added to the verdict."""
        return []

    def close(self, log, hurry: bool = False) -> None:
        """Stop what still runs and put the results in the run (traffic.json + events)."""
        try:
            self.stop(hurry)
        except TestbedError as e:  # reported with the results, not instead of them
            log.add({"event": "traffic", "op": "stop_failed", "error": str(e)})
        res = self.results()
        (self.out / "traffic.json").write_text(json.dumps(res, indent=1))
        self.summarise(res, log)


def log_server(log, server: dict[str, Any], **extra: Any) -> None:
    """A server's stats as a summary event and one event per switch of source address."""
    log.add({"event": "traffic", "op": "summary", **extra,
             **{k: v for k, v in server.items() if not isinstance(v, list | dict)}})
    for sw in server.get("source_switches", []) or []:
        log.add({"event": "traffic", "op": "source_switch", "wall": sw.get("t"), **extra, **sw})


RTO_INITIAL = 3.0  # Linux's net.sctp.rto_initial, ms / 1000


class SctpTraffic(TrafficRun):
    kind = "SCTP traffic"

    def __init__(self, lab, cn: str, params: Traffic, out: Path) -> None:
        super().__init__(lab, cn, params, out)
        self.mn = lab.topo.mobile.node
        self.dir_mn = lab.state.dir / self.mn / "traffic"
        self.control = lab.wiring.traffic_control
        self.server_pid = self.client_pid = 0
        self.server_stats = self.dir_cn / "server.json"
        self.client_stats = self.dir_mn / "client.json"
        # the SHUTDOWN at the end and the last DATA's SACK, retransmitted as the worst access
        # link's loss makes likely (the MN may end on any of them); and one RTO.Initial (3 s):
        # DATA outstanding to an address the MN deleted moves to another path and is sent again
        # on its T3-rtx timer before the peer may answer the SHUTDOWN (RFC 9260 §9.2; seen at
        # the end of a ping-pong run)
        worst = max((a.shape.loss for a in lab.topo.access_networks if a.shape is not None), default=0.0)
        self.shutdown_wait = (SHUTDOWN_WAIT + RTO_INITIAL
                              + retransmission.margin(worst, retransmission.SCTP, exchanges=2))

    def endpoints(self) -> tuple[list[str], list[str]]:
        """(the MN's addresses, the CN's) of the association's families: the CN's from the
        plan, the MN's those it holds on the network it is attached to now. A family the MN
        lacks there (an IPv4-only network in a dual-stack association) joins later, by ADD_IP."""
        fams = self.params.families
        cn = [a for f in fams if (a := self.lab.plan.address_of(self.cn, f))]
        missing = [f"IPv{f}" for f in fams if not self.lab.plan.address_of(self.cn, f)]
        if missing:
            raise TestbedError(f"traffic.families: {self.cn} has no {' or '.join(missing)} address")
        attached = self.lab.mobile.attached[0]
        st = self.lab.access_state(attached)
        held = {4: st.ipv4[:1], 6: st.ipv6[:1]}
        mn = [a for f in fams for a in held[f]]
        if not mn:
            raise TestbedError(f"traffic.families: the MN holds no IPv{'/IPv'.join(map(str, fams))} "
                               f"address on {attached} to start the association from")
        return mn, cn

    def start(self) -> None:
        cn_rt, mn_rt = self.lab.runtime(self.cn), self.lab.runtime(self.mn)
        mn_addrs, cn_addrs = self.endpoints()
        cn_addr, mn_addr = ",".join(cn_addrs), ",".join(mn_addrs)
        for d in (self.dir_cn, self.dir_mn):
            d.mkdir(parents=True, exist_ok=True)
        self.server_stats.unlink(missing_ok=True)
        self.client_stats.unlink(missing_ok=True)
        self.server_pid = cn_rt.spawn(self.server_argv(cn_addr), log=self.dir_cn / "server.log")
        self._wait("server", self.server_stats.exists, self.cn, self.server_pid,  # written once it listens
                   self.dir_cn / "server.log")
        self.client_pid = mn_rt.spawn(client_argv(sys.executable, mn_addr, cn_addr, self.client_stats,
                                                  self.params, self.control, self._key(self.mn),
                                                  self.shutdown_wait),
                                      log=self.dir_mn / "client.log")
        try:
            self._wait("client association", self._associated, self.mn, self.client_pid,
                       self.dir_mn / "client.log")
        except AssociationRefused:
            self.client_pid = 0
            cn_rt.stop(self.server_pid, grace=2.0)  # no association will come
            self.server_pid = 0
            raise

    def exited(self, what: str, node: str, status: int, log: Path) -> None:
        if status == REFUSED and node == self.mn:
            err = (self._read(self.client_stats) or {}).get("error") or "ABORT"
            raise AssociationRefused(f"SCTP traffic: {self.cn} refused the association ({err})")
        super().exited(what, node, status, log)

    def server_argv(self, addr: str) -> list[str]:
        """The CN's server: on its kernel's SCTP, or on usrsctp (its settings as arguments)."""
        common = ["--port", str(PORT), "--stats", str(self.server_stats),
                  *(["--echo"] if self.params.echo else [])]
        spec = self.lab.sctp_settings(self.cn)
        if kernel_nodes.stack_of(spec) != "usrsctp":
            return server_argv(sys.executable, addr, self.server_stats, self.params, self._key(self.cn))
        if spec.auth_key:
            raise TestbedError(f"{self.cn}: sctp.auth_key is not supported on usrsctp here")
        from testbed.sctp.usrsctp import sysctls_from_linux

        values = sysctls_from_linux({k: getattr(spec, k) for k in SCTP_SYSCTLS})
        return [sys.executable, "-m", "testbed.sctp.usrsctp", "--bind", addr, *common,
                *(f"--sysctl={k}={v}" for k, v in values.items())]

    def _key(self, node: str) -> list[str]:
        key = self.lab.sctp_settings(node).auth_key
        return ["--auth-key", key] if key else []

    def _associated(self) -> bool:
        """The client's driver answers a status request (it serves once associated); an
        answer in another protocol version ends the wait with one line naming it."""
        try:
            r = self.lab.runtime(self.mn).unix_request(str(self.control), encode(Status()), timeout=2)
        except TestbedError:
            return False  # not listening yet
        try:
            return isinstance(decode_reply(r), State)
        except ProtocolError as e:
            raise TestbedError(f"the traffic client's binding driver on {self.mn} at {self.control}: "
                               f"{e}") from e

    def stop(self, hurry: bool = False) -> None:
        """End the client (a graceful SHUTDOWN), then the server, which ends with the
        association. ``hurry`` (an interrupted run): a short grace each, the user is waiting;
        a client blocked in connect ignores TERM and is killed."""
        errors = []
        if self.client_pid:
            grace = 0.5 if hurry else self.shutdown_wait + 2.0  # its SHUTDOWN (or ABORT) first
            try:
                self.lab.runtime(self.mn).stop(self.client_pid, grace=grace)
            except TestbedError as e:  # its node is gone (a fault): nothing left to stop
                errors.append(f"client on {self.mn}: {e}")
            self.client_pid = 0
        if self.server_pid:
            try:
                cn = self.lab.runtime(self.cn)
                if hurry or cn.wait(self.server_pid, self.shutdown_wait + 2.0) is None:
                    cn.stop(self.server_pid, grace=0.3 if hurry else 2.0)
            except TestbedError as e:
                errors.append(f"server on {self.cn}: {e}")
            self.server_pid = 0
        if errors:
            raise TestbedError("SCTP traffic could not be stopped: " + "; ".join(errors))

    def results(self) -> dict[str, Any]:
        return {"server": self._read(self.server_stats), "client": self._read(self.client_stats)}

    def summarise(self, res: dict[str, Any], log) -> None:
        log_server(log, res.get("server") or {})
