"""Benchmark: QUIC connection migration over many moves, beside SCTP and MPTCP in the same run.

    .venv/bin/python bench/bench_quic_handover.py [--moves 20] [--skip-sctp] [--skip-mptcp]

One mobile node ping-pongs between ar1 and ar2 ``--moves`` times (make-before-break, 0.5 s
overlap, 1 s on each network) while its connection carries 50 messages/s, once per transport:

- QUIC (two-ar-quic, aioquic on namespace nodes): link-up → path validated (the PATH_RESPONSE
  to the client's challenge from the new address) and link-up → first stream data on the new
  path, beside the floor the checker measured in the same handovers (PATH_CHALLENGE →
  PATH_RESPONSE on the wire);
- SCTP (two-ar-sctp, kernel SCTP on User-Mode Linux nodes): link-up → SET_PRIMARY acked and
  → DNS UPDATE answered;
- MPTCP (two-ar-mptcp, namespace nodes): link-up → new subflow active (MP_PRIO) and → DNS
  UPDATE answered.

Median and p95 of each, from the checker's timeline of each run (every handover it found),
with the load average at the start and at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.lab import Lab, teardown_leftover  # noqa: E402
from testbed.scenario.model import PingPong, Scenario, Traffic, TrafficStep, Wait  # noqa: E402
from testbed.scenario.runner import Runner  # noqa: E402

RUNS = {  # transport: (topology, rules, the phases shown)
    "quic": ("two-ar-quic", "quic,dns", ("path_validated", "first_data_new_path", "dns_acked")),
    "sctp": ("two-ar-sctp", "asconf,dns,order", ("set_primary_acked", "dns_acked")),
    "mptcp": ("two-ar-mptcp", "mptcp,dns", ("prio_new", "dns_acked")),
}


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def line(name: str, xs: list[float]) -> None:
    if xs:
        print(f"  {name:38} median {statistics.median(xs) * 1e3:7.1f} ms  p95 {p95(xs) * 1e3:7.1f} ms"
              f"  (n={len(xs)})")
    else:
        print(f"  {name:38} not observed")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def one(transport: str, moves: int, out: Path) -> None:
    topology, rules, phases = RUNS[transport]
    name = os.environ.get("TESTBED_LAB_PREFIX", "tb") + f"qhb{transport[0]}"
    print(f"\n{transport}: {topology}, {moves} moves (make-before-break ping-pong, 0.5 s overlap, 1 s dwell, "
          f"50 msg/s); load average {load()}")
    teardown_leftover(name)
    lab = Lab.up(topology, name)
    try:
        steps = [TrafficStep(action="start"), Wait(seconds=1.0),
                 PingPong(between=("ar1", "ar2"), times=moves, dwell=1.0, overlap=0.5),
                 TrafficStep(action="stop")]
        sc = Scenario(name=f"bench-{transport}-moves", topology=topology,
                      traffic=Traffic(transport=transport, rate=50), rules=rules, steps=steps)
        result = Runner(sc, lab, out / transport).run()
    finally:
        lab.close()
        Lab.open(name).down()
    hos = result.verdict.handovers
    failed = [r.id for r in result.verdict.rules if r.status == "fail"]
    print(f"  {len(hos)} handovers, verdict {'PASS' if result.passed else 'FAIL'}"
          + (f" (failed: {', '.join(failed)})" if failed else ""))
    for p in phases:
        line(f"link-up → {p}", [h["offsets"][p] for h in hos if p in (h.get("offsets") or {})])
    floors: dict[str, list[float]] = {}
    for h in hos:
        for f, v in (h.get("floors") or {}).items():
            floors.setdefault(f, []).append(v["seconds"])
    for f, xs in sorted(floors.items()):
        line(f"floor {f}", xs)
    print(f"  load average at the end {load()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--skip-sctp", action="store_true")
    ap.add_argument("--skip-mptcp", action="store_true")
    a = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-quic-handover-"))
    print(f"QUIC handover benchmark ({os.cpu_count()} cores); runs in {out}")
    for t in ("quic", "sctp", "mptcp"):
        if (t == "sctp" and a.skip_sctp) or (t == "mptcp" and a.skip_mptcp):
            continue
        one(t, a.moves, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
