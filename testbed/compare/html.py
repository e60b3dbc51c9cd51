"""``compare.html``: the comparison's table (verdict, what served it, the timeline phases with
their floors, messages lost and duplicated, the longest stall across each move, each run's own
report) and the transports' ladders of the first move side by side (self-contained)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed.report.ladder import build_ladder
from testbed.report.svg import esc, render_ladder_svg

WINDOW = (-0.5, 4.0)  # seconds around the first handover's link-up drawn in a ladder
MAX_ARROWS = 60
_CSS = """body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}th{background:#f4f4f4}
.pass{color:#1a7f37;font-weight:600}.fail,.error{color:#c62828;font-weight:600}.refused,.expected-fail{color:#9a6700;font-weight:600}.small{color:#666;font-size:12px}
.ladders{display:flex;gap:12px;overflow-x:auto}.ladders>div{flex:0 0 auto;border:1px solid #e0e0e0;
padding:6px}"""


def _phases(row: Mapping[str, Any]) -> str:
    out = []
    for h in row.get("handovers") or []:
        durs = h.get("durations") or {}
        cells = []
        for name, off in (h.get("offsets") or {}).items():
            d = durs.get(name) or {}
            floor = (f" (floor {d['floor']} {d['floor_seconds'] * 1000:.1f} ms)"
                     if d.get("floor_seconds") else "")
            cells.append(f"{esc(name)} +{off:.3f}s{esc(floor)}")
        out.append(f"#{h.get('index')} {esc(h.get('address') or '')}: " + "; ".join(cells))
    return "<br/>".join(out) or "<span class='small'>none</span>"


def _stalls(row: Mapping[str, Any]) -> str:
    out = []
    for s in row.get("stalls") or []:
        tail = "" if s.get("resumed", True) else " (never resumed)"
        out.append(f"move {s['move']} to {esc(s['to'])}: {s['longest_s'] * 1000:.0f} ms{tail}")
    return "<br/>".join(out) or "-"


def _served(row: Mapping[str, Any]) -> str:
    parts = [f"{esc(n)}: {esc(k.get('stack'))} {esc(k.get('kernel'))}"
             for n, k in (row.get("served") or {}).items() if k]
    q = row.get("quic") or {}
    for n, s in (q.get("nodes") or {}).items():
        parts.append(f"{esc(n)} QUIC: {esc(s.get('stack'))} {esc(s.get('version'))}")
    return "<br/>".join(parts) or "-"


def _row(row: Mapping[str, Any]) -> str:
    status = row.get("status", "error")
    why = row.get("refused") or row.get("error") or ""
    rules = ", ".join(row.get("unmet_rules") or []) or ""
    verdict = f"<span class='{esc(status)}'>{esc(status)}</span>"
    if why:
        verdict += f"<br/><span class='small'>{esc(why)}</span>"
    elif rules:
        verdict += f"<br/><span class='small'>not as expected: {esc(rules)}</span>"
    if row.get("served") and not row.get("comparable", True):
        verdict += f"<br/><span class='small'>not comparable: {esc(row.get('not_comparable'))}</span>"
    m = row.get("messages") or {}
    msgs = f"{m.get('lost', '-')} / {m.get('duplicated', '-')}" if m else "-"
    changes = "<br/>".join(f"{esc(n)}: " + ", ".join(f"{esc(k)} {esc(v[0])}→{esc(v[1])}"
                                                    for k, v in c.items())
                           for n, c in (row.get("changes") or {}).items()) or "-"
    report = f"<a href='{esc(row['report'])}'>report</a>" if row.get("report") else "-"
    return (f"<tr><td><b>{esc(row['transport'])}</b></td><td>{verdict}</td><td>{_served(row)}</td>"
            f"<td class='small'>{changes}</td><td class='small'>{_phases(row)}</td><td>{msgs}</td>"
            f"<td>{_stalls(row)}</td><td>{report}</td></tr>")


def _ladder(transport: str, verdict: Any, roles: Mapping[str, list[str]]) -> str:
    ladder = build_ladder(verdict.facts, roles)
    hos = verdict.handovers or ()
    t0 = hos[0].get("t0") if hos else None
    msgs = ladder.messages
    if t0 is not None:
        msgs = [m for m in msgs if t0 + WINDOW[0] <= m.time <= t0 + WINDOW[1]]
    msgs = msgs[:MAX_ARROWS]
    if not msgs:
        return f"<div><h3>{esc(transport)}</h3><p class='small'>nothing to draw</p></div>"
    svg = render_ladder_svg(msgs, ladder.columns, col_width=130, title=f"{transport}: the first move")
    return f"<div><h3>{esc(transport)}</h3>{svg}</div>"


def render(path: Path, doc: Mapping[str, Any], ladders: Mapping[str, Any]) -> Path:
    rows = "\n".join(_row(r) for r in doc["rows"])
    drawn = "\n".join(_ladder(t, v, roles) for t, (v, roles) in ladders.items())
    body = (f"<h1>{esc(doc['scenario'])}: one movement, every transport</h1>"
            f"<p class='small'>topology {esc(doc['topology'])}, "
            f"endpoints {esc(', '.join(doc['endpoints']))}; "
            f"{doc['seconds']:.0f} s</p>"
            "<table><tr><th>transport</th><th>verdict</th><th>served by</th>"
            "<th>transport settings changed</th>"
            "<th>timeline (after the new link's link-up)</th><th>messages lost / duplicated</th>"
            "<th>longest stall across each move</th><th>run</th></tr>"
            f"{rows}</table><h2>Ladders of the first move</h2><div class='ladders'>{drawn}</div>"
            f"<p class='small'>Generated {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} by testbed.compare.</p>")
    path.write_text("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'/>"
                    f"<title>{esc(doc['scenario'])}: compare</title><style>{_CSS}</style></head>"
                    f"<body>{body}</body></html>\n", encoding="utf-8")
    return path
