"""Running a comparison: one lab and one run per transport, one after another, then
``compare.json`` and ``compare.html``.

``compare.json`` (schema 1)::

    {"schema": 1, "scenario", "topology", "endpoints": [mn, cn], "started", "seconds",
     "rows": [{"transport", "status": pass|expected-fail|fail|refused|error, "comparable",
               "not_comparable": why, "refused": why, "error": why, "changes": {node: {field:
               [base, this row]}}, "served": {node: {stack, kernel, accelerator}}, "quic",
               "failed_rules", "unmet_rules", "handovers": [{index, address, offsets,
               durations}], "messages": {sent, received, lost, duplicated}, "stalls": [{move,
               to, mode, longest_s, from, until, resumed}], "report", "seconds"}]}

A row is comparable when its endpoints ran on the kernels the reference row's did (the
scenario's own transport's, else the first that ran): the topologies differ only in transport
settings by construction, and ``changes`` lists those.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testbed.compare import html
from testbed.compare.plan import endpoints, plan
from testbed.compare.summary import summarise
from testbed.errors import TestbedError
from testbed.lab import Lab
from testbed.model import loader
from testbed.progress import Progress, quiet
from testbed.scenario.model import Scenario
from testbed.scenario.runner import Runner

SCHEMA = 1


@dataclass
class Comparison:
    scenario: Scenario
    transports: list[str]
    out: Path
    lab_prefix: str
    progress: Progress = quiet
    rows: list[dict[str, Any]] = field(default_factory=list)
    ladders: dict[str, Any] = field(default_factory=dict)  # transport -> (verdict, roles)

    def run(self) -> dict[str, Any]:
        t0, started = time.monotonic(), time.time()
        base = loader.load(self.scenario.topology)
        nodes = endpoints(base, self.scenario)
        self.out.mkdir(parents=True, exist_ok=True)
        for i, row in enumerate(plan(self.scenario, self.transports)):
            rec: dict[str, Any] = {"transport": row.transport, "changes": row.changes, "refused": row.refused,
                                   "error": ""}
            if row.refused:
                self.progress(f"{row.transport}: refused ({row.refused})")
                rec["status"] = "refused"
                self.rows.append(rec)
                continue
            t_row = time.monotonic()
            d = self.out / row.transport
            d.mkdir(parents=True, exist_ok=True)
            topo_file = d / "topology.yaml"
            topo_file.write_text(yaml.safe_dump(row.topology, sort_keys=False))
            sc = row.scenario.model_copy(update={"topology": str(topo_file)})
            try:
                self._one(row.transport, sc, topo_file, f"{self.lab_prefix}{i}", d / "run")
                rec.update(summarise(row.transport, d / "run", nodes))
                if rec.get("report"):
                    rec["report"] = f"{row.transport}/run/{rec['report']}"
            except TestbedError as e:
                rec.update(status="error", error=str(e))
                self.progress(f"{row.transport}: {e}")
            rec["seconds"] = round(time.monotonic() - t_row, 1)
            self.rows.append(rec)
        self._comparable()
        doc = {"schema": SCHEMA, "scenario": self.scenario.name, "topology": base.name,
               "endpoints": list(nodes),
               "started": started, "seconds": round(time.monotonic() - t0, 1), "rows": self.rows}
        (self.out / "compare.json").write_text(json.dumps(doc, indent=1))
        html.render(self.out / "compare.html", doc, self.ladders)
        return doc

    def _one(self, transport: str, sc: Scenario, topo_file: Path, lab_name: str, out: Path) -> None:
        self.progress(f"{transport}: lab {lab_name} up")
        lab = Lab.up(topo_file, lab_name, self.progress)
        try:
            runner = Runner(sc, lab, out, lambda m: self.progress(f"{transport}: {m}"),
                            title=f"{self.scenario.name} over {transport}")
            result = runner.run()
            self.ladders[transport] = (result.verdict, runner.roles())
        finally:
            lab.close()
            lab.down()

    def _comparable(self) -> None:
        ran = [r for r in self.rows if r.get("served")]
        ref = next((r for r in ran if r["transport"] == self.scenario.transport), ran[0] if ran else None)
        for r in self.rows:
            if not r.get("served") or ref is None:
                r["comparable"], r["not_comparable"] = False, "not run"
                continue
            differ = [f"{n}: {_kernel(k)} here, {_kernel(ref['served'].get(n))} in the {ref['transport']} row"
                      for n, k in r["served"].items() if _kernel(k) != _kernel(ref["served"].get(n))]
            r["comparable"] = not differ
            r["not_comparable"] = "; ".join(differ)


def _kernel(k: dict[str, Any] | None) -> str:
    return f"{k.get('stack')} {k.get('kernel')}" if k else "?"
