"""Benchmark: a scenario on deployed hosts (``testbed run --inventory``) beside the same scenario
on a lab, in the same run.

    .venv/bin/python bench/bench_deploy.py [--scenarios mptcp-handover,many-mn-3] [--runs 2]

For each scenario: a bare lab of its topology (``testbed up --bare``), one deploy, then
``--runs`` runs of ``testbed run --inventory`` end to end as the controller runs them (in the
bare lab's controller namespace), each one's wall time and its playbooks' times summed (from
``verdict.json``'s ``lab.playbooks``; the moves of several MNs run at once, so their sum may
exceed the wall time); the bare lab down, a lab of the topology up, and the same
number of runs through the runner there. Printed: the medians, the ratio hosts / lab (the lab's
run is the baseline), and whether both gave the same verdict rule for rule.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.host import netns  # noqa: E402
from testbed.lab import Lab, teardown_leftover  # noqa: E402
from testbed.scenario import model  # noqa: E402
from testbed.scenario.runner import Runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREFIX = os.environ.get("TESTBED_LAB_PREFIX", "tb")


def testbed(*args: str, ns: str | None = None,
            timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
    argv = [sys.executable, "-m", "testbed", *args]
    if ns:
        argv = netns.exec_argv(ns, argv)
    t0 = time.monotonic()
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return cp, time.monotonic() - t0


def rules(verdict: dict) -> dict[str, str]:
    out = {r["id"]: r["status"] for r in verdict["rules"]}
    for mn, mv in (verdict.get("mobiles") or {}).items():
        out |= {f"{mn}/{r['id']}": r["status"] for r in mv["rules"]}
    return out


def on_hosts(sc: model.Scenario, runs: int, d: Path) -> tuple[list[float], list[float], list[dict]]:
    lab = f"{PREFIX}bdh"
    topo = sc.topology
    teardown_leftover(lab)
    cp, up = testbed("--lab", lab, "up", topo, "--bare")
    if cp.returncode:
        raise SystemExit(f"up --bare {topo}: {cp.stderr.strip()[-500:]}")
    try:
        inv = d / "inventory.yml"
        testbed("--lab", lab, "inventory", topo, "-o", str(inv))
        cp, deploy = testbed("deploy", str(inv), "--out", str(d / "deploy"), ns=f"{lab}-ctl")
        if cp.returncode:
            raise SystemExit(f"deploy {topo}: {cp.stdout.strip()[-800:]}")
        print(f"  hosts: up --bare {up:.1f} s, deploy {deploy:.1f} s")
        walls, books, verdicts = [], [], []
        for i in range(runs):
            out = d / f"run{i}"
            cp, wall = testbed("run", "--inventory", str(inv), sc.name, "--out", str(out), ns=f"{lab}-ctl")
            v = json.loads((out / "verdict.json").read_text())
            walls.append(wall)
            books.append(sum(p["seconds"] for p in v["lab"]["playbooks"]))
            verdicts.append(v)
            print(f"  hosts run {i + 1}: {wall:.1f} s end to end (its playbooks' times summed: "
                  f"{books[-1]:.1f} s; several MNs' moves overlap), "
                  f"verdict {'PASS' if v['passed'] else 'FAIL'}")
        return walls, books, verdicts
    finally:
        testbed("--lab", lab, "down")


def on_lab(sc: model.Scenario, runs: int, d: Path) -> tuple[list[float], list[dict]]:
    name = f"{PREFIX}bdl"
    teardown_leftover(name)
    t0 = time.monotonic()
    lab = Lab.up(sc.topology, name)
    print(f"  lab: up {time.monotonic() - t0:.1f} s")
    try:
        walls, verdicts = [], []
        for i in range(runs):
            t0 = time.monotonic()
            Runner(sc, lab, d / f"run{i}").run()
            walls.append(time.monotonic() - t0)
            v = json.loads((d / f"run{i}" / "verdict.json").read_text())
            verdicts.append(v)
            print(f"  lab run {i + 1}: {walls[-1]:.1f} s, verdict {'PASS' if v['passed'] else 'FAIL'}")
        return walls, verdicts
    finally:
        lab.close()
        lab.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="mptcp-handover,many-mn-3")
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    print(f"bench_deploy: {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    same = True
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        for name in a.scenarios.split(","):
            sc = model.load(name)
            print(f"\n{name} ({sc.topology}), {a.runs} run(s) each")
            walls, books, hv = on_hosts(sc, a.runs, Path(tmp) / name / "hosts")
            lwalls, lv = on_lab(sc, a.runs, Path(tmp) / name / "lab")
            h, lb = statistics.median(walls), statistics.median(lwalls)
            print(f"  median: hosts {h:.1f} s (playbooks {statistics.median(books):.1f} s), lab {lb:.1f} s; "
                  f"hosts / lab = {h / lb:.2f}×")
            agree = [rules(x) == rules(y) for x, y in zip(hv, lv, strict=True)]
            print(f"  same verdict rule for rule: {sum(agree)} of {len(agree)} run pairs")
            same = same and all(agree)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
