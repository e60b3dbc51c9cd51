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
    cmds = shared_medium_mirrors(plan.nodes["ar1"], ["mn"])
    assert cmds[0] == "qdisc add dev ar1-mn clsact" and len(cmds) == 3
    assert all("mirror dev ar1-atk" in c and "mirror dev ar1-imp" in c for c in cmds[1:])
    assert shared_medium_mirrors(plan.nodes["ar2"], ["mn"]) == []  # switched


def test_forged_update_scenario_parses_with_its_expectations() -> None:
    sc = model.load("forged-update")
    forms = [s.rule_id for s in sc.steps if isinstance(s, model.ForgeUpdate)]
    assert set(forms) <= set(sc.expect) and sc.expect["attack.update.replay.in_window"] == "fail"


def _asconf_outcome(acked: bool, errors: list[str], data: int) -> Outcome:
    step = model.ForgeAsconf(node="atk", auth="computed", label="on_path")
    report = {"auth": "computed", "serial": 9, "lookup": "192.0.2.100", "cn": "203.0.113.14",
              "acked": acked, "ack_errors": errors, "heartbeats_answered": 1 if data else 0,
              "data_received": data, "sent": 100.0, "negotiated_auth": True}
    return Outcome(step, "192.0.2.254", report)


def test_an_injected_asconf_is_refused_unless_acked_or_followed_by_data() -> None:
    from testbed.scenario.attacks import judge_asconf

    assert judge_asconf(_asconf_outcome(False, [], 0)).status == "pass"
    assert judge_asconf(_asconf_outcome(True, ["Request Refused - No Authorization"], 0)).status == "pass"
    taken = judge_asconf(_asconf_outcome(True, [], 151))
    assert taken.id == "attack.asconf.on_path" and taken.status == "fail"
    assert "151 DATA chunk(s) from the correspondent to the attacker" in taken.message


def test_the_injected_asconf_carries_an_hmac_the_receiver_would_compute() -> None:
    """What the attack builds verifies under the key both ends derive (and the checker uses)."""
    import struct

    from testbed.attacks.asconf_injection import build
    from testbed.decode import sctp_auth
    from testbed.decode.sctp import AuthChunk, chunk_spans, decode_chunk

    # RANDOM (4 bytes) then HMAC-ALGO (SHA-1) of each end, as key vectors hold them
    vec = [b"\x80\x02\x00\x08" + bytes([i]) * 4 + b"\x80\x04\x00\x06\x00\x01" for i in (1, 2)]
    a = {"mn": "192.0.2.100", "mn_port": 40000, "cn_port": 5001, "cn_tag": 7, "serial": 5,
         "mn_vector": vec[0], "cn_vector": vec[1], "cn_hmacs": [1]}
    pkt = build(a, "192.0.2.254", "computed")
    hdr, spans, fault = chunk_spans(pkt, 0, len(pkt))
    assert hdr == (40000, 5001, 7) and fault is None and [s[0] for s in spans] == [15, 0xC1]
    _t, p, clen, _w = spans[0]
    auth = decode_chunk(pkt, p, clen)
    assert isinstance(auth, AuthChunk) and (auth.shared_key_id, auth.hmac_id) == (0, 1)
    key = sctp_auth.association_key(vec[0], vec[1])
    assert sctp_auth.compute(1, key, sctp_auth.covered(pkt, p, clen, len(pkt))) == auth.hmac
    assert struct.unpack_from("!I", pkt, spans[1][1] + 4)[0] == 5  # the serial
    none = build(a, "192.0.2.254", "none")
    assert [s[0] for s in chunk_spans(none, 0, len(none))[1]] == [0xC1]


def test_stale_dns_rule_says_which_outcome_happened() -> None:
    from testbed.scenario.attacks import judge_probe

    step = model.Probe(node="cn", label="no_notice")
    report = {"name": "mn.mobile.test", "rcode": "NOERROR", "resolved": ["192.0.2.100"],
              "answered_by": {"192.0.2.100": "imp"}, "sent": 1.0}
    claims = {"imp": {"claimed": "192.0.2.100", "presented": "hardware address"}}
    r = judge_probe(Outcome(step, "", report), claims)
    assert (r.id, r.status) == ("attack.stale_dns.no_notice", "fail")
    assert "imp took 192.0.2.100 by DHCP presenting the MN's hardware address" in r.message
    gone = dict(report, resolved=[], answered_by={})
    assert judge_probe(Outcome(step, "", gone), claims).status == "pass"


def test_cooperating_must_be_a_host(tmp_path) -> None:
    import pytest

    from testbed.errors import ConfigError

    topo = loader.resolve("two-ar-coop").read_text().replace("cooperating: home", "cooperating: ar1")
    (tmp_path / "t.yaml").write_text(topo)
    with pytest.raises(ConfigError, match="mobile.cooperating: 'ar1' is not a host node"):
        loader.load(tmp_path / "t.yaml")


def test_rogue_ra_bound_or_refused_from_the_agents_events() -> None:
    from testbed.scenario.attacks import judge_rogue_ra

    step = model.RogueRouter(node="atk")
    report = {"prefix": "2001:db8:bad::/64", "router": "fe80::1", "sent": 10.0, "count": 3,
              "aaaa_after": ["2001:db8:a1::5"], "published": []}
    refused = [{"event": "untrusted", "prefix": "2001:db8:bad::/64", "wall": 10.2, "addresses": []}]
    assert judge_rogue_ra(Outcome(step, "192.0.2.254", report), refused).status == "pass"
    bound = [{"event": "detected", "prefix": "2001:db8:bad::/64", "wall": 10.2},
             {"event": "configured", "prefix": "2001:db8:bad::/64", "wall": 10.3,
              "addresses": ["2001:db8:bad::5"]}]
    r = judge_rogue_ra(Outcome(step, "192.0.2.254", report), bound)
    assert (r.id, r.status) == ("attack.rogue_ra", "fail") and "configured, detected" in r.message
