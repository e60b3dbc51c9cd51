"""One lane of an interop run: the cells that share a pair of kernels, one after another, on
one lab (``python -m testbed.interop.lane PLAN.json``).

A lane is a process of its own so that a Ctrl-C reaches each lab's builder in its main thread
(the lab then removes what it made) and lanes share no interpreter. It reports on stdout, one
JSON object a line: ``{"cell": slug, "msg": text}`` while a cell runs, ``{"cell": slug,
"result": {...}}`` when it ends; everything else goes to stderr (the lane's log).

A lab is used again for the next cell when that is safe: same kernels (a group has one pair),
the previous cell ended as its setting expects (``pass`` or ``expected-fail``), and the MN is
first brought back to where the topology starts it. The new setting's sysctls are set on
both endpoints before the run; each new association reads them (Linux copies
addip_enable, auth_enable and default_auto_asconf into an endpoint when its socket is made,
and reads addip_noauth_enable when the INIT arrives). After ``fail`` or ``error`` the lab is
torn down and the next cell gets a fresh one.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from testbed.errors import TestbedError
from testbed.interop import quic
from testbed.interop.cell import cell_scenario, cell_topology, endpoints
from testbed.interop.matrix import Cell, CellResult, classify
from testbed.lab import Lab
from testbed.scenario import model
from testbed.scenario.runner import Runner

Emit = Callable[[dict[str, Any]], None]
REUSABLE = ("pass", "expected-fail")


def _emit_stdout(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Lane:
    def __init__(self, lab_name: str, scenario: model.Scenario, cells_dir: Path, labs_dir: Path,
                 fresh: bool = False, emit: Emit = _emit_stdout) -> None:
        self.lab_name, self.sc, self.fresh, self.emit = lab_name, scenario, fresh, emit
        self.cells_dir, self.labs_dir = cells_dir, labs_dir
        self.lab: Lab | None = None
        self.healthy = False  # the lab is fit for another cell

    def run(self, cells: list[Cell]) -> list[CellResult]:
        try:
            return [self.one(c) for c in cells]
        finally:
            self.drop()

    def drop(self) -> None:
        """Tear the lab down; a failure is logged (the next ``Lab.up`` of this name then says
        what is left and that ``testbed clean`` removes it)."""
        if self.lab is not None:
            lab, self.lab = self.lab, None
            try:
                lab.down()
            except Exception:  # noqa: BLE001 - logged; the lane goes on
                traceback.print_exc()

    def one(self, cell: Cell) -> CellResult:
        t0 = time.monotonic()
        out = self.cells_dir / cell.slug
        res = CellResult(cell.mn.label, cell.cn.label, cell.setting.name, "error", lab=self.lab_name)

        def say(msg: str) -> None:
            self.emit({"cell": cell.slug, "msg": msg})

        try:
            played = self.played(cell)
            res.fresh_lab = self.prepare(cell, say)
            sc = cell_scenario(played, cell.setting)
            title = f"{played.name}: MN {cell.mn.label} × CN {cell.cn.label}, setting {cell.setting.name}"
            context = {"interop": {"mn": cell.mn.to_dict(), "cn": cell.cn.to_dict(),
                                   "setting": cell.setting.model_dump(), "fresh_lab": res.fresh_lab}}
            assert self.lab is not None
            result = Runner(sc, self.lab, out, say, title=title, context=context).run()
            verdict = result.verdict.to_dict()
            res.status, res.failed_rules, res.unmet_rules = classify(verdict)
            res.verdict = str((out / "verdict.json").relative_to(self.cells_dir.parent))
            if (out / "report.html").exists():
                res.report = str((out / "report.html").relative_to(self.cells_dir.parent))
        except TestbedError as e:
            res.error = str(e)
        except Exception as e:  # noqa: BLE001 - one broken cell must not end the matrix
            res.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            if self.lab is not None:
                self.lab.close()
                if res.status == "error":  # the lab goes next: keep what explains it
                    keep_logs(self.lab.state.dir, out / "lab-logs")
        self.healthy = res.status in REUSABLE and not self.fresh
        res.seconds = round(time.monotonic() - t0, 1)
        out.mkdir(parents=True, exist_ok=True)
        (out / "cell.json").write_text(json.dumps(res.to_dict()))
        self.emit({"cell": cell.slug, "result": res.to_dict()})
        return res

    def played(self, cell: Cell) -> model.Scenario:
        """The lane's scenario, or for a QUIC cell the one its MN's stack plays."""
        if self.sc.uses_traffic and self.sc.transport == "quic":
            return quic.scenario_of(self.sc, cell.mn)
        return self.sc

    def prepare(self, cell: Cell, say: Callable[[str], None]) -> bool:
        """A lab for the cell, in the cell's setting; True when it was built for it."""
        if self.lab is not None and not self.healthy:
            say("tearing down the previous lab")
            self.drop()
        played = self.played(cell)
        if self.lab is None:
            topo = cell_topology(played, cell.mn, cell.cn, cell.setting)
            path = self.labs_dir / f"{cell.mn.slug}__{cell.cn.slug}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(topo, sort_keys=False))
            self.lab = Lab.up(path, self.lab_name, say)
            return True
        lab = self.lab
        start = list(lab.topo.mobile.attached)
        if lab.mobile.attached != start:
            say(f"back to {start[0]}")
            lab.move(start[0], "make-before-break")
        if played.transport == "quic":  # no sysctls: the stack is the setting
            return False
        mn, cn = endpoints(lab.topo, self.sc)
        lab.set_sctp(mn, cell.setting.values("mn"))
        lab.set_sctp(cn, cell.setting.values("cn"))
        return False


def keep_logs(run_dir: Path, dest: Path, limit: int = 1 << 20) -> None:
    """Copy a lab's logs (daemons, kernel consoles: ``*.log``, ``*.jsonl``) out of its run dir,
    each file's last ``limit`` bytes."""
    for p in sorted(run_dir.rglob("*")):
        if p.suffix not in (".log", ".jsonl") or not p.is_file():
            continue
        target = dest / p.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - limit))
            target.write_bytes(f.read())


def main(argv: list[str] | None = None) -> int:
    """PLAN.json: {"lab", "scenario" (path), "cells_dir", "labs_dir", "fresh", "cells": [...]}"""
    args = sys.argv[1:] if argv is None else argv
    # the run's SIGINT (and a SIGTERM) end the lane through its clean-up, also when it was
    # started with SIGINT ignored (a background job's children inherit that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    plan = json.loads(Path(args[0]).read_text())
    lane = Lane(plan["lab"], model.load(plan["scenario"]), Path(plan["cells_dir"]),
                Path(plan["labs_dir"]), fresh=bool(plan.get("fresh")))
    try:
        lane.run([Cell.from_dict(c) for c in plan["cells"]])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
