"""Benchmark: how late the resident trace replayers apply a trace's changes, beside a process
per change, in the same run on the same nodes.

A synthetic mahimahi trace (seeded; a rate that wanders round ``--mean`` Mbit/s, a change
every 100 ms) is replayed on ar2's access link, each direction by its node's replayer (ar2: a
namespace on the host kernel; mn: a User-Mode Linux node in two-ar-sctp), for ``--minutes``.
The baseline applies the first ``--baseline-s`` seconds of the same changes with one ``tc``
process per change through the node's runtime (``ip netns exec``; the guest agent's exec on a
UML node), as a script driving ``tc`` would. The floor, during the replay, is a process in
ar2's namespace with the replayer's real-time priority that only wakes every 100 ms: how late
this machine wakes anything at that load. Lateness is applied (or awake) minus due on the
wall clock. Target (issue 21): p99 <= 10 ms over a 10-minute trace.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.lab import Lab  # noqa: E402
from testbed.lab.replay import TraceReplay  # noqa: E402
from testbed.model import replay  # noqa: E402
from testbed.model.topology import TraceSource  # noqa: E402
from testbed.replay.link import tbf_burst  # noqa: E402


def mahimahi(minutes: float, mean_mbit: float, seed: int) -> str:
    """Delivery opportunities (ms) whose count per 100 ms wanders round the mean rate."""
    rng = random.Random(seed)
    per_bin = mean_mbit * 1e6 * 0.1 / (1500 * 8)
    level, lines = per_bin, []
    for b in range(int(minutes * 600)):
        level = min(max(level + rng.gauss(0, per_bin * 0.15), per_bin * 0.2), per_bin * 2)
        n = max(1, round(level + rng.gauss(0, 1)))
        lines += [str(b * 100 + int(i * 100 / n)) for i in range(n)]
    lines.append(str(int(minutes * 60_000)))
    return "\n".join(lines) + "\n"


def stats(late: list[float]) -> str:
    late = sorted(late)
    p99 = late[min(len(late) - 1, int(0.99 * len(late)))]
    return (f"n={len(late):5d}  p50 {statistics.median(late):7.2f} ms  p99 {p99:7.2f} ms  "
            f"max {late[-1]:7.2f} ms")


SLEEPER = """
import json, os, sys, time
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
start, seconds, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
late = []
for i in range(int(seconds * 10)):
    due = start + i * 0.1
    left = due - time.time()
    if left > 0:
        time.sleep(left)
    late.append((time.time() - due) * 1000)
open(out, "w").write(json.dumps(late))
"""


def exec_baseline(lab: Lab, plans: dict[str, replay.NodeReplay], seconds: float) -> dict[str, list[float]]:
    """The same changes, a ``tc`` process each, for the first ``seconds``."""
    out: dict[str, list[float]] = {}

    def one(iface: replay.IfaceReplay, start: float) -> None:
        rt = lab.runtime(iface.node)
        late = out.setdefault(iface.node, [])
        for c in iface.changes:
            if c.t > seconds:
                break
            due = start + c.t
            left = due - time.time()
            if left > 0:
                time.sleep(left)
            bps = round((c.quality.rate_kbit or 1) * 1000)
            rt.run(["tc", "qdisc", "replace", "dev", iface.ifname, "root", "tbf", "rate", f"{bps}bit",
                    "burst", str(tbf_burst(bps)), "latency", "100ms"])
            late.append((time.time() - due) * 1000)

    start = time.time() + 1.0
    threads = [threading.Thread(target=one, args=(f, start)) for p in plans.values() for f in p.ifaces]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for p in plans.values():
        for f in p.ifaces:
            lab.runtime(f.node).run(["tc", "qdisc", "del", "dev", f.ifname, "root"], check=False)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--topology", default="two-ar-sctp")
    ap.add_argument("--lab", default=os.environ.get("TESTBED_LAB_PREFIX", "tb") + "rb")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--baseline-s", type=float, default=60.0)
    ap.add_argument("--mean", type=float, default=4.0, help="mean rate, Mbit/s")
    ap.add_argument("--seed", type=int, default=21)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    (tmp / "trace.mahi").write_text(mahimahi(args.minutes, args.mean, args.seed))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lab = Lab.up(args.topology, args.lab)
    try:
        r = TraceReplay.of(lab.nodes, lab.wiring, {"ar2": TraceSource(trace=str(tmp / "trace.mahi"),
                                                                      format="mahimahi")}, args.seed)
        plans = r.plans()
        base = exec_baseline(lab, plans, args.baseline_s)
        print(f"load average after the baseline: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        start = r.start()
        floor_out = tmp / "floor.json"
        floor = lab.runtime("ar2").spawn([sys.executable, "-c", SLEEPER, f"{start:.6f}",
                                          str(args.minutes * 60), str(floor_out)], log=tmp / "floor.log")
        time.sleep(max(0.0, start + args.minutes * 60 - time.time()))
        recs = r.stop()
        lab.runtime("ar2").wait(floor, 30)
        floor_late = json.loads(floor_out.read_text())
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        sched = {x["node"]: x.get("sched") for x in recs if x.get("op") == "ready"}
        print(f"floor: a SCHED_FIFO sleeper in ar2's namespace, every 100 ms: {stats(floor_late)}")
        for node in plans:
            late = [x["late_ms"] for x in recs if x.get("op") == "apply" and x["node"] == node]
            kind = "uml" if lab.nodes.own_kernel(node) else "namespace"
            woke = [x["woke_ms"] for x in recs if x.get("op") == "apply" and x["node"] == node]
            print(f"{node} ({kind}, {sched.get(node)}) replayer, {args.minutes:g} min: {stats(late)}")
            print(f"{node} ({kind}) … of which awake (due to wake-up): {stats(woke)}")
            print(f"{node} ({kind}) tc process per change, {args.baseline_s:g} s: {stats(base[node])}")
            b99 = sorted(base[node])[int(0.99 * len(base[node]))]
            r99 = sorted(late)[int(0.99 * len(late))]
            f99 = sorted(floor_late)[int(0.99 * len(floor_late))]
            print(f"{node}: p99 ratio replayer / process per change = {r99 / b99:.3f}; "
                  f"replayer / floor = {r99 / f99:.2f}")
    finally:
        lab.close()
        Lab.open(args.lab).down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
