"""The mobility agent in the lab (§3, §4): events for a real move, DNS following the MN."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.lab import Lab
from tests.support import dns

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def dig(lab: Lab, rdtype: str) -> list[str]:
    return dns.dig(lab, "cn", "mn.mobile.test", rdtype)


def wait_dns(lab: Lab, a: list[str], aaaa: list[str], timeout: float = 10.0) -> None:
    """Until cn resolves mn.mobile.test to exactly these addresses (TTL is the zone's 5 s, but
    the lab's named is authoritative: a query sees an update as soon as it is applied)."""
    deadline = time.monotonic() + timeout
    while (dig(lab, "A"), dig(lab, "AAAA")) != (sorted(a), sorted(aaaa)):
        assert time.monotonic() < deadline, (dig(lab, "A"), dig(lab, "AAAA"), a, aaaa)
        time.sleep(0.05)


def test_move_gives_ordered_events_and_a_sig0_update(testbed_lab):
    lab = testbed_lab
    mn_new, _ = lab.plan.access_iface("ar2")
    mn_old, _ = lab.plan.access_iface("ar1")

    async def run() -> list:
        client = lab.mobile.agent_client()
        async with client.subscribe() as sub:  # live events from now on
            lab.move("ar2")
            want = {("configured", "198.51.100.0/24"), ("configured", "2001:db8:a2::/64"),
                    ("lost", "192.0.2.0/24"), ("lost", "2001:db8:a1::/64")}
            got: list = []
            deadline = time.monotonic() + 15
            while want - {(e.kind, e.prefix) for e in got}:
                e = await sub.next(timeout=max(0.1, deadline - time.monotonic()))
                assert e is not None, "agent closed the stream"
                got.append(e)
            return got

    events = asyncio.run(run())
    new = [e for e in events if e.ifname == mn_new.ifname]
    kinds = [e.kind for e in new]
    assert kinds[0] == "link_up", kinds
    for prefix in ("198.51.100.0/24", "2001:db8:a2::/64"):
        det = next(i for i, e in enumerate(new) if e.kind == "detected" and e.prefix == prefix)
        conf = next(i for i, e in enumerate(new) if e.kind == "configured" and e.prefix == prefix)
        assert 0 < det < conf, kinds
        assert new[0].mono <= new[det].mono <= new[conf].mono
    lost = [e for e in events if e.kind == "lost"]
    assert {e.ifname for e in lost} == {mn_old.ifname}
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    st = lab.access_state("ar2")
    wait_dns(lab, st.ipv4, st.ipv6)  # the old addresses are gone from DNS too
    log = [json.loads(x) for x in (lab.wiring.agent_dir / "location.jsonl").read_text().splitlines()]
    last = log[-1]
    assert last["rcode"] == "NOERROR" and last["addresses"] == {"a": st.ipv4, "aaaa": st.ipv6}
    lab.move("ar1")
    st = lab.access_state("ar1")
    wait_dns(lab, st.ipv4, st.ipv6)


def test_pollable_state_and_metric(testbed_lab):
    lab = testbed_lab
    cp = subprocess.run([sys.executable, "-m", "testbed", "--lab", lab.state.lab, "mobility",
                         "set-metric", "mn", "mn-ar1", "signal", "-61"], capture_output=True,
                        text=True, cwd=ROOT)
    assert cp.returncode == 0, cp.stderr
    cp = subprocess.run([sys.executable, "-m", "testbed", "--lab", lab.state.lab, "mobility",
                         "state", "mn"], capture_output=True, text=True, cwd=ROOT)
    state = json.loads(cp.stdout)
    ar1 = state["interfaces"]["mn-ar1"]
    assert ar1["link"] == "up" and ar1["metrics"]["signal"] == -61
    assert {n["prefix"] for n in ar1["networks"] if n.get("configured")} == {
        "192.0.2.0/24", "2001:db8:a1::/64"}
    cp = subprocess.run([sys.executable, "-m", "testbed", "--lab", lab.state.lab, "mobility",
                         "events", "mn"], capture_output=True, text=True, cwd=ROOT)
    events = [json.loads(x) for x in cp.stdout.splitlines()]
    assert events[0]["kind"] == "link_up" and events[0]["ifname"] == "mn-ar1"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # gap-free
    assert any(e["kind"] == "metric" and e["metrics"].get("signal") == -61 for e in events)


def test_departure_withdraws_the_records(testbed_fresh_lab_name):
    lab = Lab.up(None, testbed_fresh_lab_name)
    try:
        st = lab.access_state("ar1")
        wait_dns(lab, st.ipv4, st.ipv6)
        results = lab.mobile.depart()
        assert [r["op"] for r in results] == ["withdraw"] and results[0]["rcode"] == "NOERROR"
        assert dig(lab, "A") == [] and dig(lab, "AAAA") == []
    finally:
        lab.down()
