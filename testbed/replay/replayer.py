"""The resident trace replayer of one node: ``python -m testbed.replay.replayer --plan PLAN
--log LOG --start-file FILE``.

It runs in the node's own network stack for the whole run, so a change costs a netlink message
or an nftables transaction, not a process (an exec costs 7-69 ms on a User-Mode Linux node).
Once ready (its netlink and nftables handles open, its interfaces found: the log's ``ready``
record) it waits for SIGUSR1, then reads the wall time of the plan's 0 from the start file, so
the lab can start every node's replayer first and give them all one start. Every change of the
plan (``model.replay.NodeReplay``) is applied at that start + its time on the wall clock, which
the lab's nodes share (a UML guest's clock is stepped onto the host's at boot); a looping trace
goes round until the replayer is stopped. A mobile node's plan also
carries its §3 metric updates, sent to its mobility agent as ``set-metrics`` requests.

Each change is logged once done, with how late it was (``late_ms``: applied minus due). On
SIGTERM or SIGINT the interfaces get their static shape back, then the process exits 0.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testbed.host import jsonlines
from testbed.model.replay import Change, MetricUpdate, NodeReplay

FLUSH_S = 1.0  # the log is written at most this often while changes come close together,
IDLE_FLUSH_S = 0.05  # and whenever the next change is further off than this
# a real-time priority, so that a busy node's other work does not delay a change: the replayer
# sleeps between changes and spends about a millisecond on each (a netlink message or an
# nftables transaction), and the kernel keeps 5 % of every second for other tasks anyway
# (sched_rt_runtime_us); where the node may not (no CAP_SYS_NICE) it runs as any process
RT_PRIORITY = 10


def realtime() -> str:
    """Take SCHED_FIFO where allowed; the scheduling policy in force, for the log."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        return "fifo"
    except (PermissionError, OSError):
        return "other"


def schedule(plan: NodeReplay) -> Iterator[tuple[float, int, Change | MetricUpdate]]:
    """Every change and metric update in time order: (seconds from start, interface index or
    -1 for a metric, what). Looping interfaces go round without end."""
    heap: list[tuple[float, int, int, int, int]] = []  # (t, seq, source, position, round)
    seq = 0
    for i, f in enumerate(plan.ifaces):
        if f.changes:
            heap.append((f.changes[0].t, seq, i, 0, 0))
            seq += 1
    if plan.metrics:
        heap.append((plan.metrics[0].t, seq, -1, 0, 0))
        seq += 1
    heapq.heapify(heap)
    while heap:
        t, _, src, pos, rnd = heapq.heappop(heap)
        if src < 0:
            yield t, -1, plan.metrics[pos]
            if pos + 1 < len(plan.metrics):
                heapq.heappush(heap, (plan.metrics[pos + 1].t, seq, -1, pos + 1, 0))
        else:
            f = plan.ifaces[src]
            yield t, src, f.changes[pos]
            nxt, nrnd = pos + 1, rnd
            if nxt == len(f.changes) and f.loop_s:
                nxt, nrnd = 0, rnd + 1
            if nxt < len(f.changes):
                heapq.heappush(heap, (f.changes[nxt].t + nrnd * (f.loop_s or 0), seq, src, nxt, nrnd))
        seq += 1


