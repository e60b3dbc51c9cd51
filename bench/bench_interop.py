"""Interop matrix wall time: 3 kernels × 3 kernels × 4 settings (36 cells) in one command.

    python bench/bench_interop.py [--kernels uml,6.1,6.12] [--settings ...] [--lab tbi] [--out DIR]

Prints the wall time against the goal (10 minutes) and against the baseline measured in the
same run: the cells' own times added up (what one lab at a time, each cell run alone, would
take), so the ratio is what lanes in parallel and reused labs gave. Also the time per kind of
kernel pair, the statuses, and the machine's load average before and after (other jobs on the
cores slow emulated nodes down).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 600.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="uml,6.1,6.12")
    ap.add_argument("--settings", default="default,noauth,auth-off,auto-asconf")
    ap.add_argument("--lab", default="tbi", help="lab name prefix (labs <lab>0, <lab>1, ...)")
    ap.add_argument("--out", help="output directory (default: a temporary one)")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `testbed interop` options")
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="bench_interop_"))
    load0 = os.getloadavg()
    t0 = time.monotonic()
    cp = subprocess.run([sys.executable, "-m", "testbed.cli.main", "--lab", a.lab, "interop",
                         "--kernels", a.kernels, "--settings", a.settings, "--out", str(out), *a.extra],
                        capture_output=True, text=True)
    wall = time.monotonic() - t0
    load1 = os.getloadavg()
    try:
        doc = json.loads((out / "matrix.json").read_text())
    except (OSError, ValueError):
        print(cp.stderr[-3000:], file=sys.stderr)
        return 1
    cells = doc["cells"]
    serial = sum(c["seconds"] for c in cells)
    stacks = {k["label"]: k["stack"] for k in doc["kernels"]}
    by_kind: dict[str, list[float]] = {}
    for c in cells:
        kind = f"{stacks[c['mn']]}-{stacks[c['cn']]}"
        by_kind.setdefault(kind, []).append(c["seconds"])
    print(f"interop matrix: {len(cells)} cells ({a.kernels} × {a.kernels} × {a.settings}), "
          f"jobs {doc['jobs']}, results {out}")
    print(f"  wall time            {wall:7.0f} s   goal {GOAL_S:.0f} s: "
          f"{'met' if wall <= GOAL_S else 'missed'} (x{wall / GOAL_S:.2f})")
    print(f"  cells added up       {serial:7.0f} s   (one cell at a time; "
          f"wall / this = x{wall / serial:.2f})")
    for kind, secs in sorted(by_kind.items()):
        print(f"  per cell {kind:12s} median {statistics.median(secs):5.0f} s, max {max(secs):5.0f} s "
              f"({len(secs)} cells; the first of a lab includes its start)")
    print(f"  statuses             {doc['counts']}")
    print(f"  load average         before {load0[0]:.1f}, after {load1[0]:.1f} "
          f"(1 min; {os.cpu_count()} cores)")
    return 0 if cp.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
