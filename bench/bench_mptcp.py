"""Benchmark: MPTCP binding updates, one mobile node moving many times, then many moving at once.

    .venv/bin/python bench/bench_mptcp.py [--moves 20] [--mobiles 50] [--skip-moves] [--skip-many]

1. One MPTCP MN (two-ar-mptcp) ping-pongs between ar1 and ar2 ``--moves`` times while its
   connection carries traffic. From the captures and the agent's events, per handover: link-up →
   configured, → MP_JOIN established, → new subflow active (MP_PRIO B=0) and old one backup
   (MP_PRIO B=1), → DNS UPDATE answered; beside the protocol floors measured in the same run
   (the DHCP exchange, MP_JOIN's SYN → SYN/ACK, ADD_ADDR → echo, the DNS UPDATE), and their sum
   on the critical path (DHCP + join) as the ratio's baseline.
2. ``--mobiles`` MPTCP MNs (many-mn, copied that many times) hand over at once, each with its
   connection: lab up time, the lab's memory (PSS summed over every process in its namespaces,
   peak while the traffic runs), per-MN link-up → old subflow backup and → DNS answered, p50 and
   p95, and whether every rule of every MN passed.
3. ``--uml-mobiles N`` (0: skipped): the same many-MN lab with kernel-SCTP MNs, each on a
   User-Mode-Linux kernel of its own, moving at once (agent, binding process and SIG(0) update
   on each; no SCTP traffic: the SCTP app serves one association): lab up time and the host
   memory of each UML node (PSS of its processes plus its memory file), to tell how many fit.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.host import netns  # noqa: E402
from testbed.lab import Lab  # noqa: E402
from testbed.model import loader  # noqa: E402
from testbed.runtimes.hostmem import rollup  # noqa: E402
from testbed.scenario.model import Move, PingPong, Scenario, Traffic, TrafficStep, Wait  # noqa: E402
from testbed.scenario.runner import Runner  # noqa: E402

PHASES = ("configured", "join_acked", "prio_new", "prio_old", "dns_acked")
FLOORS = ("dhcp", "join", "add_addr", "dns")


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def ms(x: float) -> str:
    return f"{x * 1e3:7.1f} ms"


def line(name: str, xs: list[float], extra: str = "") -> None:
    if xs:
        print(f"  {name:34} median {ms(statistics.median(xs))}  p95 {ms(p95(xs))}  (n={len(xs)}){extra}")


def collect(handovers, phases=PHASES) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    offs: dict[str, list[float]] = {}
    floors: dict[str, list[float]] = {}
    for h in handovers:
        for p in phases:
            if p in (h.get("offsets") or {}):
                offs.setdefault(p, []).append(h["offsets"][p])
        for f, v in (h.get("floors") or {}).items():
            floors.setdefault(f, []).append(v["seconds"])
    return offs, floors


def moves(n: int, out: Path) -> None:
    print(f"\n1. one MPTCP MN, {n} moves (two-ar-mptcp, make-before-break ping-pong with 0.5 s overlap, "
          "traffic 50 msg/s)")
    lab = Lab.up("two-ar-mptcp", "tbmpb")
    try:
        sc = Scenario(name="bench-mptcp-moves", topology="two-ar-mptcp",
                      traffic=Traffic(transport="mptcp", rate=50), rules="mptcp,dns,continuity",
                      steps=[TrafficStep(action="start"), Wait(seconds=1.0),
                             PingPong(between=("ar1", "ar2"), times=n, dwell=1.0, overlap=0.5),
                             TrafficStep(action="stop")])
        result = Runner(sc, lab, out / "moves").run()
    finally:
        lab.close()
        Lab.open("tbmpb").down()
    offs, floors = collect(result.verdict.handovers)
    print(f"  {len(result.verdict.handovers)} handovers, verdict {'PASS' if result.passed else 'FAIL'}")
    for p in PHASES:
        line(f"link-up → {p}", offs.get(p, []))
    for f in FLOORS:
        line(f"floor {f}", floors.get(f, []))
    per = [h for h in result.verdict.handovers if {"dhcp", "join"} <= set(h.get("floors") or {})
           and "prio_new" in (h.get("offsets") or {})]
    if per:
        base = [h["floors"]["dhcp"]["seconds"] + h["floors"]["join"]["seconds"] for h in per]
        active = [h["offsets"]["prio_new"] for h in per]
        ratio = statistics.median(active) / statistics.median(base)
        line("floor on the path: DHCP + MP_JOIN", base)
        print(f"  new subflow active / floor on the path: ×{ratio:.1f} "
              f"(the rest: agent, binding process, path manager, link-up to first DHCP message)")


def lab_memory(lab_name: str, nodes: list[str]) -> tuple[int, int]:
    """(PSS, RSS) in KiB summed over every process in the lab's namespaces."""
    pss = rss = 0
    for node in nodes:
        for pid in netns.pids(f"{lab_name}-{node}"):
            r = rollup(pid)
            pss += r.get("Pss", 0)
            rss += r.get("Rss", 0)
    return pss, rss


