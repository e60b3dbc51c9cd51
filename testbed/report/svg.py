"""The ladder as an SVG sequence diagram: one lifeline per role, one arrow per message.

Built from plain f-strings rather than a library: the drawing uses six element types, the
geometry reads best as arithmetic next to the markup, and it adds no dependency (svgwrite is
unmaintained; ``xml.etree`` would need the process-global ``register_namespace`` to avoid
``ns0:`` prefixes). Every piece of text goes through ``esc`` — the one escaping point — and the
tests parse the output as XML, so well-formedness is checked rather than hoped for.

Rows are evenly spaced (times differ by orders of magnitude: 1 ms ACKs, seconds of DHCP), each
labelled with its time relative to the first message; a pause longer than ``gap`` gets a "~"
break row, as the draft's Appendix A draws "MN continue moving".
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from testbed.report.ladder import (
    KIND_ASCONF,
    KIND_DATA,
    KIND_DHCP,
    KIND_DNS,
    KIND_MPTCP,
    KIND_QUIC,
    KIND_RA,
    KIND_TCP,
    Arrow,
)

COLOURS = {
    KIND_RA: "#2e7d32",
    KIND_DHCP: "#e65100",
    KIND_ASCONF: "#1565c0",
    KIND_DNS: "#6a1b9a",
    KIND_DATA: "#455a64",
    KIND_MPTCP: "#00838f",
    KIND_TCP: "#6d4c41",
    KIND_QUIC: "#ad1457",
    "error": "#c62828",
}
KIND_NAMES = {
    KIND_RA: "Router Advertisement", KIND_DHCP: "DHCP", KIND_ASCONF: "SCTP ASCONF",
    KIND_DNS: "DNS UPDATE", KIND_DATA: "data", KIND_MPTCP: "MPTCP signal", KIND_TCP: "TCP",
    KIND_QUIC: "QUIC (decrypted)",
    "error": "error / wrong path",
}  # fmt: skip
NOTE_EVENT, NOTE_STEP = "event", "step"
_CHAR_W = 6.3  # average glyph width of the 11 px sans-serif labels, for fitting text
_LEFT = 96  # time column
_HALO = ' paint-order="stroke" stroke="#fff" stroke-width="3"'  # keeps labels legible over lines


@dataclass(frozen=True, slots=True)
class Note:
    """Something that is not a packet: an agent event on a lifeline, or a scenario step."""

    time: float
    role: str  # lifeline for NOTE_EVENT; ignored for NOTE_STEP (drawn across)
    text: str
    kind: str = NOTE_EVENT
    detail: str = ""


def esc(text: object) -> str:
    """Escape for XML/HTML text and attribute values (quotes included)."""
    return html.escape(str(text), quote=True)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _fit(text: str, width: float) -> str:
    n = max(12, int(width / _CHAR_W))
    return text if len(text) <= n else text[: n - 1] + "…"


def render_ladder_svg(
    messages: Sequence[Arrow],
    columns: Sequence[str],
    *,
    notes: Sequence[Note] = (),
    headers: dict[str, str] | None = None,
    t_ref: float | None = None,
    gap: float = 0.5,
    col_width: int = 200,
    row_height: int = 40,
    title: str = "Handover ladder",
) -> str:
    """Return an ``<svg>`` element (no XML declaration, ready to inline in HTML).

    ``headers`` maps a column to a second header line (an address); ``t_ref`` is time zero for
    the relative times (default: the first message). Messages between roles not in ``columns``
    are left out; the caller decides the columns.
    """
    cols = list(columns)
    xs = {c: _LEFT + col_width * i + col_width / 2 for i, c in enumerate(cols)}
    if t_ref is None:
        t_ref = messages[0].time if messages else (notes[0].time if notes else 0.0)
    rows: list[tuple[float, int, Arrow | Note]] = [
        (m.time, 1, m) for m in messages if m.src_role in xs and m.dst_role in xs
    ]
    rows += [(n.time, 0, n) for n in notes if n.kind == NOTE_STEP or n.role in xs]
    rows.sort(key=lambda r: (r[0], r[1]))
    width = _LEFT + col_width * len(cols) + 16
    head_h = 48
    body: list[str] = []
    y = head_h + 34.0
    last: float | None = None
    for t, _order, item in rows:
        if last is not None and t - last > gap:
            body.append(_gap_row(y - 8, width, t - last))
            y += row_height * 0.8
        last = t
        rel = fmt_ms(t - t_ref)
        if isinstance(item, Arrow):
            body.append(_arrow(item, xs, y, rel, col_width))
        elif item.kind == NOTE_STEP:
            body.append(_step(item, y, width, rel))
        else:
            body.append(_note(item, xs[item.role], y, rel))
        y += row_height
    bottom = y + 4
    height = bottom + 44
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" role="img" '
        'aria-labelledby="ladder-title" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
        'font-size="11">',
        f'<title id="ladder-title">{esc(title)}</title>',
        _defs(),
        f'<text x="8" y="{head_h + 14}" font-size="10" fill="#666">time</text>',
    ]
    for c in cols:
        x = xs[c]
        out.append(
            f'<line x1="{x:.1f}" y1="{head_h}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#9e9e9e" '
            'stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<rect x="{x - col_width / 2 + 10:.1f}" y="6" width="{col_width - 20}" '
            f'height="{head_h - 6}" rx="6" fill="#eceff1" stroke="#607d8b"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="24" text-anchor="middle" font-weight="bold" font-size="13">{esc(c)}</text>'
        )
        sub = (headers or {}).get(c)
        if sub:
            out.append(
                f'<text x="{x:.1f}" y="40" text-anchor="middle" font-size="10" '
                f'fill="#455a64">{esc(_fit(sub, col_width - 24))}</text>'
            )
    out.extend(body)
    out.append(_legend(bottom + 22))
    out.append("</svg>")
    return "\n".join(out)


def _defs() -> str:
    marks = "".join(
        f'<marker id="ladder-arrow-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
        for k, c in COLOURS.items()
    )
    return f"<defs>{marks}</defs>"


def _time(y: float, rel: str) -> str:
    return f'<text x="8" y="{y + 4:.1f}" font-size="10" fill="#333">{esc(rel)}</text>'


def _arrow(m: Arrow, xs: dict[str, float], y: float, rel: str, col_width: int) -> str:
    key = "error" if m.error else m.kind
    colour = COLOURS.get(key, COLOURS[KIND_DATA])
    marker = f"ladder-arrow-{key if key in COLOURS else KIND_DATA}"
    dash = ' stroke-dasharray="6 3"' if m.reply else ""
    x1, x2 = xs[m.src_role], xs[m.dst_role]
    tip = f"{m.label}\n{m.detail}\n{m.pcap} frame {m.frame}"
    where = f"{m.pcap} #{m.frame}"
    parts = [f'<g class="msg" data-kind="{esc(m.kind)}"><title>{esc(tip)}</title>', _time(y, rel)]
    if x1 == x2:  # both ends in one role (e.g. two unknown hosts): a small loop
        parts.append(
            f'<path d="M{x1:.1f},{y - 6:.1f} h30 v12 h-30" fill="none" stroke="{colour}" '
            f'stroke-width="1.6"{dash} marker-end="url(#{marker})"/>'
        )
        parts.append(f'<text x="{x1 + 36:.1f}" y="{y + 4:.1f}" fill="{colour}">{esc(m.label)}</text>')
    else:
        mid = (x1 + x2) / 2
        span = abs(x2 - x1) + col_width * 0.6
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-width="1.6"{dash} marker-end="url(#{marker})"/>'
        )
        parts.append(
            f'<text x="{mid:.1f}" y="{y - 5:.1f}" text-anchor="middle" fill="{colour}"{_HALO}>'
            f"{esc(_fit(m.label, span))}</text>"
        )
        parts.append(
            f'<text x="{mid:.1f}" y="{y + 12:.1f}" text-anchor="middle" font-size="9" '
            f'fill="#888"{_HALO}>{esc(_fit(where, span))}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _note(n: Note, x: float, y: float, rel: str) -> str:
    text = _fit(n.text, 260)
    w = len(text) * _CHAR_W * 0.92 + 14
    tip = f"{n.text}\n{n.detail}" if n.detail else n.text
    return (
        f'<g class="note"><title>{esc(tip)}</title>{_time(y, rel)}'
        f'<rect x="{x + 6:.1f}" y="{y - 10:.1f}" width="{w:.1f}" height="18" rx="4" '
        f'fill="#fff8e1" stroke="#f9a825"/>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#f9a825"/>'
        f'<text x="{x + 13:.1f}" y="{y + 3:.1f}" font-size="10" fill="#5d4037">'
        f"{esc(text)}</text></g>"
    )


def _step(n: Note, y: float, width: float, rel: str) -> str:
    text = _fit(n.text, 400)
    w = len(text) * _CHAR_W + 16
    mid = (_LEFT + width) / 2
    return (
        f'<g class="step"><title>{esc(n.detail or n.text)}</title>{_time(y, rel)}'
        f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{width - 8:.1f}" y2="{y:.1f}" stroke="#8d6e63" '
        f'stroke-dasharray="2 4" stroke-width="1.5"/>'
        f'<rect x="{mid - w / 2:.1f}" y="{y - 10:.1f}" width="{w:.1f}" height="19" rx="9" '
        f'fill="#efebe9" stroke="#8d6e63"/>'
        f'<text x="{mid:.1f}" y="{y + 4:.1f}" text-anchor="middle" font-style="italic" '
        f'fill="#4e342e">{esc(text)}</text></g>'
    )


def _gap_row(y: float, width: float, seconds: float) -> str:
    text = f"~ ~ ~  {seconds:.3f} s later  ~ ~ ~"
    return (
        f'<g class="gap"><rect x="{_LEFT}" y="{y - 9:.1f}" width="{width - _LEFT - 8:.1f}" '
        f'height="16" fill="#fafafa"/><text x="{(_LEFT + width) / 2:.1f}" y="{y + 3:.1f}" '
        f'text-anchor="middle" font-size="10" fill="#757575">{esc(text)}</text></g>'
    )


def _legend(y: float) -> str:
    parts = ['<g class="legend" font-size="10">']
    x = 8.0
    for key, name in KIND_NAMES.items():
        c = COLOURS[key]
        parts.append(
            f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 22:.1f}" y2="{y:.1f}" stroke="{c}" '
            f'stroke-width="2" marker-end="url(#ladder-arrow-{key})"/>'
            f'<text x="{x + 28:.1f}" y="{y + 4:.1f}" fill="#333">{esc(name)}</text>'
        )
        x += 40 + len(name) * _CHAR_W * 0.9
    parts.append(
        f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 22:.1f}" y2="{y:.1f}" stroke="#333" '
        f'stroke-width="1.6" stroke-dasharray="6 3"/>'
        f'<text x="{x + 28:.1f}" y="{y + 4:.1f}" fill="#333">answer</text></g>'
    )
    return "".join(parts)
