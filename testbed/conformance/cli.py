"""``testbed check DIR``: run the conformance checker and print a summary table.

Exit codes: 0 every selected rule passed (or was skipped), 1 a rule failed, 2 unusable input
(no capture, unreadable file, bad option).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from testbed.conformance.checker import check
from testbed.conformance.verdict import Verdict
from testbed.errors import ConfigError, TestbedError

_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def build_parser(prog: str = "testbed check") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Judge captures against Appendix A.")
    p.add_argument("captures", nargs="+", help="capture directory or pcap/pcapng files")
    p.add_argument("--rules", help="comma-separated groups or rule ids (default: all)")
    p.add_argument("--transport", choices=("sctp", "mptcp", "tcp", "quic"),
                   help="judge only this transport's rules (default: every transport's; those "
                   "with nothing in the capture skip)")
    p.add_argument("--out", type=Path, help="write verdict.json here")
    p.add_argument("--mn-name", help="the MN's DNS name, e.g. mn.mobile.test")
    p.add_argument("--events", type=Path, help="agent events: JSON list or JSON lines")
    p.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="PHASE=SECONDS",
        help="phase budget after the handover's t0 (repeatable), e.g. dns_acked=0.5",
    )
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="RULE=pass|fail",
        help="the outcome a rule should have (repeatable), e.g. order.trash=fail: the verdict "
        "passes when every expectation is met",
    )
    p.add_argument(
        "--auth-key",
        action="append",
        default=[],
        metavar="[ID:]HEX",
        help="an SCTP endpoint-pair shared key (RFC 4895) the ends were configured with, in hex, "
        "for key id ID (default 0); repeatable. Without one, key 0 is the empty key",
    )
    p.add_argument("--keylog", type=Path, metavar="FILE",
                   help="TLS secrets for QUIC in SSLKEYLOGFILE format (default: keylog.txt beside the "
                   "captures or in their parent directory)")
    p.add_argument("--dedup-window", type=float, default=0.5, help="seconds (default 0.5)")
    return p


def parse_auth_keys(items: Sequence[str], source: str = "--auth-key") -> dict[int, bytes]:
    """``[ID:]HEX`` items as key id → key bytes."""
    out: dict[int, bytes] = {}
    for item in items:
        kid, sep, hexkey = item.rpartition(":")
        try:
            key_id = int(kid) if sep else 0
            if not 0 <= key_id <= 0xFFFF:
                raise ValueError(kid)
            out[key_id] = bytes.fromhex(hexkey)
        except ValueError as e:
            raise ConfigError(source, item, "expected [ID:]HEX (a key id 0-65535, the key in hex)",
                              "e.g. 0:6c61622d736563726574") from e
    return out


def _load_events(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(str(path), "events", f"cannot read ({e.strerror})") from e
    try:
        data = json.loads(text)
        return list(data) if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ConfigError(str(path), "events", f"not JSON or JSON lines ({e.msg})") from e


def _budgets(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        phase, sep, value = item.partition("=")
        try:
            out[phase.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError("--budget", item, "expected PHASE=SECONDS", "e.g. dns_acked=0.5")
    return out


def _expectations(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        rule, _, want = item.partition("=")
        if want not in ("pass", "fail"):
            raise ConfigError("--expect", item, "expected RULE=pass or RULE=fail", "e.g. order.trash=fail")
        out[rule.strip()] = want
    return out


def _duration(phase: str, d: dict[str, Any]) -> str:
    """``add_ip_acked 22.0 ms (add_ip 2.0)``: the phase's duration, then its floor, in ms."""
    text = f"{phase} {d['seconds'] * 1e3:.1f} ms"
    if d.get("floor_seconds") is not None:
        text += f" ({d['floor']} {d['floor_seconds'] * 1e3:.1f})"
    return text


