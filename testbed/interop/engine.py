"""Running a matrix: cells grouped by kernel pair, each group a lane process on a lab of its
own, as many lanes at once as the machine carries.

CPU decides how many: a QEMU node emulates every guest instruction (TCG) and keeps about a
core busy while its lab runs a cell, a UML node runs guest code natively and needs little. A
lane is started while the CPU weight of the running ones (``NODE_CPU`` per kernel node) stays
within the cores, heaviest groups first, lighter ones filling what is left; at most ``jobs``
lanes (memory), and always at least one. Overloading the cores does not finish sooner: the
emulated guests slow down together, and daemons on them miss their start-up timeouts.

Lanes are named ``<prefix>0``, ``<prefix>1``, ...: a lab name is given to one running lane at a
time. The caller sees progress through ``MatrixUi`` and gets every cell's result, in the
matrix's order; a lane that dies reports its unfinished cells as ``error`` with its log's tail.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from testbed.errors import LabStateError
from testbed.interop.kernels import KernelChoice
from testbed.interop.matrix import Cell, CellResult, groups
from testbed.interop.settings import Setting
from testbed.state import LabState

# Memory a lane's lab may take at most: two QEMU guests (~350 MiB each with the emulator),
# tcpdump rings (16 MiB per link), named, dhcpd, radvd, and the lane's own Python.
LANE_MEMORY = 1024 << 20
MAX_JOBS = 8
# cores a node of a running lab keeps busy (a QUIC node: a Python or ngtcp2 endpoint beside the
# lab's agent and binding processes on the host kernel)
NODE_CPU = {"qemu": 1.0, "uml": 0.25, "usrsctp": 0.1, "aioquic": 0.5, "ngtcp2": 0.5}
INTERRUPT_GRACE = 120.0  # seconds a lane may take to remove its lab after Ctrl-C


def default_jobs() -> int:
    """Lanes at most: what memory carries (the CPU weights decide how many of them run)."""
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        avail = LANE_MEMORY
    return max(1, min(MAX_JOBS, avail // LANE_MEMORY))


def default_cpus() -> float:
    return float(os.cpu_count() or 1)


def weight(group: list[Cell]) -> float:
    """The CPU a group's lab keeps busy (its two kernel nodes)."""
    return sum(NODE_CPU[k.stack] for k in (group[0].mn, group[0].cn))


def pick(todo: list[list[Cell]], running: list[list[Cell]], cpus: float) -> list[Cell] | None:
    """The first group (they come heaviest first) that fits beside the running ones; any
    group when none runs."""
    load = sum(weight(g) for g in running)
    return next((g for g in todo if not running or load + weight(g) <= cpus + 1e-9), None)


class MatrixUi(Protocol):
    def started(self, cell: Cell, lane: str) -> None: ...
    def message(self, cell: Cell, text: str) -> None: ...
    def finished(self, cell: Cell, result: CellResult) -> None: ...


@dataclass
class MatrixRun:
    scenario: Path  # the scenario file
    kernels: list[KernelChoice]
    settings: list[Setting]
    cells: list[Cell]
    out: Path
    lab_prefix: str
    jobs: int  # lanes at most
    cpus: float = 1.0  # the CPU weight the running lanes may take together
    fresh: bool = False
    results: dict[str, CellResult] = field(default_factory=dict)  # by cell slug

    @property
    def lanes(self) -> list[str]:
        return [f"{self.lab_prefix}{i}" for i in range(self.jobs)]

    def check_lanes_free(self) -> None:
        for lab in self.lanes:
            if LabState.exists(lab):
                raise LabStateError(f"lab {lab!r} exists; an interop run uses labs {', '.join(self.lanes)}: "
                                    f"`testbed --lab {lab} down` (or clean), or pick another --lab")


@dataclass
class _Running:
    proc: subprocess.Popen[str]
    group: list[Cell]
    lane: str
    log: Path
    log_file: IO[str]
    reader: threading.Thread


