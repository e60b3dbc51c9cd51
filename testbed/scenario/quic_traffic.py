"""QUIC traffic for a scenario: a server on the correspondent, a client on the mobile node.

The pairs, by the nodes' ``quic.stack``:

- aioquic MN, aioquic CN: ``testbed.quic.app``, the numbered messages on one stream, echoed;
- aioquic MN, ngtcp2 CN: ``gtlsserver --htdocs`` holding the numbered files ``m/<seq>``; the
  client GETs one per message (HTTP/3);
- ngtcp2 MN, aioquic CN: ``gtlsclient`` GETs ``/stream``; the aioquic server sends the numbered
  messages as its body.

An aioquic client embeds the QUIC binding driver, which the MN's binding process drives from
the agent's events (``traffic.binding: trash``). ``gtlsclient`` migrates once, on its own timer
(``--change-local-addr``, ``traffic.binding: timer``, ``traffic.migrate_after``), to whatever
source address the routing table gives then: that migration is not the agent's, and the run
says so (``lab.quic`` in verdict.json, the rule ``quic.timer_migration``).

Every endpoint writes its TLS secrets as ``keylog-<node>.txt`` (aioquic's own option; ngtcp2's
GnuTLS reads ``SSLKEYLOGFILE``); the run merges them into ``pcaps/keylog.txt`` beside the
captures. ngtcp2 sends with UDP GSO: the lab turns segmentation offload off on its node's
interfaces first (``testbed.host.offload``), so every capture and every guest sees one packet
per datagram.

``traffic.json``: ``{"transport": "quic", "pair": {mn, cn}, "server": {...}, "client": {...}}``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from testbed.conformance.verdict import Evidence, RuleResult
from testbed.errors import ConfigError, TestbedError
from testbed.host import netns
from testbed.host.offload import disable_udp_segmentation
from testbed.mobility.protocol import ProtocolError, State, Status, decode_reply, encode
from testbed.model.topology import Topology
from testbed.quic import keylog, stacks
from testbed.quic.app import DEFAULT_PORT
from testbed.quic.certs import self_signed
from testbed.quic.client import HTDOCS_PREFIX
from testbed.scenario.model import Scenario, Traffic
from testbed.scenario.traffic import TrafficRun, log_server
from testbed.traffic.messages import SeqTracker, ServerStats, encode_message, note_arrival, split_messages

PORT = DEFAULT_PORT
IDLE_TIMEOUT_S = 60  # ngtcp2's --timeout: longer than any gap a scenario moves through
HTDOCS_MARGIN_S = 20.0  # files beyond the scenario's longest traffic time, at its rate
TIMER_RULE = "quic.timer_migration"
STREAM_PATH = "/stream"


def quic_peer_stack(topo: Topology, mn: str, cn: str) -> tuple[str, str]:
    return topo.nodes[mn].quic.stack, topo.nodes[cn].quic.stack


def preflight(topo: Topology, scenario: Scenario, cn: str | None, source: str) -> dict[str, Any]:
    """Before anything is made: the pair is one the lab runs, its stacks are installed, the
    binding fits the MN's stack. Returns what served each end (for verdict.json's lab block)."""
    params = scenario.traffic or Traffic()
    mn = topo.mobile.node
    if cn is None:
        raise ConfigError(source, "traffic.transport", "quic needs a mobile node and a host with "
                          "quic.stack set", "give mn and cn `quic: {stack: aioquic}` in the topology")
    mn_stack, cn_stack = quic_peer_stack(topo, mn, cn)
    if mn_stack == "ngtcp2" and cn_stack == "ngtcp2":
        raise ConfigError(source, f"nodes.{cn}.quic.stack", "ngtcp2 on both ends carries no message "
                          "stream of the lab's", "give one end stack: aioquic")
    want = "timer" if mn_stack == "ngtcp2" else "trash"
    if params.binding != want:
        why = ("gtlsclient migrates on its own timer" if mn_stack == "ngtcp2"
               else "an aioquic MN is migrated by the binding process")
        raise ConfigError(source, "traffic.binding", f"{params.binding}: {why}", f"use binding: {want}")
    if len(params.families) != 1:
        raise ConfigError(source, "traffic.families", "a QUIC connection here runs over one address "
                          "family", "give [4] or [6]")
    if len(topo.mobiles) > 1:
        raise ConfigError(source, "traffic.transport", "QUIC traffic runs one mobile node",
                          "use a topology with one mobile node")
    served = {mn: stacks.node_stack(topo, mn).to_dict(), cn: stacks.node_stack(topo, cn).to_dict()}
    info: dict[str, Any] = {"nodes": served, "pair": {"mn": mn_stack, "cn": cn_stack},
                            "migration": "agent" if want == "trash" else "timer",
                            "agent_driven": want == "trash"}
    if want == "timer":
        info["migrate_after_s"] = params.migrate_after
    return info


class QuicTraffic(TrafficRun):
    kind = "QUIC traffic"

    def __init__(self, lab, cn: str, params: Traffic, out: Path, scenario: Scenario) -> None:
        super().__init__(lab, cn, params, out)
        self.mn = lab.topo.mobile.node
        self.info = preflight(lab.topo, scenario, cn, f"scenario {scenario.name}")
        self.mn_stack, self.cn_stack = self.info["pair"]["mn"], self.info["pair"]["cn"]
        self.dir_mn = lab.state.dir / self.mn / "traffic"
        self.control = lab.wiring.traffic_control
        self.family = params.families[0]
        self.files = int((scenario.traffic_seconds() + HTDOCS_MARGIN_S) * params.rate) + 1
        self.server_pid = self.client_pid = 0
        self.server_stats = self.dir_cn / "quic-server.json"
        self.client_stats = self.dir_mn / "quic-client.json"
        self.download = self.dir_mn / "download"
        self.keylogs = {self.mn: self.dir_mn / keylog.node_file(self.mn),
                        cn: self.dir_cn / keylog.node_file(cn)}
        self.offloads: dict[str, list[str]] = {}

    # -- start
    def start(self) -> None:
        cn_addr = self.lab.plan.address_of(self.cn, self.family)
        if not cn_addr:
            raise TestbedError(f"{self.kind}: the correspondent {self.cn} has no IPv{self.family} address")
        mobile = self.lab.mobile
        if not mobile.attached:
            raise TestbedError(f"{self.kind}: {self.mn} is attached to no access router")
        st = mobile.access_state(mobile.attached[0])
        held = st.ipv4 if self.family == 4 else st.ipv6
        if not held:
            raise TestbedError(f"{self.kind}: {self.mn} holds no IPv{self.family} address on "
                               f"{mobile.attached[0]} to start from")
        for d in (self.dir_cn, self.dir_mn):
            d.mkdir(parents=True, exist_ok=True)
        for p in (self.server_stats, self.client_stats, *self.keylogs.values()):
            p.unlink(missing_ok=True)
        if not self.lab.nodes.own_kernel(self.mn):  # (a kernel node's socket is the guest's)
            self.control.unlink(missing_ok=True)
        for node, stack in ((self.cn, self.cn_stack), (self.mn, self.mn_stack)):
            if stack == "ngtcp2":  # its UDP GSO buffers, segmented before any capture sees them
                ifnames = [i.ifname for i in self.lab.plan.nodes[node].ifaces]
                self.offloads[node] = netns.call_in(self.lab.state.ns(node), disable_udp_segmentation,
                                                    ifnames)
        self._start_server(cn_addr)
        self._start_client(held[0], cn_addr)

    def _start_server(self, cn_addr: str) -> None:
        rt = self.lab.runtime(self.cn)
        cert, key = self.dir_cn / "cert.pem", self.dir_cn / "key.pem"
        self_signed(self.cn, [cn_addr], cert, key)
        log = self.dir_cn / "quic-server.log"
        if self.cn_stack == "aioquic":
            argv = [sys.executable, "-m", "testbed.quic.app", "server", "--bind", cn_addr,
                    "--port", str(PORT), "--cert", str(cert), "--key", str(key),
                    "--stats", str(self.server_stats), "--keylog", str(self.keylogs[self.cn]),
                    "--rate", f"{self.params.rate:g}",
                    "--size", str(self.params.size), *(["--echo"] if self.params.echo else [])]
            self.server_pid = rt.spawn(argv, log=log)
            self._wait("server", self.server_stats.exists, self.cn, self.server_pid, log)
            return
        htdocs = self.write_htdocs()
        argv = [str(stacks.GTLSSERVER), "--quiet", "--htdocs", str(htdocs), f"--timeout={IDLE_TIMEOUT_S}s",
                "--max-streams-bidi=1000", cn_addr, str(PORT), str(key), str(cert)]
        self.server_pid = rt.spawn(argv, log=log, env={"SSLKEYLOGFILE": str(self.keylogs[self.cn])})
        self._wait("server", lambda: self._listening(rt), self.cn, self.server_pid, log)

    def write_htdocs(self) -> Path:
        """The numbered files gtlsserver serves: ``m/<seq>`` holds message ``seq``."""
        htdocs = self.dir_cn / "htdocs"
        d = htdocs / HTDOCS_PREFIX
        d.mkdir(parents=True, exist_ok=True)
        for seq in range(self.files):
            (d / str(seq)).write_bytes(encode_message(seq, self.params.size, 0.0))
        return htdocs

    def _listening(self, rt) -> bool:
        cp = rt.run(["ss", "-Hlun", f"sport = :{PORT}"], check=False, timeout=5)
        return bool(cp.stdout.strip())

    def _start_client(self, local: str, cn_addr: str) -> None:
        rt = self.lab.runtime(self.mn)
        log = self.dir_mn / "quic-client.log"
        if self.mn_stack == "aioquic":
            argv = [sys.executable, "-m", "testbed.quic.app", "client", "--local", local, "--server", cn_addr,
                    "--port", str(PORT), "--rate", f"{self.params.rate:g}", "--size", str(self.params.size),
                    "--stats", str(self.client_stats), "--keylog", str(self.keylogs[self.mn]),
                    "--control", str(self.control), "--sni", self.cn]
            if self.cn_stack == "ngtcp2":
                argv += ["--http3", "--count", str(self.files)]
            self.client_pid = rt.spawn(argv, log=log)
            self._wait("client connection", lambda: self._connected(rt), self.mn, self.client_pid, log)
            return
        self.download.mkdir(parents=True, exist_ok=True)
        (self.download / STREAM_PATH.strip("/")).unlink(missing_ok=True)
        argv = [str(stacks.GTLSCLIENT), "--quiet", "--no-quic-dump", "--no-http-dump",
                f"--download={self.download}", f"--change-local-addr={self.params.migrate_after:g}s",
                "--exit-on-all-streams-close", f"--timeout={IDLE_TIMEOUT_S}s",
                cn_addr, str(PORT), f"https://{cn_addr}:{PORT}{STREAM_PATH}"]
        self.client_pid = rt.spawn(argv, log=log, env={"SSLKEYLOGFILE": str(self.keylogs[self.mn])})
        self._wait("client request", self._requested, self.mn, self.client_pid, log)

    def _connected(self, rt) -> bool:
        """The client's driver answers a status request (it serves once the handshake is
        confirmed), wherever the node runs; an answer in another protocol version ends the
        wait with one line naming it."""
        try:
            r = rt.unix_request(str(self.control), encode(Status()), timeout=2)
        except TestbedError:
            return False  # not listening yet
        try:
            return isinstance(decode_reply(r), State)
        except ProtocolError as e:
            raise TestbedError(f"the QUIC client's binding driver on {self.mn} at {self.control}: {e}") from e

    def _requested(self) -> bool:
        conns = (self._read(self.server_stats) or {}).get("connections") or []
        return any(c.get("requests") for c in conns)

    # -- stop
    def stop(self, hurry: bool = False) -> None:
        """An aioquic client ends its stream and closes; gtlsclient exits once the server ends
        its body, so then the server is told first."""
        errors: list[str] = []
        mn, cn = self.lab.runtime(self.mn), self.lab.runtime(self.cn)
        if self.mn_stack == "ngtcp2" and self.server_pid:
            self._quietly(errors, f"server on {self.cn}", lambda: cn.signal(self.server_pid, signal.SIGTERM))
        if self.client_pid:
            def end_client() -> None:
                if self.mn_stack == "aioquic":
                    mn.signal(self.client_pid, signal.SIGTERM)
                if mn.wait(self.client_pid, 0.5 if hurry else 10.0) is None:
                    mn.stop(self.client_pid, grace=0.3 if hurry else 1.0)

            self._quietly(errors, f"client on {self.mn}", end_client)
            self.client_pid = 0
        if self.server_pid:
            def end_server() -> None:
                if self.cn_stack == "ngtcp2" or hurry:  # gtlsserver serves until stopped
                    cn.stop(self.server_pid, grace=0.3 if hurry else 2.0)
                    return
                cn.signal(self.server_pid, signal.SIGTERM)
                if cn.wait(self.server_pid, 8.0) is None:
                    cn.stop(self.server_pid, grace=1.0)

            self._quietly(errors, f"server on {self.cn}", end_server)
            self.server_pid = 0
        if errors:
            raise TestbedError(f"{self.kind} could not be stopped: " + "; ".join(errors))

    @staticmethod
    def _quietly(errors: list[str], who: str, fn) -> None:
        try:
            fn()
        except TestbedError as e:  # its node is gone (a fault): nothing left to stop
            errors.append(f"{who}: {e}")

    # -- results
    def results(self) -> dict[str, Any]:
        res: dict[str, Any] = {"transport": "quic", "pair": self.info["pair"],
                               "server": self._read(self.server_stats),
                               "client": self._read(self.client_stats)}
        if self.mn_stack == "ngtcp2":
            res["client"] = {"role": "client", "stack": "ngtcp2", **self.downloaded()}
        if self.offloads:
            res["gso_off"] = self.offloads
        return res

    def downloaded(self) -> dict[str, Any]:
        """gtlsclient's body as the numbered messages it carried (no arrival times: it writes
        the body to a file as it comes)."""
        path = self.download / STREAM_PATH.strip("/")
        try:
            buf = bytearray(path.read_bytes())
        except OSError:
            return {"error": f"no body downloaded ({path})"}
        stats, tracker = ServerStats(role="client"), SeqTracker()
        try:
            msgs = split_messages(buf)
        except ValueError as e:
            return {"error": f"body out of step: {e}"}
        for m in msgs:
            note_arrival(stats, tracker, m, 0.0, "", -1)
        return {"responses": {k: v for k, v in stats.__dict__.items() if k != "messages"},
                "trailing_bytes": len(buf)}

    def summarise(self, res: dict[str, Any], log) -> None:
        for conn in (res.get("server") or {}).get("connections", []):
            log_server(log, {k: v for k, v in conn.items() if k != "sent"}, transport="quic")
            for sw in conn.get("datagram_sources", []):
                log.add({"event": "traffic", "op": "datagram_source", "wall": sw["t"], "transport": "quic",
                         **sw})
        client = res.get("client") or {}
        if self.cn_stack == "ngtcp2" and client.get("responses"):  # the stream recorded at the MN
            log_server(log, client["responses"], transport="quic", side="client")
        for rec in client.get("paths", []):
            log.add({"event": "traffic", "op": "quic_path", "wall": rec["t"], **rec})

    def close(self, log, hurry: bool = False) -> None:
        super().close(log, hurry)
        pcaps = self.out / "pcaps"
        pcaps.mkdir(parents=True, exist_ok=True)
        present = {n: p for n, p in self.keylogs.items() if p.exists()}
        for node, path in present.items():
            (pcaps / keylog.node_file(node)).write_bytes(path.read_bytes())
        counts = keylog.merge(present, pcaps / keylog.MERGED)
        log.add({"event": "traffic", "op": "keylog", "transport": "quic", "secrets": counts})

    # -- what the run adds to the verdict
    def lab_info(self) -> dict[str, Any]:
        return {"quic": self.info}

    def rules(self) -> list[RuleResult]:
        if self.mn_stack != "ngtcp2":
            return []
        conns = (self._read(self.server_stats) or {}).get("connections") or []
        return [timer_migration_rule(conns[0] if conns else None, self.params.migrate_after)]


def timer_migration_rule(conn: dict[str, Any] | None, after: float, slack: float = 0.5) -> RuleResult:
    """gtlsclient's one migration, as the server saw the client's datagrams: from the address
    it began on to another one, no sooner than ``after`` s past its request (the handshake is
    before the request, so this bounds the timer from below), and on the new address to the
    end. It was not driven by the agent: the message says so."""
    what = "not driven by the agent: gtlsclient's --change-local-addr timer"
    if not conn or not conn.get("requests"):
        return RuleResult(TIMER_RULE, "skip", f"no gtlsclient request reached the server ({what})")
    t_req = conn["requests"][0]["t"]
    first = conn.get("peer") or ""
    moves = conn.get("datagram_sources") or []
    after_timer = [m for m in moves if m["t"] >= t_req + after - slack]
    last = conn.get("source") or (moves[-1]["to"] if moves else first)
    ev = tuple(Evidence("traffic.json", 0, m["t"], f"client datagrams from {m['to']} (was {m['from']})")
               for m in moves)
    if after_timer and last != first:
        m = after_timer[0]
        return RuleResult(TIMER_RULE, "pass", f"moved from {first} to {m['to']} {m['t'] - t_req:.2f} s after "
                          f"its request (timer {after:g} s); {what}", ev)
    return RuleResult(TIMER_RULE, "fail", f"still sending from {last or first} after the {after:g} s timer "
                      f"({len(moves)} source changes seen); {what}", ev)

