"""A run's link traces as an SVG plot: each network's signal (as its agent was told) and rate
(as the replayers applied it) over the run, with the policy's decisions and the handover
phases marked on it.

Drawn from verdict.json alone: its ``traces`` block (the replayers' records, seconds from the
traces' 0) and its ``policy`` and ``handovers`` blocks. Plain f-strings as in ``report.svg``;
every text goes through ``esc``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

FILE = "signal.svg"  # beside verdict.json in a run's directory
W, LEFT, RIGHT = 900, 64, 120
PANEL_H, GAP, TOP = 190, 46, 34
PALETTE = ("#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#00838f", "#6d4c41")
# the phases marked, per transport, in the order they happen
PHASES = ("add_ip_acked", "join_acked", "set_primary_acked", "prio_new", "dns_acked", "delete_ip_acked",
          "remove_sent")


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _steps(points: Sequence[tuple[float, float]], x, y, end: float) -> str:
    """A step line: each value held until the next."""
    if not points:
        return ""
    d = [f"M{x(points[0][0]):.1f},{y(points[0][1]):.1f}"]
    for (_, v), (t2, v2) in zip(points, points[1:], strict=False):
        d.append(f"H{x(t2):.1f}V{y(v2):.1f}")
        del v
    d.append(f"H{x(end):.1f}")
    return " ".join(d)


def nice(lo: float, hi: float) -> tuple[float, float, int]:
    """An axis from ``lo`` to ``hi`` widened to round values, with its number of ticks."""
    span = max(hi - lo, 1e-9)
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if span / s <= 6)
    lo2, hi2 = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return lo2, hi2, max(1, round((hi2 - lo2) / step))


def _axis(y0: float, lo: float, hi: float, unit: str, ticks: int = 4) -> str:
    out = []
    for i in range(ticks + 1):
        v = lo + (hi - lo) * i / ticks
        yy = y0 + PANEL_H - PANEL_H * i / ticks
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    out.append(f'<text x="14" y="{y0 + PANEL_H / 2:.1f}" transform="rotate(-90 14 {y0 + PANEL_H / 2:.1f})" '
               f'text-anchor="middle">{esc(unit)}</text>')
    return "".join(out)


def render(verdict: Mapping[str, Any]) -> str | None:
    """The plot, or None when the run replayed no trace."""
    tr = verdict.get("traces")
    if not tr or tr.get("start_wall") is None:
        return None
    start = tr["start_wall"]
    nets = list(tr.get("networks") or [])
    colour = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(nets)}
    signal: dict[str, list[tuple[float, float]]] = {}
    for m in tr.get("metrics", []):
        if "signal" in m.get("values", {}):
            signal.setdefault(m["network"], []).append((m["t"], m["values"]["signal"]))
    rate: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for a in tr.get("applied", []):
        rate.setdefault((a["network"], a["direction"]), []).append((a["t"], (a.get("rate_kbit") or 0) / 1000))
    limited = {k for k in rate if any(a.get("rate_kbit") is not None for a in tr.get("applied", [])
                                      if (a["network"], a["direction"]) == k)}
    rate = {k: v for k, v in rate.items() if k in limited}  # a trace without a rate: no panel
    decisions = (verdict.get("policy") or {}).get("decisions", [])
    marks = [(h["phases"][p] - start, p) for h in verdict.get("handovers", []) for p in PHASES
             if p in h.get("phases", {})]
    times = [t for s in (*signal.values(), *rate.values()) for t, _ in s] + [d["t"] for d in decisions
                                                                          if "t" in d] + [t for t, _ in marks]
    end = max([*times, tr.get("end_t") or 0.0, 1.0])
    x = (lambda t: LEFT + (W - LEFT - RIGHT) * max(t, 0.0) / end)  # noqa: E731
    panels = []
    y0 = TOP
    if signal:
        vals = [v for s in signal.values() for _, v in s]
        lo, hi, nt = nice(min(vals) - 2, max(vals) + 2)
        ys = (lambda v, y0=y0, lo=lo, hi=hi: y0 + PANEL_H - PANEL_H * (v - lo) / (hi - lo))  # noqa: E731
        lines = "".join(f'<path d="{_steps(pts, x, ys, end)}" fill="none" stroke="{colour[n]}" '
                        'stroke-width="1.4"/>' for n, pts in signal.items())
        panels.append((y0, _axis(y0, lo, hi, "signal (dBm)", nt) + lines, "signal, as the agent was told"))
        y0 += PANEL_H + GAP
    if rate:
        _, hi, nt = nice(0, max([v for s in rate.values() for _, v in s] + [1.0]) * 1.05)
        yr = (lambda v, y0=y0, hi=hi: y0 + PANEL_H - PANEL_H * v / hi)  # noqa: E731
        dashed = ' stroke-dasharray="5 3"'
        lines = "".join(
            f'<path d="{_steps(pts, x, yr, end)}" fill="none" stroke="{colour[n]}" stroke-width="1.4"'
            f'{dashed if d == "up" else ""}/>' for (n, d), pts in rate.items())
        panels.append((y0, _axis(y0, 0, hi, "rate (Mbit/s)", nt) + lines,
                       "rate as applied (down solid, up dashed)"))
        y0 += PANEL_H + GAP
    if not panels:
        return None
    bottom = y0 - GAP
    body = []
    for py, inner, caption in panels:
        body.append(f'<text x="{LEFT}" y="{py - 8}" class="cap">{esc(caption)}</text>{inner}'
                    f'<rect x="{LEFT}" y="{py}" width="{W - LEFT - RIGHT}" height="{PANEL_H}" fill="none" '
                    'stroke="#999"/>')
    for d in decisions:
        if "t" not in d:
            continue
        lead = d["t"] if d["reason"] == "lost" else d["leading_since"] - start  # forced: no dwell
        body.append(f'<rect x="{x(lead):.1f}" y="{TOP}" width="{max(x(d["t"]) - x(lead), 1):.1f}" '
                    f'height="{bottom - TOP}" fill="#fbc02d" opacity="0.18"/>')
        if d.get("crossing_t") is not None:
            cx = x(d["crossing_t"])
            body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{TOP}" y2="{bottom}" stroke="#777" '
                        'stroke-dasharray="2 3"/>')
        dx = x(d["t"])
        ink = "#9e9e9e" if d["reason"] == "lost" else "#c62828"  # forced by a lost network: grey
        why = " (lost)" if d["reason"] == "lost" else ""
        body.append(f'<line x1="{dx:.1f}" x2="{dx:.1f}" y1="{TOP}" y2="{bottom}" stroke="{ink}"/>'
                    f'<text x="{dx + 3:.1f}" y="{TOP + 12}" fill="{ink}">'
                    f'{esc(d["from"])}→{esc(d["to"])}{why}</text>')
    groups: list[tuple[float, list[str]]] = []  # phases a few pixels apart share one label
    for t, p in sorted(marks):
        if groups and x(t) - x(groups[-1][0]) < 4:
            groups[-1][1].append(p)
        else:
            groups.append((t, [p]))
    for i, (t, names) in enumerate(groups):
        mx = x(t)
        body.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{bottom}" y2="{bottom + 8}" stroke="#333"/>')
        for j, p in enumerate(names):
            body.append(f'<text x="{mx:.1f}" y="{bottom + 18 + 10 * j + 30 * (i % 2)}" text-anchor="middle" '
                        f'class="small">{esc(p)}</text>')
    _, end_tick, nticks = nice(0, end)
    for k in range(nticks + 1):
        t = end_tick * k / nticks
        if t > end + 1e-9:
            break
        body.append(f'<text x="{x(t):.1f}" y="{bottom + 84}" text-anchor="middle">{t:.0f} s</text>')
    legend = [f'<text x="{W - RIGHT + 10}" y="{TOP + 14 + 16 * i}" fill="{colour[n]}">■ {esc(n)}</text>'
              for i, n in enumerate(nets)]
    legend += [f'<text x="{W - RIGHT + 10}" y="{TOP + 30 + 16 * len(nets)}" fill="#c62828">| decision</text>',
               f'<text x="{W - RIGHT + 10}" y="{TOP + 46 + 16 * len(nets)}" fill="#777">┆ crossing</text>',
               f'<text x="{W - RIGHT + 10}" y="{TOP + 62 + 16 * len(nets)}" fill="#b8860b">▒ dwell</text>']
    h = bottom + 112
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" '
            'font-family="sans-serif" font-size="11"><style>.cap{font-weight:bold}.small{font-size:9px}'
            f'</style><rect width="{W}" height="{h}" fill="#fff"/>{"".join(body)}{"".join(legend)}'
            f'<text x="{LEFT}" y="{bottom + 102}">seconds from the traces\' start</text></svg>\n')
