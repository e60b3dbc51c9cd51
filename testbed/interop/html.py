"""``matrix.html``: one table per setting, MN kernels as rows and CN kernels as columns; each
cell shows its status and the rules behind it and links to that run's report.html (a
self-contained page: inline CSS, relative links, no scripts)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from html import escape
from pathlib import Path
from urllib.parse import quote

from testbed.interop.kernels import KernelChoice
from testbed.interop.matrix import CellResult, counts
from testbed.interop.settings import Setting

_CSS = """
body{font:14px/1.45 "DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px;color:#212121;max-width:1400px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 4px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0 12px}th,td{border:1px solid #ccc;padding:6px 10px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td{min-width:150px}
.pass{background:#e8f5e9}.expected-fail{background:#fff8e1}.fail{background:#ffebee}
.error{background:#eceff1}.none{background:#fafafa;color:#9e9e9e}
.st{font-weight:bold}.pass .st{color:#2e7d32}.expected-fail .st{color:#b26a00}
.fail .st{color:#c62828}.error .st{color:#455a64}.small{font-size:12px;color:#555}
code{font-size:12px}
"""
LEGEND = {
    "pass": "every rule passed",
    "expected-fail": "the rules the setting expects to fail failed, and only those",
    "fail": "a rule not as expected",
    "error": "no verdict: the lab or the run broke",
}


def _kernel_head(k: KernelChoice) -> str:
    return f"{escape(k.label)}<br/><span class='small'>{escape(k.stack)} {escape(k.release)}</span>"


def _cell(r: CellResult | None) -> str:
    if r is None:
        return "<td class='none'>not run</td>"
    parts = [f"<span class='st'>{escape(r.status)}</span>"]
    if r.report:
        parts.append(f" <a href='{quote(r.report)}'>report</a>")
    if r.status == "fail" and r.unmet_rules:
        parts.append("<br/>not as expected: " + ", ".join(f"<code>{escape(x)}</code>" for x in r.unmet_rules))
    elif r.failed_rules:
        parts.append("<br/>failed: " + ", ".join(f"<code>{escape(x)}</code>" for x in r.failed_rules))
    if r.error:
        parts.append(f"<br/><span class='small'>{escape(r.error[:300])}</span>")
    parts.append(f"<br/><span class='small'>{r.seconds:.0f} s, {'fresh' if r.fresh_lab else 'reused'} lab "
                 f"{escape(r.lab)}</span>")
    return f"<td class='{escape(r.status)}'>{''.join(parts)}</td>"


def render(path: Path, *, scenario: str, kernels: list[KernelChoice], settings: list[Setting],
           results: list[CellResult], seconds: float, jobs: int) -> None:
    by_key: Mapping[tuple[str, str, str], CellResult] = {(r.mn, r.cn, r.setting): r for r in results}
    n = counts(results)
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'/>",
           f"<title>interop matrix: {escape(scenario)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Interop matrix: {escape(scenario)}</h1>",
           f"<p class='small'>{len(results)} cells in {seconds:.0f} s with {jobs} lane(s), "
           f"{time.strftime('%Y-%m-%d %H:%M:%S')}: "
           + ", ".join(f"{v} {escape(k)}" for k, v in n.items() if v) + "</p>",
           "<p class='small'>" + "; ".join(f"<b>{escape(k)}</b>: {escape(v)}" for k, v in LEGEND.items())
           + "</p>"]
    for s in settings:
        sysctls = ", ".join(f"{k}={v}" for k, v in s.values("mn").items())
        if s.values("cn") != s.values("mn"):
            sysctls = "MN " + sysctls + "; CN " + ", ".join(f"{k}={v}" for k, v in s.values("cn").items())
        expect = ", ".join(f"{k}: {v}" for k, v in s.expect.items()) or "every rule passes"
        out += [f"<h2>{escape(s.name)}</h2>", f"<p>{escape(s.description)}<br/>"
                f"<span class='small'>net.sctp: {escape(sysctls)}"
                + (f"; binding: {escape(s.binding)}" if s.binding else "")
                + f"; expected: {escape(expect)}</span></p>",
                "<table><tr><th>MN \\ CN</th>"
                + "".join(f"<th>{_kernel_head(k)}</th>" for k in kernels) + "</tr>"]
        for mn in (k for k in kernels if k.mobile):
            row = "".join(_cell(by_key.get((mn.label, cn.label, s.name))) for cn in kernels)
            out.append(f"<tr><th>{_kernel_head(mn)}</th>{row}</tr>")
        out.append("</table>")
    out.append("</body></html>")
    path.write_text("\n".join(out) + "\n")
