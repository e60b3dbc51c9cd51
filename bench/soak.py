"""Soak: the default scenario N times in a row on one lab; pass/fail counts and timings.

    .venv/bin/python bench/soak.py [--runs 100] [--scenario trash-handover] [--machine uml]

Each run is the whole scenario (back to ar1, traffic, the make-before-break move to ar2, the
verdict). Prints how many passed, each failing run's failed rules, and the distribution of
link-up → configured / SET_PRIMARY acked / DNS acked over the runs. Target: 0 failures in 100.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.lab import Lab  # noqa: E402
from testbed.scenario import model  # noqa: E402
from testbed.scenario.runner import Runner  # noqa: E402

PHASES = ("configured", "set_primary_acked", "dns_acked")
LAB = "tbsoak"


def quantiles(xs: list[float]) -> str:
    s = sorted(xs)
    q = {n: s[min(len(s) - 1, round(p * (len(s) - 1)))] for n, p in (("p50", .5), ("p95", .95),
                                                                          ("max", 1.0))}
    return "  ".join(f"{n} {v * 1e3:7.1f} ms" for n, v in q.items()) + f"  min {s[0] * 1e3:7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--scenario", default="trash-handover")
    ap.add_argument("--machine", choices=("host", "uml"), default="host")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="tb-soak-"))
    sc = model.load(args.scenario)
    offsets: dict[str, list[float]] = {p: [] for p in PHASES}
    failures: list[tuple[int, list[str]]] = []
    t0 = time.monotonic()
    if args.machine == "uml":  # through the CLI: the machine runs the scenario inside it
        tb = [sys.executable, "-m", "testbed.cli.main", "--lab", LAB]
        for i in range(args.runs):
            rc = subprocess.run([*tb, "run", args.scenario, "--machine", "uml", "--out",
                                 str(out / f"run{i}")], capture_output=True, text=True).returncode
            if rc != 0:
                failures.append((i, [f"exit {rc}"]))
        subprocess.run([*tb, "down"], capture_output=True)
    else:
        lab = Lab.up(sc.topology, LAB)
        try:
            for i in range(args.runs):
                try:
                    v = Runner(sc, lab, out / f"run{i}").run().verdict
                except Exception as e:  # noqa: BLE001 - a run that errors is a failed run, counted
                    failures.append((i, [f"{type(e).__name__}: {e}"]))
                    continue
                if not v.passed:
                    failures.append((i, [r.id for r in v.rules if r.status == "fail"]))
                for h in v.handovers:
                    for p in PHASES:
                        if p in (h.get("offsets") or {}) and h.get("address", "").startswith("198.51"):
                            offsets[p].append(h["offsets"][p])
                print(f"run {i + 1}/{args.runs}: {'PASS' if v.passed else 'FAIL'}", flush=True)
        finally:
            lab.close()
            Lab.open(LAB).down()
    wall = time.monotonic() - t0
    print(f"\n{args.runs} runs of {sc.name} ({args.machine}) in {wall:.0f} s: "
          f"{args.runs - len(failures)} passed, {len(failures)} failed")
    for i, why in failures:
        print(f"  run {i}: {', '.join(why)}")
    for p, xs in offsets.items():
        if xs:
            print(f"link-up → {p:18} {quantiles(xs)}  (n={len(xs)}, mean {statistics.mean(xs) * 1e3:.1f} ms)")
    print(f"results: {out}")
    return 0 if not failures else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
