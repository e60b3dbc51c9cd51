"""The security and fault scenarios on namespace labs (§3, §4, §8): each runs with `testbed run`'s
own code on a lab it brings up, ends in its expected verdict, and the lab then goes down
leaving nothing. Ctrl-C during a run stops it within a couple of seconds.

Each scenario gets a fresh lab (a namespace lab is up in ~2 s): an attack or a fault leaves
its lab changed (a killed daemon, a rogue address, an impostor), so labs are not shared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.lab import Lab
from testbed.pytest_plugin import lab_name, require_lab_prerequisites
from testbed.scenario import model, runner
from testbed.state import LabState
from tests.support.hostcheck import leftovers

pytestmark = [pytest.mark.integration, pytest.mark.long]
ROOT = Path(__file__).resolve().parents[2]

# scenario -> rule id -> the status it must show (its expectations, and a few more)
SCENARIOS = {
    "forged-update": {"attack.update.unsigned": "pass", "attack.update.own_key": "pass",
                      "attack.update.other_name": "pass", "attack.update.replay.in_window": "fail",
                      "attack.update.replay.expired": "pass"},
    "stale-dns": {"attack.stale_dns.no_notice": "fail"},
    "stale-dns-depart": {"attack.stale_dns.depart": "pass"},
    "stale-dns-cooperating": {"attack.stale_dns.cooperating": "pass"},
    "rogue-ra": {"attack.rogue_ra": "fail"},
    "rogue-ra-trust": {"attack.rogue_ra": "pass"},
    "fault-named": {"fault.kill.named": "fail", "dns.answered": "fail"},
    "fault-dhcpd": {"fault.kill.dhcpd.ar2": "fail", "scenario.steps": "fail"},
    "fault-radvd": {"fault.kill.radvd.ar2": "fail", "scenario.steps": "fail"},
    "fault-dhcpcd": {"fault.kill.dhcpcd": "fail", "scenario.steps": "fail"},
    "fault-agent": {"fault.kill.agent": "fail"},
    "fault-link-flap": {"fault.flap.ar1": "pass"},
    "fault-ar-vanish": {"fault.vanish.ar1": "fail"},
}
_n = iter(range(1000))
RUNS: dict[str, Path] = {}  # scenario -> its run directory, for the tests that look closer


@pytest.fixture(scope="module", autouse=True)
def prerequisites() -> None:
    require_lab_prerequisites()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_ends_in_its_expected_verdict_and_leaves_nothing(name: str, tmp_path: Path) -> None:
    lab = lab_name(f"x{next(_n)}")
    sc = model.load(name)
    t0 = time.monotonic()
    try:
        result = runner.run(sc, tmp_path / name, lab)
    finally:
        if LabState.exists(lab):
            Lab.open(lab).down()
    took = time.monotonic() - t0
    RUNS[name] = result.out
    v = result.verdict
    got = {rid: v.rule(rid).status for rid in SCENARIOS[name]}
    assert got == SCENARIOS[name], [(r.id, r.status, r.message) for r in v.rules if r.id in got]
    assert v.passed, [(r.id, r.status, r.expected, r.message) for r in v.rules if not r.met]
    data = json.loads((result.out / "verdict.json").read_text())
    assert data["passed"] and set(data["expectations"]) == set(sc.expect)
    for rid in sc.expect:  # every attack and fault has evidence to show
        assert next(r for r in data["rules"] if r["id"] == rid)["evidence"], rid
    assert took < 90, f"{name} took {took:.0f} s"
    assert leftovers(lab) == {k: [] for k in leftovers(lab)}


def test_forged_update_replay_window_is_the_signature_window(tmp_path: Path) -> None:
    """The finding in numbers: the replay accepted was inside the MN's signature validity, the
    one refused outside it."""
    out = RUNS.get("forged-update")
    if out is None:  # run alone (-k): the scenario first
        test_scenario_ends_in_its_expected_verdict_and_leaves_nothing("forged-update", tmp_path)
        out = RUNS["forged-update"]
    rows = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    replays = {r["rule"]: r for r in rows if r.get("event") == "attack" and r.get("form") == "replay"}
    inside, outside = replays["attack.update.replay.in_window"], replays["attack.update.replay.expired"]
    assert inside["sent"] < inside["replayed"]["expiration"] and inside["rcode"] == "NOERROR"
    assert outside["sent"] > outside["replayed"]["expiration"] and outside["rcode"] != "NOERROR"
    assert inside["after"] != inside["before"]  # the zone rolled back to the ar1 address


def _run_and_interrupt(lab: str, out: Path, at: str) -> tuple[int, float, str]:
    """`testbed run` as a user starts it in a terminal; SIGINT to its whole process group, as
    Ctrl-C sends it, once its progress names ``at``. Returns (exit, seconds to stop, stderr)."""
    env = {**os.environ, "TESTBED_LAB": lab}
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "testbed", "run", "forged-update", "--out", str(out)],
                             cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while at not in log.read_text():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            pytest.fail(f"the run never reached {at!r}: {log.read_text()[-2000:]}")
        time.sleep(0.02)  # a log file has no change notification
    t0 = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)
    rc = p.wait(timeout=60)
    return rc, time.monotonic() - t0, log.read_text()


def test_ctrl_c_at_the_move_stops_within_seconds_and_removes_a_lab_the_run_brought_up(tmp_path: Path) -> None:
    lab = lab_name(f"x{next(_n)}")
    rc, took, text = _run_and_interrupt(lab, tmp_path / "out", "move to ar1")
    assert rc == 130, text
    assert took < 3.0, f"stopped {took:.1f} s after SIGINT"
    assert f"lab {lab}, which this run brought up, removed" in " ".join(text.split())
    assert leftovers(lab) == {k: [] for k in leftovers(lab)}


def test_ctrl_c_leaves_a_lab_that_was_up_as_it_was(tmp_path: Path) -> None:
    lab = lab_name(f"x{next(_n)}")
    Lab.up("two-ar-sec", lab)
    try:
        rc, took, text = _run_and_interrupt(lab, tmp_path / "out", "move to ar2")
        assert rc == 130 and took < 3.0, (rc, took, text)
        assert "capture and traffic stopped" in text and "stays up" in text
        st = LabState.load(lab)
        assert st.status == "up"
        assert not [x for x in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True)
                    .stdout.splitlines() if x.startswith("tcpdump") and str(tmp_path) in x]
        lab_obj = Lab.open(lab)  # still usable: every daemon answers, the MN moves
        lab_obj.move("ar2")
        assert lab_obj.access_state("ar2").ipv4
    finally:
        Lab.open(lab).down()
    assert leftovers(lab) == {k: [] for k in leftovers(lab)}
