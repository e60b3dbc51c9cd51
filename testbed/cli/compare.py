"""``testbed compare SCENARIO --transports sctp,mptcp,quic,tcp --out DIR``: the scenario's moves
and traffic once per transport, each on a lab of its own (``<lab>0``, ``<lab>1``, ...), then
``DIR/compare.json`` and ``DIR/compare.html``.

Exit status 0 when every row that ran ended as expected (``pass`` or ``expected-fail``), 1
otherwise (a refused row does not count: it says why), 2 for bad input.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEFAULT_TRANSPORTS = "sctp,mptcp,quic,tcp"


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("compare", help="one movement, every transport: compare.json and compare.html")
    s.add_argument("scenario", nargs="?", help="scenario name or path (default: trash-handover)")
    s.add_argument("--transports", default=DEFAULT_TRANSPORTS, help="comma-separated (default: %(default)s)")
    s.add_argument("--out", help="output directory (default: out/compare-<scenario>-<time>)")
    s.set_defaults(fn=cmd_compare)


def cmd_compare(a: argparse.Namespace) -> int:
    from testbed.compare.plan import parse_transports
    from testbed.compare.run import Comparison
    from testbed.scenario import model

    err, out = Console(stderr=True), Console()
    sc = model.load(a.scenario)
    transports = parse_transports(a.transports)
    dest = Path(a.out or f"out/compare-{sc.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    err.print(f"compare: {sc.name} over {', '.join(transports)}; results in {dest}")
    doc = Comparison(sc, transports, dest, a.lab, progress=lambda m: err.print(f"compare: {m}")).run()
    t = Table(title=f"{sc.name}: one movement, every transport")
    for col in ("transport", "verdict", "lost / dup", "longest stall", "path or primary switched"):
        t.add_column(col)
    for r in doc["rows"]:
        stall = ", ".join(f"{s['longest_s'] * 1000:.0f} ms" + ("" if s["resumed"] else " (never resumed)")
                          for s in r.get("stalls") or []) or "-"
        m = r.get("messages") or {}
        first = (r.get("handovers") or [{}])[0].get("offsets") or {}
        switched = next((f"+{first[k]:.3f} s ({k})"
                         for k in ("path_validated", "set_primary_acked", "prio_new") if k in first), "-")
        why = r.get("refused") or r.get("error")
        status = r["status"] + (f": {why}" if why else "")
        t.add_row(r["transport"], status, f"{m.get('lost', '-')} / {m.get('duplicated', '-')}", stall,
                  switched)
    out.print(t)
    err.print(f"compare: {dest / 'compare.html'}")
    ran = [r for r in doc["rows"] if r["status"] != "refused"]
    return 0 if all(r["status"] in ("pass", "expected-fail") for r in ran) else 1