def render(verdict: Verdict, console: Console) -> None:
    """Print the rule table, the handover timelines and the capture statistics."""
    t = Table(title="Appendix A conformance", show_lines=False)
    t.add_column("rule")
    t.add_column("status")
    if verdict.expectations:
        t.add_column("expected")
    t.add_column("message", overflow="fold")
    for r in verdict.rules:
        msg = r.message
        if r.evidence:
            e = r.evidence[0]
            msg += f"\n  e.g. {e.pcap}#{e.frame}: {e.what}"
        cells = [r.id, f"[{_STYLE[r.status]}]{r.status}[/]"]
        if verdict.expectations:
            cells.append("" if r.expected is None else
                         f"{r.expected} ({'[green]met[/]' if r.met else '[bold red]not met[/]'})")
        t.add_row(*cells, msg)
    console.print(t)
    if verdict.handovers:
        h = Table(title="Handovers (seconds after t0, the new link's link_up)")
        h.add_column("#")
        h.add_column("new address")
        h.add_column("phases", overflow="fold")
        h.add_column("durations (protocol floor)", overflow="fold")
        for ho in verdict.handovers:
            if ho.get("t0") is None:
                phases = "t0 unknown"
            else:
                phases = "  ".join(f"{k} {v:+.3f}" for k, v in ho["offsets"].items())
            if ho.get("notes"):
                phases += "\n" + "; ".join(ho["notes"])
            durations = "  ".join(_duration(k, d) for k, d in (ho.get("durations") or {}).items())
            index = f"{ho['mobile']} {ho['index']}" if ho.get("mobile") else str(ho["index"])
            others = [a for a in ho.get("addresses") or () if a != ho["address"]]
            h.add_row(index, "\n".join([ho["address"], *others]), phases, durations)
        console.print(h)
    if verdict.mobiles:
        m = Table(title="Mobile nodes (each judged on its own part of the captures)")
        m.add_column("mobile node")
        m.add_column("verdict")
        m.add_column("failed rules", overflow="fold")
        for mn, v in verdict.mobiles.items():
            failed = ", ".join(r.id for r in v.rules if not r.met)
            m.add_row(mn, "[green]PASS[/]" if v.passed else "[bold red]FAIL[/]", failed)
        console.print(m)
    s = verdict.stats
    console.print(
        f"packets {s.get('packets', 0)}, duplicates removed {s.get('duplicates_removed', 0)},"
        f" SCTP {s.get('sctp_packets', 0)}, DATA chunks {s.get('data_chunks', 0)},"
        f" DNS {s.get('dns_messages', 0)}, unknown {s.get('unknown', 0)},"
        f" malformed {s.get('malformed', 0)}"
    )
    for ex in s.get("malformed_examples", [])[:5]:
        console.print(f"  malformed {ex['pcap']}#{ex['frame']}: {ex['reason']}")
    if s.get("quic_packets"):
        other = sum(s.get("quic_other_versions", {}).values())
        console.print(
            f"QUIC packets {s['quic_packets']}, decrypted {s.get('quic_decrypted', 0)},"
            f" failed {s.get('quic_failed', 0)}, without keys {s.get('quic_no_keys', 0)},"
            f" other versions (not judged) {other}; keylog {s.get('quic_keylog') or 'none'}"
        )
        for ex in s.get("quic_failure_examples", [])[:5]:
            console.print(f"  QUIC not decrypted {ex['pcap']}#{ex['frame']}: {ex['reason']}")
    for prob in s.get("capture_problems", []):
        console.print(f"  capture problem: {prob}")
    verdict_txt = "[green]PASS[/]" if verdict.passed else "[bold red]FAIL[/]"
    console.print(f"verdict: {verdict_txt}")


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """Entry point for ``testbed check``; returns the exit code."""
    console = console or Console()
    args = build_parser().parse_args(argv)
    try:
        events = _load_events(args.events) if args.events else None
        verdict = check(
            args.captures,
            rules=args.rules,
            events=events,
            budgets=_budgets(args.budget),
            mn_name=args.mn_name,
            dedup_window=args.dedup_window,
            auth_keys=parse_auth_keys(args.auth_key),
            transport=args.transport,
            keylog=args.keylog,
        )
        expectations = _expectations(args.expect)
        if expectations:
            verdict = verdict.expecting(expectations, "--rules")
    except TestbedError as e:
        console.print(f"[bold red]error:[/] {e}")
        return 2
    render(verdict, console)
    if args.out:
        verdict.write(args.out)
    return 0 if verdict.passed else 1
