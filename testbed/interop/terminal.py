"""The matrix on a terminal: live progress while lanes run (one line per lane, cells done so
far), a line per finished cell where the output is not a terminal, and at the end one table
per setting (MN kernels × CN kernels)."""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from testbed.interop.kernels import KernelChoice
from testbed.interop.matrix import Cell, CellResult, counts
from testbed.interop.settings import Setting

STYLE = {"pass": "green", "expected-fail": "yellow", "fail": "bold red", "error": "magenta"}


def cell_name(c: Cell) -> str:
    return f"MN {c.mn.label} × CN {c.cn.label} / {c.setting.name}"


class TerminalUi:
    """A ``MatrixUi`` drawing on ``console`` (stderr: the tables go to stdout)."""

    def __init__(self, console: Console, total: int) -> None:
        self.console, self.total = console, total
        self.lanes: dict[str, tuple[Cell, str, float]] = {}  # lane -> (cell, last message, since)
        self.done: list[CellResult] = []
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self.live = Live(self._render(), console=console, refresh_per_second=2, transient=True) \
            if console.is_terminal else None

    def __enter__(self) -> TerminalUi:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _render(self) -> Group:
        n = counts(self.done)
        head = Text(f"interop: {len(self.done)}/{self.total} cells, {time.monotonic() - self.t0:.0f} s  ")
        for k, v in n.items():
            if v:
                head.append(f"{v} {k}  ", style=STYLE[k])
        t = Table.grid(padding=(0, 2))
        for lane, (cell, msg, since) in sorted(self.lanes.items()):
            t.add_row(lane, cell_name(cell), f"{time.monotonic() - since:.0f} s", Text(msg, style="dim"))
        return Group(head, t)

    def _update(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def started(self, cell: Cell, lane: str) -> None:
        with self._lock:
            self.lanes[lane] = (cell, "starting", time.monotonic())
            self._update()

    def message(self, cell: Cell, text: str) -> None:
        with self._lock:
            for lane, (c, _msg, since) in self.lanes.items():
                if c.slug == cell.slug:
                    self.lanes[lane] = (c, text, since)
            self._update()

    def finished(self, cell: Cell, result: CellResult) -> None:
        with self._lock:
            self.done.append(result)
            for lane, (c, _m, _s) in list(self.lanes.items()):
                if c.slug == cell.slug:
                    del self.lanes[lane]
            if self.live is None:
                rules = ", ".join(result.unmet_rules or result.failed_rules)
                style = STYLE[result.status]
                self.console.print(f"[{len(self.done)}/{self.total}] {cell_name(cell)}: "
                                   f"[{style}]{result.status}[/] {rules} ({result.seconds:.0f} s)"
                                   + (f" {result.error}" if result.error else ""), highlight=False)
            self._update()


def tables(kernels: list[KernelChoice], settings: list[Setting], results: list[CellResult]) -> list[Group]:
    """One table per setting, under a line naming it: MN kernels as rows, CN kernels as columns."""
    by_key = {(r.mn, r.cn, r.setting): r for r in results}
    out = []
    for s in settings:
        expect = ", ".join(f"{k} {v}" for k, v in s.expect.items()) or "every rule passes"
        t = Table()
        t.add_column("MN \\ CN")
        for k in kernels:
            t.add_column(k.label)
        for mn in (k for k in kernels if k.mobile):
            row: list[Text | str] = [mn.label]
            for cn in kernels:
                r = by_key.get((mn.label, cn.label, s.name))
                if r is None:
                    row.append(Text("-", style="dim"))
                    continue
                cell = Text(r.status, style=STYLE[r.status])
                rules = r.unmet_rules if r.status == "fail" else r.failed_rules
                if rules:
                    cell.append("\n" + ", ".join(rules), style="dim")
                if r.error:
                    cell.append("\n" + r.error[:120], style="dim")
                row.append(cell)
            t.add_row(*row)
        head = Text(s.name, style="bold")
        head.append(f"  expected: {expect}", style="dim")
        out.append(Group(head, t))
    return out
