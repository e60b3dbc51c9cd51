"""``check()``: captures in, ``Verdict`` out. Selects rules, runs the pass, builds the timeline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.conformance.agent_events import left_networks, parse_events
from testbed.conformance.exchange import asconf_exchanges, dns_transactions
from testbed.conformance.extract import extract
from testbed.conformance.facts import Facts
from testbed.conformance.keylog_file import find_keylog, read_keylog
from testbed.conformance.mptcp_rules import MPTCP_GROUP, run_rules
from testbed.conformance.mptcp_timeline import build_mptcp_handovers
from testbed.conformance.quic_rules import QUIC_GROUP
from testbed.conformance.quic_rules import run_rules as run_quic_rules
from testbed.conformance.quic_timeline import build_quic_handovers
from testbed.conformance.rules import (
    ALL_PHASES,
    GROUPS,
    RULE_IDS,
    RULES,
    TRANSPORT_RULES,
    Context,
    mn_updates,
    timeline_budgets,
)
from testbed.conformance.timeline import build_handovers
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


def select_rules(rules: str | Sequence[str] | None, transport: str | None = None) -> list[str]:
    """Expand groups (``asconf``...) and ids into rule ids; ``timeline`` selects budget rules.

    With ``transport`` (sctp, mptcp, tcp, quic: what a scenario's traffic ran), only that transport's
    rules remain: an SCTP run is not judged on MPTCP rules that could only skip."""
    if transport is not None and transport not in TRANSPORT_RULES:
        raise ConfigError("--transport", transport, "unknown transport", f"use {', '.join(TRANSPORT_RULES)}")
    if rules is None:
        return _of_transport([*RULE_IDS, "timeline"], transport)
    names = [r.strip() for r in (rules.split(",") if isinstance(rules, str) else rules)]
    out: list[str] = []
    for name in filter(None, names):
        if name == "timeline" or name.startswith("timeline."):
            out.append(name)
        elif name == "mptcp":
            out.extend(MPTCP_GROUP)
        elif name == "quic":
            out.extend(QUIC_GROUP)
        elif name in GROUPS:
            out.extend(r for r in RULE_IDS if r.startswith(name + "."))
        elif name in RULE_IDS:
            out.append(name)
        else:
            raise ConfigError("--rules", name, "unknown rule or group", f"use {', '.join(GROUPS + RULE_IDS)}")
    return _of_transport(list(dict.fromkeys(out)), transport)


def _of_transport(selected: list[str], transport: str | None) -> list[str]:
    if transport is None:
        return selected
    own = TRANSPORT_RULES[transport]
    return [r for r in selected if r in own or r.startswith("timeline")]


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
    transport: str | None = None,
    keylog: str | Path | None = None,
) -> Verdict:
    """Judge captures against the Appendix-A rules (see ``testbed.conformance.rules``).

    ``events``: the mobility agent's events (dicts with ``event``, ``wall``, ``ifname``,
    ``prefix``, ``addresses``); None when not recorded, which leaves t0 unknown. ``budgets``:
    phase → seconds after the handover's t0 (the new link's link_up), checked as
    ``timeline.<phase>`` rules. Raises ``UnusableCapture`` (exit code 2) when nothing can be
    read; malformed packets are counted in ``stats`` instead. ``lab`` describes where the
    captures come from (machine, backend, per-node stack/kernel...); it is written to the
    verdict as given. ``auth_keys``: endpoint-pair shared keys by key id (RFC 4895), for the
    HMACs ``asconf.auth`` verifies; key id 0 is empty unless given. ``transport`` keeps only
    that transport's rules (see ``select_rules``). ``keylog``: the SSLKEYLOGFILE for QUIC; by
    default ``keylog.txt`` beside the captures or in their parent directory (``keylog_file``).
    """
    selected = select_rules(rules, transport)
    budgets = check_budgets(budgets)
    # addresses of networks the MN left (its agent's lost events): looked for as sources
    left = left_networks(parse_events(events)) if events is not None else None
    captures = find_captures(pcap_dir_or_files)
    facts = extract_with_keys(captures, pcap_dir_or_files, keylog, window=dedup_window, left=left)
    return judge(facts, selected, events, budgets, mn_name=mn_name, lab=lab, auth_keys=auth_keys)


def extract_with_keys(captures: list[Path], given: str | Path | Iterable[str | Path],
                      keylog: str | Path | None, **kw: Any) -> Facts:
    """``extract`` with the run's QUIC keys: ``keylog`` if given (a missing file is a
    ``ConfigError``), else the ``keylog.txt`` found beside the captures (``Facts.quic`` says
    which, or where it looked)."""
    looked: list[Path] = []
    if keylog is not None:
        path: Path | None = Path(keylog)
    else:
        items = [given] if isinstance(given, str | Path) else list(given)
        path, looked = find_keylog(items)
    keys = read_keylog(path, "--keylog" if keylog is not None else "keylog") if path is not None else None
    facts = extract(captures, keylog=keys, **kw)
    q = facts.quic
    q.keylog_looked = tuple(map(str, looked))
    if path is not None and keys is not None:
        q.keylog, q.keylog_lines = str(path), keys.lines
        if not keys.lines:
            q.keylog_problem = (f"no key lines ({keys.bad_lines} line(s) not in SSLKEYLOGFILE format: "
                                "LABEL CLIENT_RANDOM SECRET)")
    return facts


def check_budgets(budgets: Mapping[str, float] | None) -> dict[str, float]:
    out = dict(budgets or {})
    for phase in out:
        if phase not in ALL_PHASES:
            known = ", ".join(ALL_PHASES)
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
    quic_hos = build_quic_handovers(facts, updates, events)
    ctx = Context(facts, exchanges, orphans, updates, handovers, mn_name, budgets, events is not None,
                  dict(auth_keys or {}), mptcp_hos, left_addresses=facts.left_watched,
                  quic_handovers=quic_hos)
    results = [RULES[r](ctx) for r in selected if r in RULES]
    results += run_rules(selected, facts.tcp, mptcp_hos)
    results += run_quic_rules(selected, facts.quic, quic_hos, events is not None)
    results.sort(key=lambda r: RULE_IDS.index(r.id))
    wanted_budgets = {
        p: b for p, b in budgets.items() if "timeline" in selected or f"timeline.{p}" in selected
    }
    ctx.budgets = wanted_budgets
    results.extend(timeline_budgets(ctx))
    stats = facts.stats()
    stats["handovers"] = len(handovers) + len(mptcp_hos) + len(quic_hos)
    stats["dns_updates"] = len(updates)
    hos = tuple(h.to_dict(i) for i, h in enumerate(ctx.all_handovers, 1))
    return Verdict(
        tuple(results), stats, hos, budgets, dict(lab) if lab is not None else None, facts=facts
    )
