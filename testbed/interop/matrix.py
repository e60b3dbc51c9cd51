"""The matrix as data: its cells (MN kernel × CN kernel × setting), which cells share a lab, a
cell's status from its verdict, and ``matrix.json``.

``matrix.json`` (schema 1)::

    {"schema": 1, "scenario", "started", "seconds", "jobs",
     "kernels": [{"label", "stack", "kernel", "release"}],
     "settings": [{"name", "description", "sysctls", "mn", "cn", "binding", "expect"}],
     "counts": {"pass": n, "expected-fail": n, "fail": n, "error": n},
     "cells": [{"mn", "cn", "setting", "status", "failed_rules", "unmet_rules", "report",
                "verdict", "seconds", "lab", "fresh_lab", "error"}]}

``status``: ``pass`` (every rule met, none expected to fail), ``expected-fail`` (every rule
met, some failed as the setting expects), ``fail`` (a rule not as expected: ``unmet_rules``),
``error`` (no verdict: the lab or the run broke; ``error`` says why). ``failed_rules`` are the
rules that failed, expected or not; ``report`` and ``verdict`` are paths relative to the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from testbed.errors import ConfigError
from testbed.interop.kernels import KernelChoice
from testbed.interop.settings import Setting

SCHEMA = 1
Status = Literal["pass", "expected-fail", "fail", "error"]
STATUSES: tuple[Status, ...] = ("pass", "expected-fail", "fail", "error")
ONLY_KEYS = ("mn", "cn", "setting")


@dataclass(frozen=True)
class Cell:
    mn: KernelChoice
    cn: KernelChoice
    setting: Setting

    @property
    def pair(self) -> tuple[str, str]:
        return (self.mn.label, self.cn.label)

    @property
    def slug(self) -> str:
        return f"{self.mn.slug}__{self.cn.slug}__{self.setting.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"mn": self.mn.to_dict(), "cn": self.cn.to_dict(), "setting": self.setting.model_dump()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cell:
        return cls(KernelChoice.from_dict(d["mn"]), KernelChoice.from_dict(d["cn"]),
                   Setting.model_validate(d["setting"]))


@dataclass
class CellResult:
    mn: str
    cn: str
    setting: str
    status: Status
    failed_rules: list[str] = field(default_factory=list)
    unmet_rules: list[str] = field(default_factory=list)
    report: str | None = None
    verdict: str | None = None
    seconds: float = 0.0
    lab: str = ""
    fresh_lab: bool = True
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def classify(verdict: Mapping[str, Any]) -> tuple[Status, list[str], list[str]]:
    """(status, failed rules, unmet rules) of a verdict.json (schema 3) as a dict."""
    rules = verdict.get("rules", [])
    failed = [r["id"] for r in rules if r["status"] == "fail"]
    unmet = [r["id"] for r in rules if not r.get("met", r["status"] != "fail")]
    if unmet:
        return "fail", failed, unmet
    if any(r.get("expected") == "fail" for r in rules):
        return "expected-fail", failed, unmet
    return "pass", failed, unmet


def parse_only(text: str | None, kernels: list[KernelChoice], settings: list[Setting]) -> dict[str, set[str]]:
    """``MN=uml,CN=6.12,SETTING=default`` (a key may repeat: ``MN=uml,MN=6.1``) as key → labels."""
    out: dict[str, set[str]] = {}
    if not text:
        return out
    known = {"mn": [k.label for k in kernels if k.mobile], "cn": [k.label for k in kernels],
             "setting": [s.name for s in settings]}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ONLY_KEYS:
            raise ConfigError("--only", part or "-", "expected KEY=VALUE with KEY one of MN, CN, SETTING",
                              "e.g. --only MN=uml,SETTING=default")
        if value not in known[key]:
            raise ConfigError("--only", part, f"{value!r} is not in the matrix",
                              f"{key.upper()} is one of {', '.join(known[key])}")
        out.setdefault(key, set()).add(value)
    return out


def plan(kernels: list[KernelChoice], settings: list[Setting], only: Mapping[str, set[str]] | None = None
         ) -> list[Cell]:
    """Every MN × CN × setting cell the filter keeps, MN-major (the order of the tables);
    usrsctp is a CN only."""
    only = only or {}
    cells = [Cell(m, c, s) for m in kernels if m.mobile for c in kernels for s in settings
             if m.label in only.get("mn", {m.label}) and c.label in only.get("cn", {c.label})
             and s.name in only.get("setting", {s.name})]
    if not cells:
        raise ConfigError("--only", "-", "no cell left", "loosen the filter")
    return cells


def groups(cells: Iterable[Cell]) -> list[list[Cell]]:
    """Cells that can share one lab (same MN and CN kernels), in the matrix's order; the
    groups with the most QEMU nodes first, since they take longest (their boots and their
    emulated handovers), so the last lanes to finish are short ones."""
    by_pair: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        by_pair.setdefault(c.pair, []).append(c)
    weight = {p: sum(k.stack == "qemu" for k in (g[0].mn, g[0].cn)) for p, g in by_pair.items()}
    return sorted(by_pair.values(), key=lambda g: -weight[g[0].pair])


def counts(results: Iterable[CellResult]) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for r in results:
        out[r.status] += 1
    return out


def write(path: Path, *, scenario: str, kernels: list[KernelChoice], settings: list[Setting],
          results: list[CellResult], started: float, seconds: float, jobs: int) -> None:
    doc = {
        "schema": SCHEMA, "scenario": scenario, "started": started, "seconds": round(seconds, 1),
        "jobs": jobs, "kernels": [k.to_dict() for k in kernels],
        "settings": [s.model_dump() for s in settings], "counts": counts(results),
        "cells": [r.to_dict() for r in results],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
