"""``render_report``: one self-contained HTML page per run (inline CSS and SVG, no scripts).

Sections: summary (PASS/FAIL), the Appendix-A ladder, the handover timeline, the rules with their
evidence, the captures (relative links ``pcaps/NAME``), the agent events. Each section says "not
captured" when its input is missing, so a failed or partial run still gets a report. The page is
also well-formed XML (void elements self-closed, no named entities), which the tests check.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from testbed.conformance.extract import extract
from testbed.conformance.keylog_file import keys_beside
from testbed.conformance.mptcp_timeline import MPTCP_PHASES
from testbed.conformance.quic_timeline import QUIC_PHASES
from testbed.conformance.timeline import PHASES
from testbed.conformance.verdict import Verdict
from testbed.report.ladder import Ladder, build_ladder
from testbed.report.roles import MN
from testbed.report.rundir import (
    CAT_AGENT,
    CAT_OTHER,
    CAT_STEP,
    RunData,
    event_category,
    event_kind,
    event_time,
    load_run,
)
from testbed.report.svg import NOTE_EVENT, NOTE_STEP, Note, esc, fmt_ms, render_ladder_svg

REPORT_NAME = "report.html"
MAX_EVENTS = 500
MAX_EVIDENCE = 20
_COUNT_WORDS = (("pass", "passed"), ("fail", "failed"), ("skip", "skipped"))
_PHASES_OF = {"mptcp": MPTCP_PHASES, "quic": QUIC_PHASES}  # a handover's phases by its transport
_NOTE_KINDS = frozenset({"link_up", "link_down", "detected", "configured", "lost"})
_CSS = """
body{font:14px/1.45 "DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px;color:#212121;
max-width:1400px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:bold;font-size:12px;
color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}.skip,.none{background:#9e9e9e}
.big{font-size:20px;padding:3px 14px}.missing{color:#757575;font-style:italic}
.ladder-wrap{overflow-x:auto;border:1px solid #e0e0e0;padding:6px;background:#fff}
.bar{height:10px;background:#64b5f6;min-width:1px}.err{color:#c62828}.small{font-size:12px;color:#555}
code{font-size:12px}ul.ev{margin:0;padding-left:16px}
"""


def _iso(t: float | None) -> str:
    if t is None:
        return "—"
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _missing(what: str = "not captured") -> str:
    return f'<p class="missing">{esc(what)}</p>'


def _badge(status: str, big: bool = False) -> str:
    cls = status.lower() if status.lower() in ("pass", "fail", "skip") else "none"
    return f'<span class="badge {cls}{" big" if big else ""}">{esc(status.upper())}</span>'


def _pcap_link(name: str, known: set[str]) -> str:
    if name in known:
        return f'<a href="pcaps/{esc(quote(name))}">{esc(name)}</a>'
    return esc(name)


def _rel(t: float | None, t_ref: float | None) -> str:
    if t is None:
        return "—"
    return fmt_ms(t - t_ref) if t_ref is not None else _iso(t)


def _notes(events: Sequence[dict[str, Any]], mn_role: str) -> list[Note]:
    """Agent events drawn on the MN's lifeline and scenario steps drawn across the ladder."""
    out: list[Note] = []
    for e in events:
        t = event_time(e)
        if t is None:
            continue
        kind, cat = event_kind(e), event_category(e)
        if cat == CAT_AGENT and kind in _NOTE_KINDS:
            what = e.get("prefix") or ", ".join(map(str, e.get("addresses") or ())) or ""
            text = f"{kind} {e.get('ifname') or ''} {what}".replace("  ", " ").strip()
            out.append(Note(t, mn_role, text, NOTE_EVENT, _compact(e)))
        elif cat == CAT_STEP:
            step = e.get("step", "?")
            target = f" → {e['to']}" if e.get("to") else ""
            out.append(Note(t, mn_role, f"step: {step}{target}", NOTE_STEP, _compact(e)))
    return out


def _compact(e: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    return ", ".join(
        f"{k}={json.dumps(v, separators=(',', ':')) if not isinstance(v, str) else v}"
        for k, v in e.items()
        if k not in skip and v not in (None, "", [], {})
    )


# -- sections -------------------------------------------------------------------------------------
def _summary(run: RunData, ladder: Ladder, title: str) -> str:
    v = run.verdict
    parts = [f"<h1>{esc(title)}</h1>"]
    if v is None:
        parts.append(
            f"<p>{_badge('no verdict', True)} <span class='missing'>verdict.json not captured</span></p>"
        )
    else:
        status = "pass" if v.get("passed") else "fail"
        counts = Counter(str(r.get("status")) for r in v.get("rules", []) if isinstance(r, dict))
        failed = [
            str(r.get("id")) for r in v.get("rules", []) if isinstance(r, dict) and r.get("status") == "fail"
        ]
        line = ", ".join(f"{counts.get(k, 0)} {w}" for k, w in _COUNT_WORDS)
        parts.append(f"<p>{_badge(status, True)} <strong>{esc(line)}</strong></p>")
        if failed:
            parts.append(f"<p class='err'>Failed: {esc(', '.join(failed))}</p>")
    stats = (v or {}).get("stats") or {}
    facts = [
        ("run directory", str(run.run_dir)),
        ("captures", str(len(run.pcaps))),
        ("ladder messages", str(len(ladder.messages))),
        ("handovers", str(len((v or {}).get("handovers") or []))),
    ]
    for key in ("packets", "duplicates_removed", "malformed", "dns_updates"):
        if key in stats:
            facts.append((key.replace("_", " "), str(stats[key])))
    if ladder.messages:
        facts.append(("first message", _iso(ladder.messages[0].time)))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(val)}</td></tr>" for k, val in facts)
    parts.append(f"<table class='facts'>{rows}</table>")
    if run.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in run.problems)
        parts.append(f"<p class='err'>Problems reading the run:</p><ul>{items}</ul>")
    return "\n".join(parts)


def _header(entries: Sequence[str]) -> str:
    """Second header line of a column: its first addresses as the caller listed them."""
    return ", ".join(entries[:2]) + (", …" if len(entries) > 2 else "")


def _ladder(
    ladder: Ladder,
    notes: list[Note],
    roles: Mapping[str, Sequence[str]],
    title: str,
    known: set[str],
) -> str:
    parts = ["<h2 id='ladder'>Handover ladder (Appendix A)</h2>"]
    if not ladder.messages:
        parts.append(
            _missing("not captured: no Router Advertisement, DHCP, ASCONF or DNS UPDATE in the captures")
        )
        return "\n".join(parts)
    headers = {c: _header(roles.get(c, ())) for c in ladder.columns if roles.get(c)}
    svg = render_ladder_svg(ladder.messages, ladder.columns, notes=notes, headers=headers, title=title)
    parts.append(
        "<p class='small'>Times are relative to the first message. Dashed arrows are answers; "
        "hover an arrow for its details.</p>"
    )
    parts.append(f"<div class='ladder-wrap'>{svg}</div>")
    if ladder.truncated:
        parts.append(f"<p class='err'>{ladder.truncated} later message(s) not drawn</p>")
    t0 = ladder.messages[0].time
    rows = "".join(
        f"<tr><td class='num'>{esc(fmt_ms(m.time - t0))}</td>"
        f"<td>{esc(m.src_role)} → {esc(m.dst_role)}</td>"
        f"<td class='{'err' if m.error else 'msg'}'>{esc(m.label)}</td>"
        f"<td class='small'>{esc(m.detail)}</td>"
        f"<td>{_pcap_link(m.pcap, known)} #{m.frame}</td></tr>"
        for m in ladder.messages
    )
    parts.append(
        "<details><summary>Messages as a table</summary><table><tr><th>time</th><th>from → to</th>"
        f"<th>message</th><th>detail</th><th>capture</th></tr>{rows}</table></details>"
    )
    return "\n".join(parts)


def _floor_cells(d: Mapping[str, Any] | None) -> str:
    """Duration, protocol floor and the rest (host stacks, agent, binding) of one phase."""
    if not d:
        return "<td class='num'>—</td><td>—</td><td class='num'>—</td>"
    dur = f"{fmt_ms(float(d['seconds']))} <span class='small'>from {esc(d.get('from', '?'))}</span>"
    if d.get("floor_seconds") is None:
        floor = f"<span class='missing'>{esc(d['floor'])} not captured</span>" if d.get("floor") else "—"
        return f"<td class='num'>{dur}</td><td>{floor}</td><td class='num'>—</td>"
    floor = f"{esc(fmt_ms(float(d['floor_seconds'])))} <span class='small'>{esc(d['floor'])}</span>"
    rest = esc(fmt_ms(float(d["overhead"])))
    return f"<td class='num'>{dur}</td><td class='num'>{floor}</td><td class='num'>{rest}</td>"


def _floors(h: Mapping[str, Any], known: set[str]) -> str:
    floors = {k: f for k, f in (h.get("floors") or {}).items() if isinstance(f, dict)}
    if not floors:
        return _missing("protocol floors: no RS/RA, DHCP, ASCONF or DNS exchange of this handover captured")
    rows = "".join(
        f"<tr><td>{esc(f.get('what', name))}</td><td class='num'>{esc(fmt_ms(float(f['seconds'])))}</td>"
        f"<td>{_pcap_link(str(f['from']['pcap']), known)} #{esc(f['from']['frame'])} → "
        f"{_pcap_link(str(f['to']['pcap']), known)} #{esc(f['to']['frame'])}</td></tr>"
        for name, f in floors.items()
    )
    return (
        "<table><tr><th>protocol floor</th><th>on the wire</th><th>captured</th></tr>"
        f"{rows}</table>"
    )


def _timeline(run: RunData, t_ref: float | None, budgets: Mapping[str, float], known: set[str]) -> str:
    parts = ["<h2 id='timeline'>Handover timeline</h2>"]
    v = run.verdict or {}
    hos = [h for h in v.get("handovers") or [] if isinstance(h, dict)]
    if not hos:
        parts.append(
            _missing(
                "not captured: no handover in the verdict" if run.verdict else "not captured: no verdict"
            )
        )
        return "\n".join(parts)
    rules = {str(r.get("id")): r for r in v.get("rules", []) if isinstance(r, dict)}
    parts.append(
        "<p class='small'>Each phase's duration runs from the phase named beside it; its protocol "
        "floor is the exchange on the wire that the phase waits for, and the rest is spent in the "
        "hosts' stacks, the mobility agent and the binding daemon.</p>"
    )
    for h in hos:
        phases: dict[str, float] = {k: float(x) for k, x in (h.get("phases") or {}).items()}
        offsets: dict[str, float] = {k: float(x) for k, x in (h.get("offsets") or {}).items()}
        durations = h.get("durations") or {}
        missing = set(h.get("missing") or ())
        old = ", ".join(h.get("old_addresses") or ()) or h.get("old_address") or "?"
        new = ", ".join(h.get("addresses") or ()) or h.get("address") or "?"
        head = f"Handover {h.get('index', '?')}: {old} → {new}"
        total = max(offsets.values(), default=0.0)
        parts.append(f"<h3>{esc(head)}</h3>")
        t0 = "unknown (no link_up event of the new link)" if h.get("t0") is None else _iso(h.get("t0"))
        parts.append(
            f"<p class='small'>t0 (the new link's link_up) {esc(t0)}; last phase at "
            f"+{esc(fmt_ms(total))}; {esc(str(h.get('transport', 'sctp')).upper())} ports "
            f"{esc(h.get('ports'))}</p>"
        )
        rows = []
        scale = total if total > 0 else 1.0
        # Rows in time order (TraSH order on ties), then the phases never reached.
        names = _PHASES_OF.get(str(h.get("transport")), PHASES)
        order = sorted((p for p in names if p in phases), key=lambda p: phases[p])
        for phase in order + [p for p in names if p not in phases]:
            rule = rules.get(f"timeline.{phase}")
            budget = budgets.get(phase)
            bcell = ""
            if budget is not None:
                bcell = esc(fmt_ms(budget)) + " "
            if rule:
                bcell += _badge(str(rule.get("status")))
            if phase not in phases:
                why = "missing from the agent's events" if phase in missing else "not observed"
                rows.append(
                    f"<tr><td>{esc(phase)}</td><td class='missing' colspan='6'>{esc(why)}</td>"
                    f"<td>{bcell or '—'}</td></tr>"
                )
                continue
            off = offsets.get(phase)
            width = max(0.0, min(100.0, off / scale * 100)) if off is not None else 0.0
            rows.append(
                f"<tr><td>{esc(phase)}</td><td class='num'>{esc(_rel(phases[phase], t_ref))}</td>"
                f"<td class='num'>{esc(fmt_ms(off)) if off is not None else '—'}</td>"
                f"{_floor_cells(durations.get(phase))}"
                f"<td style='width:200px'><div class='bar' style='width:{width:.1f}%'></div></td>"
                f"<td>{bcell or '—'}</td></tr>"
            )
        parts.append(
            "<table><tr><th>phase</th><th>time</th><th>after t0</th><th>duration</th>"
            "<th>protocol floor</th><th>stacks + agent</th><th>offset</th><th>budget</th></tr>"
            f"{''.join(rows)}</table>"
        )
        parts.append(_floors(h, known))
        for note in h.get("notes") or []:
            parts.append(f"<p class='small'>note: {esc(note)}</p>")
    return "\n".join(parts)


def _links(run: RunData) -> str:
    """Link traces and the policy: the signal/rate plot, the decisions, the replay's lateness."""
    from testbed.report import signal_plot

    v = run.verdict or {}
    if not v.get("traces") and not v.get("policy"):
        return ""
    parts = ["<h2>Links and policy</h2>"]
    plot = signal_plot.render(v)
    if plot is not None:
        parts.append(f"<div class='ladder'>{plot}</div>")
    p = v.get("policy")
    if p:
        parts.append(f"<p>policy <code>{esc(p['switch'])}</code> on <code>{esc(p['metric'])}</code>, "
                     f"hysteresis {p['hysteresis_db']:g} dB, dwell {p['dwell_s']:g} s; "
                     f"<b>ping-pong {p['ping_pong']}</b> (returns within {p['ping_pong_window']:g} s); "
                     f"agent events dropped: {esc(p.get('agent_dropped'))}</p>")
        rows = "".join(
            f"<tr><td>{esc(d.get('t', ''))}</td><td>{esc(d['from'])} → {esc(d['to'])}</td>"
            f"<td>{esc(d['reason'])}</td>"
            f"<td>{esc(', '.join(f'{k} {x}' for k, x in d['values'].items()))}</td>"
            f"<td>{esc(d.get('crossing_t', ''))}</td><td>{esc(d.get('after_crossing_s', ''))}</td></tr>"
            for d in p.get("decisions", []))
        if rows:
            parts.append("<table><tr><th>t (s)</th><th>switch</th><th>reason</th><th>metric values</th>"
                         f"<th>trace's crossing (s)</th><th>after it (s)</th></tr>{rows}</table>")
    tr = v.get("traces")
    if tr:
        late = "; ".join(f"{op}: {x['count']} applied, p50 {x['p50_ms']} ms, p99 {x['p99_ms']} ms, "
                         f"max {x['max_ms']} ms" for op, x in (tr.get("lateness") or {}).items())
        parts.append(f"<p class='small'>traces on {esc(', '.join(tr.get('networks', [])))}; lateness "
                     f"(applied minus due): {esc(late or 'nothing applied')}</p>")
    return "\n".join(parts)


def _rules(run: RunData, t_ref: float | None, known: set[str]) -> str:
    parts = ["<h2 id='rules'>Rules</h2>"]
    rules = [r for r in (run.verdict or {}).get("rules") or [] if isinstance(r, dict)]
    if not rules:
        parts.append(_missing("not captured: no verdict" if run.verdict is None else "no rule was checked"))
        return "\n".join(parts)
    rows = []
    for r in rules:
        ev = [e for e in r.get("evidence") or [] if isinstance(e, dict)]
        items = [
            f"<li>{_pcap_link(str(e.get('pcap', '?')), known)} #{esc(e.get('frame', '?'))} "
            f"at {esc(_rel(_num(e.get('time')), t_ref))}: {esc(e.get('what', ''))}</li>"
            for e in ev[:MAX_EVIDENCE]
        ]
        if len(ev) > MAX_EVIDENCE:
            items.append(f"<li>… {len(ev) - MAX_EVIDENCE} more in verdict.json</li>")
        evid = f"<ul class='ev'>{''.join(items)}</ul>" if items else "—"
        rows.append(
            f"<tr><td><code>{esc(r.get('id'))}</code></td><td>{_badge(str(r.get('status')))}</td>"
            f"<td>{esc(r.get('message', ''))}</td><td class='small'>{evid}</td></tr>"
        )
    parts.append(
        "<table><tr><th>rule</th><th>status</th><th>message</th>"
        "<th>evidence (capture #frame)</th></tr>"
        f"{''.join(rows)}</table>"
    )
    return "\n".join(parts)


# rule families of the security and fault scenarios, each its own part of the report
SECURITY_SECTIONS = (
    ("attack.update.", "Forged location updates (§4, §8)",
     "passes when BIND refused the UPDATE and the zone, queried before and after, kept the MN's records"),
    ("attack.asconf.", "Forged binding updates (§5, §8)",
     "passes when the correspondent neither acknowledged the ASCONF nor sent DATA to the attacker"),
    ("attack.stale_dns", "Stale DNS and impersonation (§4)",
     "passes when a correspondent resolving the MN's name reaches no impostor"),
    ("attack.rogue_ra", "Rogue router (§3, §8)",
     "passes when the MN did not bind to the rogue network (untrusted, nothing published)"),
    ("fault.", "Faults",
     "fails when the fault left a mark: a later step or a rule failed, or it still holds"),
    ("scenario.steps", "Steps that failed",
     "is a step that failed after a fault, judged with what was captured"),
)


def _security(run: RunData, t_ref: float | None, known: set[str]) -> str:
    """One part per kind of attack or fault in the run: expectation, outcome, evidence."""
    rules = [r for r in (run.verdict or {}).get("rules") or [] if isinstance(r, dict)]
    parts = []
    for prefix, title, meaning in SECURITY_SECTIONS:
        mine = [r for r in rules if str(r.get("id", "")).startswith(prefix)]
        if not mine:
            continue
        rows = []
        for r in mine:
            want = r.get("expected")
            met = "" if want is None else ("met" if r.get("met") else "<strong class='err'>not met</strong>")
            ev = [e for e in r.get("evidence") or [] if isinstance(e, dict)][:5]
            items = "".join(f"<li>{_pcap_link(str(e.get('pcap', '?')), known)} #{esc(e.get('frame', '?'))} "
                            f"at {esc(_rel(_num(e.get('time')), t_ref))}: {esc(e.get('what', ''))}</li>"
                            for e in ev)
            rows.append(f"<tr><td><code>{esc(r.get('id'))}</code></td><td>{_badge(str(r.get('status')))}</td>"
                        f"<td>{esc(want or '—')} {met}</td><td>{esc(r.get('message', ''))}</td>"
                        f"<td class='small'><ul class='ev'>{items}</ul></td></tr>")
        parts.append(f"<h2 id='{esc(prefix.strip('.'))}'>{esc(title)}</h2><p class='small'>Each rule "
                     f"{esc(meaning)}.</p><table><tr><th>rule</th><th>observed</th><th>expected</th>"
                     f"<th>what happened</th><th>evidence</th></tr>{''.join(rows)}</table>")
    return "\n".join(parts)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _captures(ladder: Ladder) -> str:
    parts = ["<h2 id='captures'>Captures</h2>"]
    if not ladder.captures:
        parts.append(_missing("not captured: no pcaps/ directory or no capture files in it"))
        return "\n".join(parts)
    rows = []
    for c in ladder.captures:
        frames = "unreadable" if c.frames is None else str(c.frames)
        probs = "; ".join(c.problems) or ""
        rows.append(
            f"<tr><td><a href='pcaps/{esc(quote(c.name))}'>{esc(c.name)}</a></td>"
            f"<td class='num'>{c.size}</td><td class='num'>{esc(frames)}</td>"
            f"<td class='{'err' if probs else 'small'}'>{esc(probs)}</td></tr>"
        )
    parts.append(
        "<table><tr><th>capture</th><th>bytes</th><th>frames</th><th>problems</th></tr>"
        f"{''.join(rows)}</table>"
    )
    return "\n".join(parts)


def focus_mobile(v: Mapping[str, Any] | None) -> str | None:
    """With several mobile nodes, the one the ladder and the timeline show: the first whose
    verdict failed, else the first."""
    mobiles = (v or {}).get("mobiles") or {}
    return next((mn for mn, m in mobiles.items() if not m.get("passed")), next(iter(mobiles), None))


def _mobiles(run: RunData, focus: str | None) -> str:
    """One row per mobile node: its verdict, its handovers' times, what failed."""
    mobiles = (run.verdict or {}).get("mobiles") or {}
    if not mobiles:
        return ""
    rows = []
    for mn, m in mobiles.items():
        failed = [str(r.get("id")) for r in m.get("rules", []) if r.get("status") == "fail"]
        hos = m.get("handovers") or []
        cells = []
        for phase in ("configured", "join_acked", "prio_old", "set_primary_acked", "dns_acked"):
            offs = [h["offsets"][phase] for h in hos if phase in (h.get("offsets") or {})]
            cells.append(f"<td class='num'>{esc(fmt_ms(max(offs))) if offs else '—'}</td>")
        mark = " (shown below)" if mn == focus else ""
        badge = _badge("pass" if m.get("passed") else "fail")
        rows.append(f"<tr><td>{esc(mn)}{esc(mark)}</td><td>{badge}</td>"
                    f"<td class='num'>{len(hos)}</td>{''.join(cells)}"
                    f"<td class='err'>{esc(', '.join(failed))}</td></tr>")
    return ("<h2 id='mobiles'>Mobile nodes</h2><p class='small'>Each mobile node judged on its own part "
            "of the captures; the latest of its handovers' phases after t0 (its new link's link_up). "
            "The ladder and the timeline below show one of them.</p>"
            "<table><tr><th>mobile node</th><th>verdict</th><th>handovers</th><th>configured</th>"
            "<th>join acked</th><th>old subflow backup</th><th>SET_PRIMARY acked</th><th>DNS acked</th>"
            f"<th>failed rules</th></tr>{''.join(rows)}</table>")


def _events(run: RunData, t_ref: float | None) -> str:
    parts = ["<h2 id='events'>Agent events</h2>"]
    shown = [e for e in run.events if event_category(e) != CAT_OTHER]
    others = Counter(event_kind(e) for e in run.events if event_category(e) == CAT_OTHER)
    if not shown:
        parts.append(_missing("not captured: no events.jsonl or no agent events in it"))
    else:
        shown.sort(key=lambda e: event_time(e) or 0.0)
        rows = []
        for e in shown[:MAX_EVENTS]:
            t = event_time(e)
            skip = ("kind", "event", "wall", "mono", "ifname", "seq")
            rows.append(
                f"<tr><td class='num'>{esc(_rel(t, t_ref))}</td>"
                f"<td class='small'>{esc(_iso(t))}</td><td>{esc(event_category(e))}</td>"
                f"<td><strong>{esc(event_kind(e))}</strong></td>"
                f"<td>{esc(e.get('ifname') or '')}</td>"
                f"<td class='small'>{esc(_compact(e, skip))}</td></tr>"
            )
        parts.append(
            "<table><tr><th>time</th><th>wall clock (UTC)</th><th>source</th><th>event</th>"
            f"<th>interface</th><th>details</th></tr>{''.join(rows)}</table>"
        )
        if len(shown) > MAX_EVENTS:
            parts.append(f"<p class='small'>{len(shown) - MAX_EVENTS} more events in events.jsonl</p>")
    if others:
        text = ", ".join(f"{n} × {k}" for k, n in sorted(others.items()))
        parts.append(f"<p class='small'>Other records in events.jsonl (not listed): {esc(text)}</p>")
    return "\n".join(parts)


def render_report(
    run_dir: Path,
    roles: dict[str, list[str]],
    title: str,
    *,
    budgets: Mapping[str, float] | None = None,
    mn_role: str = MN,
    verdict: Verdict | None = None,
) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    ``roles`` maps ladder columns (in order, e.g. MN, New AR, CN, DHCP, Location manager) to
    addresses or prefixes; ``budgets`` (phase → seconds) are shown next to the timeline phases.
    ``verdict``: the checker's result for this run; the page is drawn from its facts, so the
    captures are not read again. Without it, verdict.json is read and the captures are
    extracted here (one pass). Raises ``ConfigError`` only for a malformed ``roles`` entry;
    missing inputs are reported in the page.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir, verdict.to_dict() if verdict is not None else None)
    facts = verdict.facts if verdict is not None else None
    focus = focus_mobile(run.verdict)
    if focus is not None:  # several MNs: the ladder and timeline of one, a table of all
        if verdict is not None and focus in verdict.mobiles:
            facts = verdict.mobiles[focus].facts
        run.events = [e for e in run.events if e.get("mn") in (None, focus)]
        if run.verdict is not None:
            run.verdict = {**run.verdict, "handovers": [h for h in run.verdict.get("handovers") or []
                                                        if h.get("mobile") in (None, focus)]}
    if facts is None:
        facts = extract(run.pcaps, skip_unusable=True, keylog=keys_beside(run.pcaps))
    ladder = build_ladder(facts, roles, mn_role=mn_role)
    budgets = dict(budgets or (run.verdict or {}).get("budgets") or {})
    t_ref = ladder.messages[0].time if ladder.messages else None
    notes = _notes(run.events, mn_role) if ladder.messages else []
    if mn_role not in ladder.columns:
        notes = [n for n in notes if n.kind == NOTE_STEP]
    known = {p.name for p in run.pcaps}
    body = "\n".join(
        [
            _summary(run, ladder, title),
            _mobiles(run, focus),
            _ladder(ladder, notes, roles, title, known),
            _timeline(run, t_ref, budgets, known),
            _links(run),
            _security(run, t_ref, known),
            _rules(run, t_ref, known),
            _captures(ladder),
            _events(run, t_ref),
            f"<p class='small'>Generated {esc(_iso(time.time()))} by testbed.report.</p>",
        ]
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    out = run_dir / REPORT_NAME
    out.write_text(page, encoding="utf-8")
    return out
