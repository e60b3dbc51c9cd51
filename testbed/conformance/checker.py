"""``check()``: captures in, ``Verdict`` out. Selects rules, runs the pass, builds the timeline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.conformance.agent_events import left_networks, parse_events
from testbed.conformance.exchange import asconf_exchanges, dns_transactions
from testbed.conformance.extract import extract
from testbed.conformance.rules import (
    GROUPS,
    RULE_IDS,
    RULES,
    Context,
    mn_updates,
    timeline_budgets,
)
from testbed.conformance.timeline import PHASES, build_handovers
from testbed.conformance.verdict import Verdict
from testbed.decode.pcap import UnusableCapture
from testbed.errors import ConfigError

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def find_captures(pcap_dir_or_files: str | Path | Iterable[str | Path]) -> list[Path]:
    """A directory means every ``*.pcap``/``*.pcapng``/``*.cap`` in it (sorted by name)."""
    items = [pcap_dir_or_files] if isinstance(pcap_dir_or_files, str | Path) else list(pcap_dir_or_files)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in CAPTURE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise UnusableCapture(f"{p}: no such file or directory; give a capture dir or files")
    if not out:
        raise UnusableCapture(
            f"no capture files (*.pcap, *.pcapng) in {', '.join(map(str, items))}; "
            "run the scenario with capture enabled"
        )
    return out


def select_rules(rules: str | Sequence[str] | None) -> list[str]:
    """Expand groups (``asconf``...) and ids into rule ids; ``timeline`` selects budget rules."""
    if rules is None:
        return [*RULE_IDS, "timeline"]
    names = [r.strip() for r in (rules.split(",") if isinstance(rules, str) else rules)]
    out: list[str] = []
    for name in filter(None, names):
        if name == "timeline" or name.startswith("timeline."):
            out.append(name)
        elif name in GROUPS:
            out.extend(r for r in RULE_IDS if r.startswith(name + "."))
        elif name in RULE_IDS:
            out.append(name)
        else:
            raise ConfigError("--rules", name, "unknown rule or group", f"use {', '.join(GROUPS + RULE_IDS)}")
    return list(dict.fromkeys(out))


def check(
    pcap_dir_or_files: str | Path | Iterable[str | Path],
    rules: str | Sequence[str] | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
    budgets: Mapping[str, float] | None = None,
    *,
    mn_name: str | None = None,
    dedup_window: float = 0.5,
    lab: Mapping[str, Any] | None = None,
) -> Verdict:
    """Judge captures against the Appendix-A rules (see ``testbed.conformance.rules``).

    ``events``: the mobility agent's events (dicts with ``event``, ``wall``, ``ifname``,
    ``prefix``, ``addresses``); None when not recorded, which leaves t0 unknown. ``budgets``:
    phase → seconds after the handover's t0 (the new link's link_up), checked as
    ``timeline.<phase>`` rules. Raises ``UnusableCapture`` (exit code 2) when nothing can be
    read; malformed packets are counted in ``stats`` instead. ``lab`` describes where the
    captures come from (machine, backend, per-node stack/kernel...); it is written to the
    verdict as given.
    """
    selected = select_rules(rules)
    budgets = dict(budgets or {})
    for phase in budgets:
        if phase not in PHASES:
            raise ConfigError("budgets", phase, "unknown phase", f"use one of {', '.join(PHASES)}")
    paths = find_captures(pcap_dir_or_files)
    left = left_networks(parse_events(events)) if events is not None else None
    facts = extract(paths, window=dedup_window, left=left)
    exchanges, orphans = asconf_exchanges(facts)
    updates = mn_updates(dns_transactions(facts), mn_name)
    handovers = build_handovers(exchanges, updates, events, facts)
    ctx = Context(facts, exchanges, orphans, updates, handovers, mn_name, budgets, events is not None,
                  left_addresses=len(left or {}))
    results = [RULES[r](ctx) for r in selected if r in RULES]
    wanted_budgets = {
        p: b for p, b in budgets.items() if "timeline" in selected or f"timeline.{p}" in selected
    }
    ctx.budgets = wanted_budgets
    results.extend(timeline_budgets(ctx))
    stats = facts.stats()
    stats["handovers"] = len(handovers)
    stats["dns_updates"] = len(updates)
    hos = tuple(h.to_dict(i) for i, h in enumerate(handovers, 1))
    return Verdict(
        tuple(results), stats, hos, budgets, dict(lab) if lab is not None else None, facts=facts
    )