def many(count: int, out: Path) -> None:
    print(f"\n2. {count} MPTCP MNs handing over at once (many-mn, mobile.count {count})")
    data = yaml.safe_load((loader.TOPOLOGY_DIR / "many-mn.yaml").read_text())
    data["mobile"]["count"] = count
    path = out / f"many-mn-{count}.yaml"
    path.write_text(yaml.safe_dump(data))
    t0 = time.perf_counter()
    lab = Lab.up(path, "tbmpn")
    up = time.perf_counter() - t0
    nodes = list(lab.plan.nodes)
    peak = [lab_memory("tbmpn", nodes)]
    pss0, rss0 = peak[0]
    print(f"  lab up {up:.1f} s; memory after up: PSS {pss0 / 1024:.0f} MiB (RSS {rss0 / 1024:.0f} MiB)")
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(2.0):
            peak.append(lab_memory("tbmpn", nodes))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        sc = Scenario(name=f"bench-many-{count}", topology=str(path), rules="mptcp,dns,continuity",
                      traffic=Traffic(transport="mptcp", rate=20),
                      steps=[TrafficStep(action="start"), Wait(seconds=3.0),
                             Move(to="ar2", mode="make-before-break", overlap=2.0), Wait(seconds=3.0),
                             TrafficStep(action="stop")])
        t1 = time.perf_counter()
        result = Runner(sc, lab, out / "many").run()
        run_s = time.perf_counter() - t1
    finally:
        stop.set()
        sampler.join()
        lab.close()
        t2 = time.perf_counter()
        Lab.open("tbmpn").down()
        down = time.perf_counter() - t2
    v = result.verdict
    failed = {mn: [r.id for r in mv.rules if not r.met] for mn, mv in v.mobiles.items() if not mv.passed}
    offs, _ = collect(v.handovers)
    pss = max(p for p, _ in peak) / 1024
    rss = max(r for _, r in peak) / 1024
    print(f"  run {run_s:.1f} s (traffic, the move, capture, checking every MN), lab down {down:.1f} s")
    print(f"  peak memory of the lab's processes: PSS {pss:.0f} MiB (RSS {rss:.0f} MiB), "
          f"{pss / count:.1f} MiB PSS per MN")
    print(f"  {len(v.handovers)} handovers of {count} MNs; every rule of every MN met: "
          f"{'yes' if v.passed else 'no'}" + (f"; failing: {failed}" if failed else ""))
    for p in PHASES:
        line(f"link-up → {p}", offs.get(p, []))


def uml_many(count: int, out: Path) -> None:
    print(f"\n3. {count} kernel-SCTP MNs on User-Mode Linux moving at once (many-mn, stack uml)")
    data = yaml.safe_load((loader.TOPOLOGY_DIR / "many-mn.yaml").read_text())
    data["name"] = "many-mn-uml"
    data["nodes"]["mn"] = {"role": "mobile", "sctp": {"stack": "uml"}}
    data["nodes"]["cn"] = {"role": "host"}
    data["mobile"]["count"] = count
    path = out / f"many-mn-uml-{count}.yaml"
    path.write_text(yaml.safe_dump(data))
    t0 = time.perf_counter()
    lab = Lab.up(path, "tbmpu")
    up = time.perf_counter() - t0
    try:
        mems = [lab.runtime(mn).memory().total_kib / 1024 for mn in lab.topo.mobiles]  # type: ignore[attr-defined]
        sc = Scenario(name=f"bench-uml-{count}", topology=str(path), rules="dns",
                      steps=[Move(to="ar2", mode="make-before-break", overlap=1.0)])
        result = Runner(sc, lab, out / "uml").run()
    finally:
        lab.close()
        Lab.open("tbmpu").down()
    with open("/proc/meminfo") as f:
        total_mib = int(next(x for x in f if x.startswith("MemTotal")).split()[1]) / 1024
    per = statistics.median(mems)
    print(f"  lab up {up:.1f} s; host memory per UML MN: median {per:.0f} MiB (max {max(mems):.0f}); "
          f"DNS rules of every MN met: {'yes' if result.passed else 'no'}")
    fit = int(total_mib * 0.8 / per)
    print(f"  on this box ({total_mib / 1024:.1f} GiB): about {fit} such MNs in 80% of its memory, "
          "before the lab's other daemons")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--mobiles", type=int, default=50)
    ap.add_argument("--skip-moves", action="store_true")
    ap.add_argument("--skip-many", action="store_true")
    ap.add_argument("--uml-mobiles", type=int, default=0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-mptcp-"))
    os.environ.setdefault("TESTBED_RUN_ROOT", str(tmp / "run"))
    print(f"machine: {platform.node()} {platform.release()} {os.cpu_count()} cores")
    if not args.skip_moves:
        moves(args.moves, tmp)
    if not args.skip_many:
        many(args.mobiles, tmp)
    if args.uml_mobiles:
        uml_many(args.uml_mobiles, tmp)
    print(f"\nresults: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
