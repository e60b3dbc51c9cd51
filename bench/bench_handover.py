"""Benchmark: the handover as the architecture sees it, per kind of mobile node, same run.

    .venv/bin/python bench/bench_handover.py [--moves 20] [--qemu-moves 5] [--skip-qemu]
        [--kinds namespace,uml,uml-docker,qemu] [--rounds 1] [--lab-prefix tbh]

For each kind of node the lab is brought up (timed: the kernel-node lab's `up`), SCTP traffic
runs (where the MN has SCTP) and the MN ping-pongs between ar1 and ar2 make-before-break; the
checker's timeline gives every handover's phases from the captures and the agent's events.

* namespace MN (two-ar, no SCTP on this host): link-up → detected / configured;
* UML MN and CN (two-ar-sctp, the default): link-up → configured / SET_PRIMARY acked;
* the same on the docker backend (UML inside the MN's and CN's containers): its lab up and
  SET_PRIMARY acked beside the mininet backend's (the engine is held running for the run, as
  a lab of a user's would find it; its cold start is bench_docker's);
* QEMU/TCG MN and CN (two-ar-interop): the same phases, fewer moves (each takes seconds).

Prints median and p95 per phase, each kind's ratio to the namespace MN (configured) and to UML
(SET_PRIMARY acked), the protocol floors measured in the same captures (RS → RA, DHCP, ASCONF,
DNS UPDATE), lab `up` times and host memory per UML node. ``--rounds N`` repeats every kind N
times, the kinds interleaved, so a change in the host's load between kinds spreads over all of
them (the medians are over every round). Targets (from the project's issue):
UML link-up → SET_PRIMARY acked median ≤ 100 ms; kernel-node lab up ≤ 5 s; ≤ 64 MiB per node.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.backends import engine  # noqa: E402
from testbed.lab import Lab  # noqa: E402
from testbed.scenario.model import PingPong, Scenario, TrafficStep, Wait  # noqa: E402
from testbed.scenario.runner import Runner  # noqa: E402

PHASES = ("detected", "configured", "set_primary_acked")
FLOORS = ("rs_ra", "dhcp", "add_ip", "set_primary", "dns")


@dataclass
class Kind:
    name: str
    topology: str
    moves: int
    sctp: bool
    backend: str = "mininet"
    ups: list[float] = field(default_factory=list)
    offsets: dict[str, list[float]] = field(default_factory=dict)
    floors: dict[str, list[float]] = field(default_factory=dict)
    memory_mib: dict[str, float] = field(default_factory=dict)
    passed: int = 0  # rounds whose verdict passed
    rounds: int = 0
    handovers: int = 0


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def scenario(kind: Kind) -> Scenario:
    steps: list = [PingPong(between=("ar1", "ar2"), times=kind.moves, dwell=1.0)]
    if kind.sctp:
        steps = [TrafficStep(action="start"), Wait(seconds=1.0), *steps, TrafficStep(action="stop")]
    return Scenario(name=f"bench-{kind.name}", topology=kind.topology, steps=steps)


def measure(kind: Kind, out: Path, prefix: str) -> None:
    lab_name = f"{prefix}{kind.name[:2]}{kind.backend[0]}"
    t0 = time.perf_counter()
    lab = Lab.up(kind.topology, lab_name, backend=kind.backend)
    kind.ups.append(time.perf_counter() - t0)
    try:
        for node in ("mn", "cn"):
            if lab.nodes.kernel_info(node).stack == "uml":  # host PSS plus its memory file
                kind.memory_mib[node] = lab.runtime(node).memory().total_kib / 1024  # type: ignore[attr-defined]
        result = Runner(scenario(kind), lab, out / kind.name).run()
        for d in result.verdict.handovers:
            offs = d.get("offsets") or {}
            kind.handovers += 1
            for p in PHASES:
                if p in offs:
                    kind.offsets.setdefault(p, []).append(offs[p])
            for f, v in (d.get("floors") or {}).items():
                kind.floors.setdefault(f, []).append(v["seconds"])
        kind.passed += int(result.passed)
        kind.rounds += 1
    finally:
        lab.close()
        Lab.open(lab_name).down()


def ms(x: float) -> str:
    return f"{x * 1e3:8.1f} ms"


def report(kinds: list[Kind]) -> None:
    print(f"machine: {platform.node()} {platform.release()} {os.cpu_count()} cores; medians (p95)")
    ns = next((k for k in kinds if k.name == "namespace"), None)
    base = {p: statistics.median(v) for p, v in ns.offsets.items()} if ns else {}
    uml = next((k for k in kinds if k.name == "uml"), None)
    uml_sp = statistics.median(uml.offsets["set_primary_acked"]) if uml and uml.offsets.get(
        "set_primary_acked") else None
    for k in kinds:
        up = statistics.median(k.ups)
        vs = f" (×{up / statistics.median(uml.ups):.2f} mininet)" if uml and k.backend != uml.backend else ""
        print(f"\n{k.name}: {k.topology} on {k.backend}, lab up {up:.2f} s{vs}, {k.handovers} handovers, "
              f"verdict PASS in {k.passed} of {k.rounds} round(s)")
        for p in PHASES:
            xs = k.offsets.get(p)
            if not xs:
                continue
            m = statistics.median(xs)
            ratio = ""
            if p == "configured" and base.get(p):
                ratio = f"  ×{m / base[p]:.1f} the namespace MN"
            if p == "set_primary_acked" and uml_sp and k is not uml:
                ratio = f"  ×{m / uml_sp:.2f} UML on mininet"
            print(f"  link-up → {p:18} {ms(m)} ({ms(p95(xs)).strip()}){ratio}")
        for f in FLOORS:
            if k.floors.get(f):
                print(f"  floor {f:24} {ms(statistics.median(k.floors[f]))}")
        for node, mib in k.memory_mib.items():
            print(f"  host memory {node}: {mib:.1f} MiB (PSS of its host processes + its memory file)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--qemu-moves", type=int, default=5)
    ap.add_argument("--skip-qemu", action="store_true")
    ap.add_argument("--kinds", default="namespace,uml,uml-docker,qemu",
                    help="comma-separated: namespace, uml, uml-docker, qemu")
    ap.add_argument("--rounds", type=int, default=1, help="every kind this many times, interleaved")
    ap.add_argument("--lab-prefix", default="tbh", help="lab names start with this")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-ho-"))
    os.environ.setdefault("TESTBED_RUN_ROOT", str(tmp / "run"))
    every = {"namespace": Kind("namespace", "two-ar", args.moves, sctp=False),
             "uml": Kind("uml", "two-ar-sctp", args.moves, sctp=True),
             "uml-docker": Kind("uml-docker", "two-ar-sctp", args.moves, sctp=True, backend="docker"),
             "qemu": Kind("qemu", "two-ar-interop", args.qemu_moves, sctp=True)}
    chosen = [n for n in args.kinds.split(",") if n and not (n == "qemu" and args.skip_qemu)]
    kinds = [every[n] for n in chosen]
    with contextlib.ExitStack() as stack:
        if any(k.backend == "docker" for k in kinds):
            stack.enter_context(engine.using())  # a lab's down must not stop the engine between kinds
        for r in range(args.rounds):
            for k in kinds:
                measure(k, tmp / f"round{r}", args.lab_prefix)
    if any(k.backend == "docker" for k in kinds):
        engine.stop_if_idle()
    report(kinds)
    print(f"\nresults: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