class Replayer:
    def __init__(self, plan: NodeReplay, log: Path, start_file: Path) -> None:
        self.plan, self.log, self.start_file = plan, log, start_file
        self.start = 0.0
        self.pending: list[dict[str, Any]] = []
        self.flushed = time.monotonic()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.stopping = False
        self.started = False
        self.agent: socket.socket | None = None  # a standing connection to the agent (metrics)
        self.answers = b""

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def _stop(self, *_: object) -> None:
        self.stopping = True
        self._wake()

    def _go(self, *_: object) -> None:
        self.started = True
        self._wake()

    def record(self, rec: dict[str, Any], force: bool = False) -> None:
        self.pending.append(rec)
        if force or time.monotonic() - self.flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            jsonlines.append(self.log, *self.pending)
        self.pending, self.flushed = [], time.monotonic()

    def wait_until(self, due: float | None) -> bool:
        """Until the wall clock reaches ``due`` (None: until stopped); False once stopped."""
        while not self.stopping:
            left = None if due is None else due - time.time()
            if left is not None and left <= 0:
                return True
            self._sleep(left)
        return False

    def _sleep(self, seconds: float | None) -> None:
        watched = [self.wake_r] + ([self.agent] if self.agent is not None else [])
        ready, _, _ = select.select(watched, [], [], seconds)
        if self.wake_r in ready:
            os.read(self.wake_r, 64)
        if self.agent is not None and self.agent in ready:
            self._answers()

    def wait_start(self) -> bool:
        """Until SIGUSR1 (then the start is read from the start file); False when stopped first."""
        while not (self.started or self.stopping):
            self._sleep(None)
        if self.stopping:
            return False
        self.start = float(self.start_file.read_text())
        return True

    def run(self) -> int:
        from pyroute2 import IPRoute

        from testbed.host.nft import Nft
        from testbed.replay.link import LinkShaper

        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGUSR1, self._go)
        if any(f.netem for f in self.plan.ifaces):
            # the kernel loads sch_netem at the first netem qdisc (a module in Debian's kernels):
            # once now, not at the first change
            subprocess.run(["modprobe", "-q", "sch_netem"], check=False, capture_output=True)
        ipr, nft = IPRoute(), Nft()
        shapers = [LinkShaper(ipr, nft, f.ifname, f.netem, f.base) for f in self.plan.ifaces]
        sched = realtime()
        self.record({"op": "ready", "node": self.plan.node, "wall": time.time(), "sched": sched,
                     "ifaces": [f.ifname for f in self.plan.ifaces]}, force=True)
        try:
            if not self.wait_start():
                return 0
            self.record({"op": "start", "start": self.start, "wall": time.time()}, force=True)
            for t, src, what in schedule(self.plan):
                due = self.start + t
                if self.pending and due - time.time() > IDLE_FLUSH_S:
                    self.flush()  # time to spare before the next change: the log is current
                if not self.wait_until(due):
                    break
                woke = time.time()
                if isinstance(what, MetricUpdate):
                    self._metric(what, t, due)
                else:
                    shapers[src].apply(what.quality)
                    done = time.time()
                    f = self.plan.ifaces[src]
                    q = what.quality
                    # late_ms: due to applied; woke_ms: due to awake (the rest is the kernel's,
                    # e.g. a qdisc change waiting for the RTNL lock another process holds)
                    self.record({"op": "apply", "t": round(t, 6), "late_ms": round((done - due) * 1000, 3),
                                 "woke_ms": round((woke - due) * 1000, 3),
                                 "ifname": f.ifname, "network": f.network, "direction": f.direction,
                                 "rate_kbit": q.rate_kbit, "delay_ms": q.delay_ms, "loss": q.loss,
                                 "wall": done})
            self.flush()
            self.wait_until(None)  # the plan is done: hold its last values until stopped
        finally:
            for f, s in zip(self.plan.ifaces, shapers, strict=True):
                s.restore(f.base)
            self.record({"op": "restored", "wall": time.time()}, force=True)
            nft.close()
            ipr.close()
            if self.agent is not None:
                self.agent.close()
        return 0

    def _metric(self, m: MetricUpdate, t: float, due: float) -> None:
        """One ``set-metrics`` line to the agent on a standing connection, not waited for: an
        agent busy with its other subscribers must not hold back the next change. Its answers
        are read when they come (``_answers``); a refusal is logged there."""
        rec: dict[str, Any] = {"op": "metric", "t": round(t, 6), "ifname": m.ifname, "network": m.network,
                               "values": dict(m.values)}
        line = jsonlines.dumps({"cmd": "set-metrics", "ifname": m.ifname, "values": dict(m.values)})
        try:
            if self.agent is None:
                self.agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.agent.connect(self.plan.agent_socket)
            self.agent.sendall(line.encode())
        except OSError as e:
            rec["error"] = f"{self.plan.agent_socket}: {e}"
            if self.agent is not None:
                self.agent.close()
            self.agent = None
        done = time.time()
        rec.update(late_ms=round((done - due) * 1000, 3), wall=done)
        self.record(rec)

    def _answers(self) -> None:
        """Read what the agent answered so far (its socket is readable)."""
        assert self.agent is not None
        try:
            data = self.agent.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            data, err = b"", str(e)
        else:
            err = "closed the connection"
        if not data:
            self.record({"op": "metric_error", "error": f"agent at {self.plan.agent_socket} {err}",
                         "wall": time.time()})
            self.agent.close()
            self.agent = None
            return
        self.answers += data
        *lines, self.answers = self.answers.split(b"\n")
        for ln in lines:
            if ln.strip() and not json.loads(ln).get("ok"):
                self.record({"op": "metric_error", "error": json.loads(ln).get("error"), "wall": time.time()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.replay.replayer", description=__doc__)
    ap.add_argument("--plan", required=True, type=Path, help="the node's replay plan (JSON)")
    ap.add_argument("--log", required=True, type=Path, help="JSON lines: every change as applied")
    ap.add_argument("--start-file", required=True, type=Path,
                    help="read at SIGUSR1: the wall-clock time of the plan's 0")
    args = ap.parse_args(argv)
    plan = NodeReplay.from_json(args.plan.read_text())
    return Replayer(plan, args.log, args.start_file).run()


if __name__ == "__main__":
    raise SystemExit(main())
