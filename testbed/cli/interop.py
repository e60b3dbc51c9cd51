"""``testbed interop``: a scenario on every MN kernel × CN kernel × SCTP setting, one matrix; with
``--transport quic``, on every MN × CN pair of QUIC stacks.

Exit status 0 when every cell is ``pass`` or ``expected-fail``, 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from rich.console import Console

ALL_SETTINGS = "default,noauth,auth-off,auto-asconf"


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("interop", help="interop matrix: MN kernels × CN kernels × SCTP settings "
                       "(or MN × CN QUIC stacks)")
    s.add_argument("--transport", choices=("sctp", "quic"), default="sctp",
                   help="sctp: kernels × settings; quic: the QUIC stacks' pairs (--stacks)")
    s.add_argument("--kernels",
                   help="sctp, required: comma-separated: uml, a Debian series or release for QEMU "
                        "(6.1, 6.12), or a path to a kernel build (uml:PATH / qemu:PATH to say which)")
    s.add_argument("--stacks", help="quic, required: comma-separated QUIC stacks (aioquic, ngtcp2): "
                   "each as the MN and as the CN, every pair but ngtcp2 on both ends")
    s.add_argument("--settings", default=ALL_SETTINGS, help="comma-separated (default: %(default)s)")
    s.add_argument("--settings-file", help="YAML with more settings (settings: {name: {...}})")
    s.add_argument("--scenario", help="scenario name or path (default: trash-handover)")
    s.add_argument("--out", help="output directory (default: out/interop-<time>)")
    s.add_argument("--only", help="a part of the matrix: MN=K,CN=K,SETTING=S (keys may repeat)")
    s.add_argument("--jobs", type=int, help="labs at once at most (default: as memory allows)")
    s.add_argument("--cpus", type=float,
                   help="cores the labs may keep busy together: a QEMU node counts 1, a UML node "
                        "0.25 (default: this machine's cores)")
    s.add_argument("--fresh", action="store_true",
                   help="a new lab for every cell (default: a lab is reused within a kernel pair "
                        "after a cell that ended as expected)")
    s.set_defaults(fn=cmd_interop)


def cmd_interop(a: argparse.Namespace) -> int:
    from testbed.errors import ConfigError
    from testbed.interop import engine, html, matrix, settings, terminal
    from testbed.interop.cell import endpoints
    from testbed.interop.kernels import parse_list
    from testbed.model import loader
    from testbed.scenario import model

    err, out = Console(stderr=True), Console()
    if a.transport == "quic":
        from testbed.interop import quic

        if not a.stacks:
            raise ConfigError("--stacks", "-", "--transport quic needs the stacks",
                              "e.g. --stacks aioquic,ngtcp2")
        scenario_path = model.resolve(a.scenario or quic.DEFAULT_SCENARIO)
        sc = model.load(scenario_path)
        if not (sc.uses_traffic and sc.transport == "quic"):
            raise ConfigError(f"scenario {sc.name}", "traffic.transport", "--transport quic plays a QUIC "
                              "scenario", f"give --scenario {quic.DEFAULT_SCENARIO} or another QUIC one")
        endpoints(loader.load(sc.topology), sc)
        kernels = quic.parse_stacks(a.stacks)
        chosen = [quic.SETTING]
        only = matrix.parse_only(a.only, kernels, chosen)
        cells = [c for c in matrix.plan(kernels, chosen, only) if quic.playable(c.mn, c.cn)]
        if not cells:
            raise ConfigError("--stacks", a.stacks, "no pair to play (ngtcp2 on both ends carries no "
                              "message stream)", "add aioquic")
    else:
        if not a.kernels:
            raise ConfigError("--kernels", "-", "an SCTP matrix needs the kernels", "e.g. --kernels uml,6.12")
        scenario_path = model.resolve(a.scenario)
        sc = model.load(scenario_path)
        endpoints(loader.load(sc.topology), sc)  # a scenario without SCTP traffic fails here
        kernels = parse_list(a.kernels)
        extra = settings.load_file(a.settings_file) if a.settings_file else None
        chosen = settings.select([s for s in a.settings.split(",") if s], extra)
        only = matrix.parse_only(a.only, kernels, chosen)
        cells = matrix.plan(kernels, chosen, only)
    if a.jobs is not None and a.jobs < 1:
        raise ConfigError("--jobs", str(a.jobs), "must be at least 1")
    if a.cpus is not None and a.cpus <= 0:
        raise ConfigError("--cpus", str(a.cpus), "must be more than 0")
    jobs = min(a.jobs or engine.default_jobs(), len(matrix.groups(cells)))
    cpus = a.cpus or engine.default_cpus()
    dest = Path(a.out or f"out/interop-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    run = engine.MatrixRun(scenario_path, kernels, chosen, cells, dest, a.lab, jobs, cpus, fresh=a.fresh)
    rows = "stacks" if a.transport == "quic" else "kernels"
    err.print(f"interop: {len(cells)} cells ({len(kernels)} {rows}, {len(chosen)} settings) of "
              f"{sc.name}; up to {jobs} lab(s) at once within {cpus:g} cores ({', '.join(run.lanes)}); "
              f"results in {dest}")
    t0, started = time.monotonic(), time.time()
    results: list[matrix.CellResult] = []
    previous = signal.signal(signal.SIGTERM, _as_interrupt)
    try:
        with terminal.TerminalUi(err, len(cells)) as ui:
            results = engine.run(run, ui)
    except KeyboardInterrupt:
        results = [run.results[c.slug] for c in cells if c.slug in run.results]
        err.print("interop: interrupted; the lanes removed their labs")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        seconds = time.monotonic() - t0
        if results:
            matrix.write(dest / "matrix.json", scenario=sc.name, kernels=kernels, settings=chosen,
                         results=results, started=started, seconds=seconds, jobs=jobs)
            html.render(dest / "matrix.html", scenario=sc.name, kernels=kernels, settings=chosen,
                        results=results, seconds=seconds, jobs=jobs)
    for t in terminal.tables(kernels, chosen, results):
        out.print(t)
    n = matrix.counts(results)
    err.print(f"{len(results)} cells in {seconds:.0f} s: " + ", ".join(f"{v} {k}" for k, v in n.items() if v)
              + f"; {dest / 'matrix.html'}")
    return 0 if n["fail"] == n["error"] == 0 else 1


def _as_interrupt(*_: object) -> None:
    raise KeyboardInterrupt
