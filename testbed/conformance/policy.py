"""The policy's decisions in a run, judged against the traces that drove them.

Input: the binding process's ``primary`` records (each with the ``decision`` the sequencer
made: when, from and to which network, the metric values), the replay's start on the wall
clock and each network's noise-free trace. Output: verdict.json's ``policy`` block and the
rules ``policy.ping_pong`` (no return to the network just left within ``ping_pong_window``)
and ``policy.timely`` (each metric decision came after the trace's crossing — the first time
the new network's noise-free signal beat the current one's by more than the hysteresis — and
within the dwell + ``TIMELY_SLACK_S`` of it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from testbed.conformance.verdict import Evidence, RuleResult
from testbed.model.topology import PolicySettings
from testbed.model.trace import NetworkTrace

PING_PONG_WINDOW_S = 10.0  # a return within this is a ping-pong, whatever the dwell
TIMELY_SLACK_S = 0.5  # metric events, the agent and the binding process's own time


def crossing(frm: NetworkTrace, to: NetworkTrace, margin: float, since: float) -> float | None:
    """The first time at or after ``since`` (seconds of the trace) when ``to``'s signal beats
    ``frm``'s by more than ``margin``; None when it never does."""
    times = sorted({since, *(p.t for tr in (frm, to) for p in tr.signal if p.t >= since)})
    for t in times:
        a, b = frm.signal_at(t), to.signal_at(t)
        if a is not None and b is not None and b - a > margin:
            return t
    return None


def decisions(records: Sequence[Mapping[str, Any]], network_of: Mapping[str, str],
              start_wall: float | None, traces: Mapping[str, NetworkTrace],
              policy: PolicySettings) -> list[dict[str, Any]]:
    """Every switch of the primary from one network to another, in time order."""
    out: list[dict[str, Any]] = []
    prev_t = 0.0
    for r in sorted(records, key=lambda r: r.get("wall", 0)):
        d = r.get("decision")
        if r.get("op") != "primary" or not d or not d.get("from"):
            continue
        shift = r["wall"] - r["mono"]  # the record's wall minus monotonic clock
        wall = d["at"] + shift
        frm, to = network_of.get(d["from"]["ifname"], d["from"]["ifname"]), network_of.get(
            d["to"]["ifname"], d["to"]["ifname"])
        entry: dict[str, Any] = {
            "time": round(wall, 6), "from": frm, "to": to, "reason": d["reason"],
            "metric": d.get("metric"), "leading_since": round(d["since"] + shift, 6),
            "values": {network_of.get(i, i): v.get(d.get("metric", ""))
                       for i, v in d.get("metrics", {}).items()}}
        if start_wall is not None:
            t = wall - start_wall
            entry["t"] = round(t, 3)
            if d["reason"] == "metric" and frm in traces and to in traces:
                c = crossing(traces[frm], traces[to], policy.hysteresis_db, prev_t)
                entry["crossing_t"] = c
                entry["after_crossing_s"] = None if c is None else round(t - c, 3)
            prev_t = t
        out.append(entry)
    return out


FORCED = ("lost", "first")  # switches the policy did not choose: the network was gone, or none yet


def ping_pongs(decs: Sequence[Mapping[str, Any]],
               window: float = PING_PONG_WINDOW_S) -> list[tuple[int, int]]:
    """Pairs of the policy's own decisions (indices into ``decs``) where the second returned to
    the network the first left, within ``window`` seconds. A switch forced by a lost network
    (a scripted move away) is no choice, so neither end of a ping-pong."""
    chosen = [i for i, d in enumerate(decs) if d["reason"] not in FORCED]
    return [(i, j) for i, j in zip(chosen, chosen[1:], strict=False)
            if decs[j]["to"] == decs[i]["from"] and decs[j]["from"] == decs[i]["to"]
            and decs[j]["time"] - decs[i]["time"] <= window]


def block(decs: list[dict[str, Any]], policy: PolicySettings, agent_dropped: int | None,
          window: float = PING_PONG_WINDOW_S) -> dict[str, Any]:
    return {"switch": policy.switch, "metric": policy.metric, "hysteresis_db": policy.hysteresis_db,
            "dwell_s": policy.dwell_s, "keep_old": policy.keep_old, "decisions": decs,
            "ping_pong": len(ping_pongs(decs, window)), "ping_pong_window": window,
            "agent_dropped": agent_dropped}


def rules(decs: list[dict[str, Any]], policy: PolicySettings,
          window: float = PING_PONG_WINDOW_S) -> list[RuleResult]:
    if policy.switch != "metric":
        return []
    out = []
    pp = ping_pongs(decs, window)
    if pp:
        ev = tuple(Evidence("events.jsonl", 0, decs[j]["time"], f"back to {decs[j]['to']} "
                            f"{decs[j]['time'] - decs[i]['time']:.2f} s after leaving it") for i, j in pp)
        out.append(RuleResult("policy.ping_pong", "fail", f"{len(pp)} return(s) to the network just "
                              f"left within {window:g} s, in {len(decs)} decisions", ev))
    else:
        out.append(RuleResult("policy.ping_pong", "pass", f"{len(decs)} decision(s), no return within "
                              f"{window:g} s"))
    metric = [d for d in decs if d["reason"] == "metric"]
    if not (policy.hysteresis_db or policy.dwell_s):
        out.append(RuleResult("policy.timely", "skip", "no hysteresis or dwell to judge"))
    elif not metric:
        out.append(RuleResult("policy.timely", "skip", "no decision on the metric"))
    else:
        limit = policy.dwell_s + TIMELY_SLACK_S
        bad = [d for d in metric if d.get("after_crossing_s") is None
               or not 0 <= d["after_crossing_s"] <= limit]
        if bad:
            ev = tuple(Evidence("events.jsonl", 0, d["time"], f"{d['from']} -> {d['to']} at "
                                f"t={d.get('t')} s, crossing {d.get('crossing_t')}") for d in bad)
            out.append(RuleResult("policy.timely", "fail", f"{len(bad)} of {len(metric)} metric "
                                  f"decision(s) not within {limit:g} s after the trace's crossing", ev))
        else:
            worst = max(d["after_crossing_s"] for d in metric)
            out.append(RuleResult("policy.timely", "pass", f"{len(metric)} metric decision(s), each "
                                  f"within {limit:g} s after the trace's crossing (latest {worst:.3f} s)"))
    return out


def agent_rule(dropped: int | None) -> RuleResult:
    if dropped is None:
        return RuleResult("agent.queue", "skip", "the agent's state was not read")
    if dropped:
        return RuleResult("agent.queue", "fail", f"the mobility agent dropped {dropped} event(s) from a "
                          "full subscriber queue")
    return RuleResult("agent.queue", "pass", "the mobility agent dropped no event")
