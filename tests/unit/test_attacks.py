"""Attack steps judged from what the attack program reported: refused means no NOERROR and
the zone unchanged; the shared medium copies the MN's frames to every other port."""

from __future__ import annotations

from testbed.backends.l3 import shared_medium_mirrors
from testbed.model import addressing, loader
from testbed.scenario import model
from testbed.scenario.attacks import Outcome, judge_update

MN = {"a": ["198.51.100.100"], "aaaa": []}


def _outcome(form: str, rcode: str | None, after: dict, label: str = "") -> Outcome:
    step = model.ForgeUpdate(node="atk", form=form, label=label)  # type: ignore[arg-type]
    report = {"form": form, "target": "mn.mobile.test", "sent": 100.0, "id": 7, "rcode": rcode,
              "before": MN, "after": after, "forged": ["192.0.2.254"]}
    if form == "replay":
        report.update(replayed={"expiration": 103, "time": 98.0}, age=2.0)
    return Outcome(step, "192.0.2.254", report)


def test_refused_and_unchanged_passes() -> None:
    r = judge_update(_outcome("unsigned", "REFUSED", MN))
    assert (r.id, r.status) == ("attack.update.unsigned", "pass") and "unchanged" in r.message


def test_noerror_or_a_changed_zone_fails_whatever_the_rcode() -> None:
    rolled = {"a": ["192.0.2.100"], "aaaa": []}
    r = judge_update(_outcome("replay", "NOERROR", rolled, "in_window"))
    assert (r.id, r.status) == ("attack.update.replay.in_window", "fail")
    assert "198.51.100.100 → 192.0.2.100" in r.message and "signature valid 3 s more" in r.message
    assert judge_update(_outcome("own-key", "SERVFAIL", rolled)).status == "fail"


def test_an_attack_not_carried_out_is_a_skip_meeting_no_expectation() -> None:
    o = _outcome("replay", None, MN)
    o.report = {"form": "replay", "error": "no signed UPDATE"}
    r = judge_update(o)
    assert r.status == "skip" and "not carried out" in r.message


def test_shared_medium_copies_the_mns_port_to_the_others() -> None:
    plan = addressing.plan(loader.load(loader.resolve("two-ar-sec")))
    cmds = shared_medium_mirrors(plan.nodes["ar1"], "mn")
    assert cmds[0] == "qdisc add dev ar1-mn clsact" and len(cmds) == 3
    assert all("mirror dev ar1-atk" in c and "mirror dev ar1-imp" in c for c in cmds[1:])
    assert shared_medium_mirrors(plan.nodes["ar2"], "mn") == []  # switched


def test_forged_update_scenario_parses_with_its_expectations() -> None:
    sc = model.load("forged-update")
    forms = [s.rule_id for s in sc.steps if isinstance(s, model.ForgeUpdate)]
    assert set(forms) <= set(sc.expect) and sc.expect["attack.update.replay.in_window"] == "fail"
