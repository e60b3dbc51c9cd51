"""Benchmark: the docker backend beside the mininet backend, same topology, same run; image builds.

* ``up`` and ``down`` of the default lab (two-ar: 6 nodes, 5 daemons, MN configured) and of the
  default handover's lab (two-ar-sctp: MN and CN kernel-SCTP nodes, User-Mode Linux, which on
  the docker backend boots inside their containers) on both backends, rounds interleaved,
  medians and the docker/mininet ratio. The engine is held in use
  for the whole run (a lab's ``down`` would otherwise stop an idle private engine); its cold
  start and stop are timed once on their own.
* Image builds: the first build (debootstrap base, then every role image without the layer
  cache, under throw-away ``testbed-bench/*`` tags) against the cached check every later
  ``up`` and ``make setup`` pay (hash the inputs, find the tags), and a rebuild after a change
  to the testbed package (only the package layers of the MN and CN images).

Targets: docker up <= 3x mininet up (two-ar); cached check <= 1 s. ``--no-first`` skips the first build
(several minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.backends import engine, images  # noqa: E402
from testbed.lab import Lab  # noqa: E402
from testbed.model.topology import Role  # noqa: E402


def timed_lab(lab: str, backend: str, topology: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    lb = Lab.up(topology, lab, backend=backend)
    t1 = time.perf_counter()
    lb.down()
    return t1 - t0, time.perf_counter() - t1


def cold_engine() -> tuple[float, float] | None:
    """Start and stop of the private engine, when it is the one in use and idle."""
    if engine.find() is not None and not engine.stop_if_idle():
        return None  # the system engine, or a busy private one: nothing to time
    t0 = time.perf_counter()
    engine.connect().client.close()
    t1 = time.perf_counter()
    engine.stop_if_idle()
    return t1 - t0, time.perf_counter() - t1


def first_build(client, build_client) -> dict[str, float]:
    """Every image from nothing, under bench tags, removed afterwards."""
    times: dict[str, float] = {}
    made: list[str] = []
    try:
        t0 = time.perf_counter()
        ref = "testbed-bench/base:first"
        images.build_base(client, images.BaseRecipe(), ref=ref)
        made.append(ref)
        times["base (debootstrap + import)"] = time.perf_counter() - t0
        base_id = images.image_id(client, ref)
        assert base_id
        for role, d in images.ROLE_DIRS.items():
            img = images.role_image(role, base_id)
            bench = images.RoleImage(role, f"testbed-bench/{d}:first", img.digest, img.python)
            t = time.perf_counter()
            images.build(build_client, bench, base_id, nocache=True)
            made.append(bench.ref)
            times[d] = time.perf_counter() - t
        times["total"] = time.perf_counter() - t0
    finally:
        for ref in reversed(made):
            try:
                client.images.remove(ref)
            except Exception as e:  # noqa: BLE001 - report, keep removing the rest
                print(f"could not remove {ref}: {e}")
    return times


def package_rebuild(client, build_client, base_id: str) -> float:
    """The MN image after a change to the package: its apt and pip layers come from the cache."""
    pkg = Path(tempfile.mkdtemp(prefix="tb-bench-pkg-"))
    try:
        shutil.copytree(images.PACKAGE_DIR, pkg / "testbed",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (pkg / "testbed" / "_bench_change.py").write_text(f"STAMP = {time.time()!r}\n")
        old = images.PACKAGE_DIR
        images.PACKAGE_DIR = pkg / "testbed"
        try:
            img = images.role_image(Role.MOBILE, base_id)
            bench = images.RoleImage(Role.MOBILE, "testbed-bench/mn:changed", img.digest, img.python)
            t = time.perf_counter()
            images.build(build_client, bench, base_id)
            took = time.perf_counter() - t
        finally:
            images.PACKAGE_DIR = old
        client.images.remove(bench.ref)
        return took
    finally:
        shutil.rmtree(pkg, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sctp-rounds", type=int, default=3, help="rounds of two-ar-sctp (UML boots)")
    ap.add_argument("--lab-prefix", default="tbdb", help="lab names start with this")
    ap.add_argument("--no-first", action="store_true", help="skip the first (uncached) image build")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-docker-"))
    os.environ["TESTBED_RUN_ROOT"] = str(tmp / "run")
    m = statistics.median
    print(f"machine: {platform.node()} {platform.release()} {os.cpu_count()} cores; "
          f"{args.rounds} rounds, medians")
    cold = cold_engine()
    with engine.using() as eng:
        build_client = engine.client(eng.url, timeout=engine.BUILD_TIMEOUT)
        try:
            t = time.perf_counter()
            images.ensure(eng.client, list(images.ROLE_DIRS), build_client=build_client)  # warm
            warm_first = time.perf_counter() - t
            checks = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                images.ensure(eng.client, list(images.ROLE_DIRS))
                checks.append(time.perf_counter() - t)
            base_id = images.base_image(eng.client, None)
            rebuild = package_rebuild(eng.client, build_client, base_id)
            first = {} if args.no_first else first_build(eng.client, build_client)
        finally:
            build_client.close()
        pre = args.lab_prefix
        Lab.up(None, f"{pre}w", backend="docker").down()  # first lab: caches, page cache
        res: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for topology, rounds in (("two-ar", args.rounds), ("two-ar-sctp", args.sctp_rounds)):
            for _ in range(rounds):
                for backend in ("mininet", "docker"):
                    res.setdefault((topology, backend), []).append(
                        timed_lab(f"{pre}{backend[0]}", backend, topology))
        print(f"engine: {eng.kind} ({eng.url})")
    for topology in dict.fromkeys(t for t, _ in res):
        ups = {b: m([u for u, _ in r]) for (t, b), r in res.items() if t == topology}
        downs = {b: m([d for _, d in r]) for (t, b), r in res.items() if t == topology}
        n = len(res[(topology, "docker")])
        print(f"{topology} ({n} rounds)")
        print(f"  up    docker {ups['docker']:6.3f} s   mininet {ups['mininet']:6.3f} s   "
              f"ratio {ups['docker'] / ups['mininet']:5.2f}")
        print(f"  down  docker {downs['docker']:6.3f} s   mininet {downs['mininet']:6.3f} s   "
              f"ratio {downs['docker'] / downs['mininet']:5.2f}")
    if cold:
        print(f"private engine: cold start {cold[0]:.2f} s, stop {cold[1]:.2f} s")
    print(f"images: cached check {m(checks):.3f} s (first call this run {warm_first:.2f} s); "
          f"MN rebuild after a package change {rebuild:.1f} s")
    if first:
        total = first.pop("total")
        print(f"images: first build {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in first.items())
              + f"); ratio first/cached {total / m(checks):.0f}")
    engine.stop_if_idle()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
