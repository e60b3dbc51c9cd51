"""Many mobile nodes in one capture: a verdict per MN, and a summary.

The captures are read once; each MN is then judged on the part of the facts that involve its
own addresses (those its agent reported: configured, detected, lost), with its own DNS name for
the DNS rules and its own events for the timeline. Router Advertisements stay in every MN's
part (they are the link's, not an MN's); a Router Solicitation has a link-local source no
event names, so IPv6 handovers of a many-MN run have no RS → RA floor.

The summary has one row per rule: the status every MN had, else ``fail`` when any MN failed,
else ``pass``; its message counts the MNs per status and names the failing ones. The verdict
passes when every summary rule is as expected and every MN's own verdict passed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from testbed.conformance.checker import check_budgets, extract_with_keys, find_captures, judge, select_rules
from testbed.conformance.facts import Facts
from testbed.conformance.quic_facts import QuicFacts
from testbed.conformance.tcp_facts import TcpFacts
from testbed.conformance.verdict import Evidence, Expected, RuleResult, Verdict
from testbed.decode.nd import RouterAdvert

ADDRESS_EVENTS = ("configured", "detected", "lost")


@dataclass(frozen=True)
class MobileScope:
    """What tells one MN's part of a capture: its DNS name and its agent's events."""

    dns_name: str
    events: Sequence[Mapping[str, Any]] = ()
    addresses: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_events(cls, dns_name: str, events: Sequence[Mapping[str, Any]]) -> MobileScope:
        addrs = {str(a).split("/")[0] for e in events if e.get("event") in ADDRESS_EVENTS
                 for a in e.get("addresses") or ()}
        return cls(dns_name, tuple(events), frozenset(addrs))


def facts_for(facts: Facts, addresses: frozenset[str]) -> Facts:
    """The facts that involve ``addresses`` (a shallow copy: the decoded records are shared)."""
    def mine(*addrs: str) -> bool:
        return any(a in addresses for a in addrs)

    xids = {s.msg.xid for s in facts.dhcp if mine(s.msg.yiaddr, s.msg.ciaddr, s.msg.requested or "")}
    out = replace(
        facts,
        asconfs=[a for a in facts.asconfs if mine(a.src, a.dst)],
        acks=[a for a in facts.acks if mine(a.src, a.dst)],
        dns=[d for d in facts.dns if mine(d.client[0])],
        nd=[n for n in facts.nd if isinstance(n.msg, RouterAdvert) or mine(n.src)],
        dhcp=[d for d in facts.dhcp if d.msg.xid in xids],
        flows={k: f for k, f in facts.flows.items() if mine(f.src, f.dst)},
        tcp=_tcp_for(facts.tcp, mine),
        quic=_quic_for(facts.quic, mine),
    )
    return out


def _quic_for(q: QuicFacts, mine) -> QuicFacts:
    """The QUIC connections whose client sent from one of the MN's addresses."""
    return replace(q, conns=[c for c in q.conns if any(mine(p.client[0]) for p in c.paths)
                             or mine(c.client[0], c.server[0])])


def _tcp_for(t: TcpFacts, mine) -> TcpFacts:
    conns = [c for c in t.mptcp if any(mine(s.client[0], s.server[0]) for s in c.subflows)]
    keep = {id(c) for c in conns}
    subflows = {k: s for k, s in t.subflows.items()
                if (s.conn is not None and id(s.conn) in keep) or mine(s.client[0], s.server[0])}
    return TcpFacts(
        mptcp=conns, subflows=subflows,
        signals=[s for s in t.signals
                 if (s.conn is not None and id(s.conn) in keep) or mine(s.src[0], s.dst[0])],
        plain={k: c for k, c in t.plain.items() if mine(c.client[0], c.server[0])},
        packets=t.packets, mptcp_packets=t.mptcp_packets)


def summarise(verdicts: Mapping[str, Verdict],
              expectations: Mapping[str, Expected]) -> tuple[RuleResult, ...]:
    """One summary rule per rule id the MNs were judged on (see the module docstring)."""
    ids = list(dict.fromkeys(r.id for v in verdicts.values() for r in v.rules))
    out = []
    for rid in ids:
        per = {mn: v.rule(rid) for mn, v in verdicts.items() if any(r.id == rid for r in v.rules)}
        statuses = Counter(r.status for r in per.values())
        status = next(iter(statuses)) if len(statuses) == 1 else "fail" if statuses["fail"] else "pass"
        failing = [mn for mn, r in per.items() if r.status == "fail"]
        msg = f"{len(per)} mobile node(s): " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        if failing:
            msg += f"; failing: {', '.join(failing[:10])}" + (" …" if len(failing) > 10 else "")
        evidence = [Evidence(e.pcap, e.frame, e.time, f"{mn}: {e.what}")
                    for mn in failing for e in per[mn].evidence[:1]]
        out.append(RuleResult(rid, status, msg, tuple(evidence), expectations.get(rid)))
    return tuple(out)


def check_mobiles(pcap_dir_or_files: str | Path | Iterable[str | Path],
                  mobiles: Mapping[str, MobileScope], rules: str | Sequence[str] | None = None,
                  budgets: Mapping[str, float] | None = None, *,
                  expectations: Mapping[str, Expected] | None = None, dedup_window: float = 0.5,
                  lab: Mapping[str, Any] | None = None, source: str = "expect",
                  auth_keys: Mapping[int, bytes] | None = None, transport: str | None = None,
                  keylog: str | Path | None = None) -> Verdict:
    """Judge each MN of ``mobiles`` on its part of the captures; the summary on top. Each MN
    meets the expectations of the rules it was judged on; one about a rule no MN was judged
    on (what the run adds: an attack, a fault) is the summary's alone."""
    selected = select_rules(rules, transport)
    budgets = check_budgets(budgets)
    facts = extract_with_keys(find_captures(pcap_dir_or_files), pcap_dir_or_files, keylog,
                              window=dedup_window)
    exp = dict(expectations or {})
    per: dict[str, Verdict] = {}
    for mn, scope in mobiles.items():
        v = judge(facts_for(facts, scope.addresses), selected, scope.events, budgets, mn_name=scope.dns_name,
                  auth_keys=auth_keys)
        mine = {rid: want for rid, want in exp.items() if any(r.id == rid for r in v.rules)}
        per[mn] = v.expecting(mine, source) if mine else v
    hos = tuple({**h, "mobile": mn} for mn, v in per.items() for h in v.handovers)
    stats = facts.stats()
    stats["handovers"] = len(hos)
    stats["dns_updates"] = sum(v.stats.get("dns_updates", 0) for v in per.values())
    return Verdict(summarise(per, exp), stats, hos, budgets, dict(lab) if lab is not None else None,
                   facts=facts, expectations=exp, mobiles=per)
