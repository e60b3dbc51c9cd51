"""The long checker fuzz (``make soak``): N mutated captures (default 100,000) judged in-process;
prints the exit-code counts, the rate, and every crash with the seed and input that reproduce
it. Exits 1 on a crash."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=2004)
    a = ap.parse_args()
    t0 = time.monotonic()
    def progress(i: int) -> None:
        if i % 10000 == 0:
            print(f"  {i} inputs", file=sys.stderr)

    d = Path(tempfile.mkdtemp(prefix="fuzz-checker-"))  # crashing inputs are kept here
    stats = fuzz.run(a.inputs, a.seed, d, progress=progress)
    dt = time.monotonic() - t0
    print(f"checker fuzz: {stats.inputs} inputs in {dt:.0f} s ({stats.inputs / dt:.0f}/s), exit codes "
          f"0: {stats.exits[0]}, 1: {stats.exits[1]}, 2: {stats.exits[2]}; crashes: {len(stats.crashes)}")
    for c in stats.crashes[:20]:
        print(c)
    if not stats.crashes:
        shutil.rmtree(d, ignore_errors=True)
    return 1 if stats.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
