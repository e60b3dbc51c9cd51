"""``check()``: captures in, ``Verdict`` out. Selects rules, runs the pass, builds the timeline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.conformance.exchange import asconf_exchanges, dns_transactions
from testbed.conformance.extract import extract
from testbed.conformance.facts import Facts
from testbed.conformance.mptcp_rules import MPTCP_GROUP, run_rules
from testbed.conformance.mptcp_timeline import MPTCP_PHASES, build_mptcp_handovers
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
        elif name == "mptcp":
            out.extend(MPTCP_GROUP)
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
    auth_keys: Mapping[int, bytes] | None = None,
) -> Verdict:
    """Judge captures against the Appendix-A rules (see ``testbed.conformance.rules``).

    ``events``: the mobility agent's events (dicts with ``event``, ``wall``, ``ifname``,
    ``prefix``, ``addresses``); None when not recorded, which leaves t0 unknown. ``budgets``:
    phase → seconds after the handover's t0 (the new link's link_up), checked as
    ``timeline.<phase>`` rules. Raises ``UnusableCapture`` (exit code 2) when nothing can be
    read; malformed packets are counted in ``stats`` instead. ``lab`` describes where the
    captures come from (machine, backend, per-node stack/kernel...); it is written to the
    verdict as given. ``auth_keys``: endpoint-pair shared keys by key id (RFC 4895), for the
    HMACs ``asconf.auth`` verifies; key id 0 is empty unless given.
    """
    selected = select_rules(rules)
    budgets = check_budgets(budgets)
    facts = extract(find_captures(pcap_dir_or_files), window=dedup_window)
    return judge(facts, selected, events, budgets, mn_name=mn_name, lab=lab, auth_keys=auth_keys)


def check_budgets(budgets: Mapping[str, float] | None) -> dict[str, float]:
    out = dict(budgets or {})
    for phase in out:
        if phase not in PHASES and phase not in MPTCP_PHASES:
            known = ", ".join(dict.fromkeys((*PHASES, *MPTCP_PHASES)))
            raise ConfigError("budgets", phase, "unknown phase", f"use one of {known}")
    return out


def judge(facts: Facts, selected: list[str], events: Sequence[Mapping[str, Any]] | None,
          budgets: dict[str, float], *, mn_name: str | None = None,
          lab: Mapping[str, Any] | None = None, auth_keys: Mapping[int, bytes] | None = None) -> Verdict:
    """The selected rules on facts already extracted (all of a capture's, or one MN's)."""
    exchanges, orphans = asconf_exchanges(facts)
    updates = mn_updates(dns_transactions(facts), mn_name)
    handovers = build_handovers(exchanges, updates, events, facts)
    mptcp_hos = build_mptcp_handovers(facts, updates, events)
    ctx = Context(facts, exchanges, orphans, updates, handovers, mn_name, budgets, events is not None,
                  dict(auth_keys or {}), mptcp_hos)
    results = [RULES[r](ctx) for r in selected if r in RULES]
    results += run_rules(selected, facts.tcp, mptcp_hos)
    results.sort(key=lambda r: RULE_IDS.index(r.id))
    wanted_budgets = {
        p: b for p, b in budgets.items() if "timeline" in selected or f"timeline.{p}" in selected
    }
    ctx.budgets = wanted_budgets
    results.extend(timeline_budgets(ctx))
    stats = facts.stats()
    stats["handovers"] = len(handovers) + len(mptcp_hos)
    stats["dns_updates"] = len(updates)
    hos = tuple(h.to_dict(i) for i, h in enumerate(ctx.all_handovers, 1))
    return Verdict(
        tuple(results), stats, hos, budgets, dict(lab) if lab is not None else None, facts=facts
    )