def run(m: MatrixRun, ui: MatrixUi, popen: Callable[..., subprocess.Popen[str]] = subprocess.Popen
        ) -> list[CellResult]:
    """Every cell of ``m``; on Ctrl-C the lanes remove their labs before this re-raises."""
    m.check_lanes_free()
    (m.out / "cells").mkdir(parents=True, exist_ok=True)
    (m.out / "labs").mkdir(parents=True, exist_ok=True)
    todo = groups(m.cells)
    free = list(reversed(m.lanes))
    running: dict[str, _Running] = {}
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    by_slug = {c.slug: c for c in m.cells}

    def start(group: list[Cell], lane: str) -> None:
        n = len(running) + len(m.results)
        plan_file = m.out / "labs" / f"lane-{group[0].mn.slug}__{group[0].cn.slug}.json"
        plan_file.write_text(json.dumps({
            "lab": lane, "scenario": str(m.scenario.resolve()), "fresh": m.fresh,
            "cells_dir": str((m.out / "cells").resolve()), "labs_dir": str((m.out / "labs").resolve()),
            "cells": [c.to_dict() for c in group]}))
        log = plan_file.with_suffix(".log")
        log_file = log.open("w")
        # a session of its own: a terminal's Ctrl-C reaches the lane once, from here
        proc = popen([sys.executable, "-m", "testbed.interop.lane", str(plan_file)],
                     stdout=subprocess.PIPE, stderr=log_file, text=True, start_new_session=True)
        reader = threading.Thread(target=_read, args=(proc, lane, events), daemon=True, name=f"lane-{n}")
        reader.start()
        running[lane] = _Running(proc, group, lane, log, log_file, reader)
        ui.started(group[0], lane)

    def collect(lane: str, ev: dict[str, Any]) -> None:
        cell = by_slug.get(str(ev.get("cell")))
        if cell is None:
            return
        if "result" in ev:
            res = CellResult.from_dict(ev["result"])
            m.results[cell.slug] = res
            ui.finished(cell, res)
            nxt = next((c for c in running[lane].group if c.slug not in m.results), None)
            if nxt is not None:
                ui.started(nxt, lane)
        elif "msg" in ev:
            ui.message(cell, str(ev["msg"]))

    def reap(lane: str) -> None:
        """The lane's stdout closed (its events all came before this): wait for it, and
        report what it did not finish."""
        r = running.pop(lane)
        r.reader.join()
        r.proc.wait()
        r.log_file.close()
        for cell in r.group:
            if cell.slug not in m.results:
                res = CellResult(cell.mn.label, cell.cn.label, cell.setting.name, "error", lab=lane,
                                 error=f"lane exited {r.proc.returncode}: {_tail(r.log)}")
                m.results[cell.slug] = res
                ui.finished(cell, res)
        free.append(lane)

    def admit() -> None:
        while todo and free:
            group = pick(todo, [r.group for r in running.values()], m.cpus)
            if group is None:
                return
            todo.remove(group)
            start(group, free.pop())

    try:
        while todo or running:
            admit()
            try:
                lane, ev = events.get(timeout=0.5)
            except queue.Empty:
                pass
            else:
                if ev.get("eof"):
                    reap(lane)
                else:
                    collect(lane, ev)
    except KeyboardInterrupt:
        _interrupt(running.values())
        raise
    return [m.results[c.slug] for c in m.cells if c.slug in m.results]


def _read(proc: subprocess.Popen[str], lane: str, events: queue.Queue[tuple[str, dict[str, Any]]]) -> None:
    """A lane's stdout as events; a line that is not one of its JSON objects is ignored (the
    lane writes everything else to its log)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            events.put((lane, ev))
    events.put((lane, {"eof": True}))


def _interrupt(running: Any) -> None:
    """Ctrl-C: each lane gets one SIGINT (it removes its lab), then is waited for."""
    procs = [r.proc for r in running]
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()  # what it left, `testbed clean` removes


def _tail(log: Path, lines: int = 3) -> str:
    try:
        kept = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(kept[-lines:]) or "(empty log)"
