"""One transport's run as a row of the comparison (pure: a run directory's records in, a dict
out): its verdict, the handover phases with their floors, the messages lost and duplicated,
and the longest stall of the stream across each move.

The stream is the numbered messages every traffic app carries, as the correspondent recorded
their arrival. A stall across a move is the longest time between two consecutive arrivals
whose interval overlaps the move (from its start to ``SETTLE`` s after it ended); a stream
that never resumed stalls from its last arrival to the traffic's stop, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.interop.matrix import classify

SETTLE = 2.0  # seconds after a move ends that still count as across it


def stream_of(transport: str, traffic: Mapping[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """(messages sent, the correspondent's record of the stream) from traffic.json."""
    if transport == "sctp":
        return (traffic.get("client") or {}).get("sent"), traffic.get("server") or {}
    conns = (traffic.get("server") or {}).get("connections") or [{}]
    if transport == "quic":
        return (traffic.get("client") or {}).get("sent"), conns[0]
    clients = traffic.get("clients") or {}
    sent = next(iter(clients.values()), {}) or {}
    return sent.get("sent"), conns[0]


def messages(sent: int | None, server: Mapping[str, Any]) -> dict[str, Any]:
    received = int(server.get("received") or 0)
    dups = len(server.get("duplicates") or [])
    unique = received - dups
    lost = max(int(server.get("missing") or 0), (sent - unique) if sent is not None else 0)
    return {"sent": sent, "received": unique, "lost": lost, "duplicated": dups}


def moves(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each move step: where to, its start and end (wall clock)."""
    out: list[dict[str, Any]] = []
    for e in events:
        if e.get("event") != "step":
            continue
        if e.get("step") == "move":
            out.append({"to": e.get("to"), "mode": e.get("mode"), "start": e["wall"], "end": None})
        elif e.get("step") == "moved" and out and out[-1]["end"] is None:
            out[-1]["end"] = e["wall"]
    return [m for m in out if m["end"] is not None]


def stalls(arrivals: Sequence[float], moved: Sequence[Mapping[str, Any]], stop: float | None,
           started: float | None = None) -> list[dict[str, Any]]:
    """The longest stall across each move (moves before the stream began are left out)."""
    times = sorted(arrivals)
    out = []
    for i, m in enumerate(moved, 1):
        lo, hi = m["start"], m["end"] + SETTLE
        if started is not None and m["end"] <= started:
            continue  # e.g. the return to the first network before the traffic started
        best: dict[str, Any] = {"move": i, "to": m["to"], "mode": m["mode"], "longest_s": 0.0,
                                "from": None, "until": None, "resumed": True}
        for a, b in zip(times, times[1:], strict=False):
            if b >= lo and a <= hi and b - a > best["longest_s"]:
                best.update(longest_s=round(b - a, 6), **{"from": a, "until": b})
        last = times[-1] if times else None
        if stop is not None and (last is None or last < m["end"]):
            since = last if last is not None else m["start"]
            best.update(longest_s=round(stop - since, 6), **{"from": since, "until": stop}, resumed=False)
        out.append(best)
    return out


def summarise(transport: str, run_dir: Path, nodes: Sequence[str]) -> dict[str, Any]:
    """The row of one transport's run directory (verdict.json, traffic.json, events.jsonl);
    ``nodes``: the endpoints, whose kernel and stack are recorded."""
    verdict = json.loads((run_dir / "verdict.json").read_text())
    traffic_file = run_dir / "traffic.json"
    traffic = json.loads(traffic_file.read_text()) if traffic_file.exists() else {}
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    status, failed, unmet = classify(verdict)
    sent, server = stream_of(transport, traffic)
    arrivals = [row[1] for row in server.get("messages") or []]
    steps = [e for e in events if e.get("event") == "step"]
    traffic_steps = [e for e in steps if e.get("step") == "traffic"]
    started = next((e["wall"] for e in traffic_steps if e.get("action") == "start"), None)
    stop = next((e["wall"] for e in traffic_steps if e.get("action") == "stop"), None)
    lab = verdict.get("lab") or {}
    return {
        "transport": transport,
        "status": status,
        "failed_rules": failed,
        "unmet_rules": unmet,
        "handovers": [{k: h.get(k) for k in ("index", "transport", "address", "offsets", "durations")}
                      for h in verdict.get("handovers") or []],
        "messages": messages(sent, server),
        "stalls": stalls(arrivals, moves(events), stop, started),
        "served": {n: lab.get("nodes", {}).get(n) for n in nodes if n in lab.get("nodes", {})},
        "quic": lab.get("quic"),
        "report": "report.html" if (run_dir / "report.html").exists() else None,
    }
