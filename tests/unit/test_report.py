"""The handover report: ladder extraction from synthetic TraSH captures and the HTML page."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from testbed.conformance import check
from testbed.report import extract_ladder, render_report
from tests.support.synth import Capture, Knobs, agent_events, dhcp_exchange, router_advert, trash_capture

SVG = "{http://www.w3.org/2000/svg}"
START = 1_700_000_000.0
ROLES = {
    "MN": ["192.0.2.0/24", "198.51.100.0/24", "2001:db8:a2::/64"],
    "New AR": ["198.51.100.1", "2001:db8:a2::1"],
    "CN": ["203.0.113.1"],
    "DHCP": ["198.51.100.1"],
    "Location manager": ["203.0.113.53"],
}


def make_run_dir(path: Path, knobs: Knobs | None = None, budgets: dict[str, float] | None = None) -> Path:
    """A run directory as ``testbed run`` writes it, from the synthetic TraSH ladder plus the
    new network's RA and DHCP (and the old network's, which the ladder must leave out)."""
    cap = trash_capture(knobs, start=START)
    cap.add(START + 0.10, router_advert("fe80::a1", "2001:db8:a1::"))  # old AR: not on the ladder
    dhcp_exchange(cap, START + 0.20, 0x1111, "192.0.2.1", "192.0.2.10")  # old network
    cap.add(START + 0.91, router_advert("fe80::a2", "2001:db8:a2::"))
    dhcp_exchange(cap, START + 0.92, 0x2222, "198.51.100.1", "198.51.100.10")
    pcaps = path / "pcaps"
    pcaps.mkdir(parents=True)
    cap.write_pcap(pcaps / "ar2-mn.pcap")
    cap.write_pcap(pcaps / "core-cn.pcap")  # the same packets seen on a second link
    events = agent_events(start=START)
    lines: list[dict[str, Any]] = [
        {"event": "step", "step": "move", "to": "ar2", "wall": START + 0.88},
        *[{"kind": e["event"], **{k: v for k, v in e.items() if k != "event"}} for e in events],
        {"event": "location", "op": "update", "rcode": "NOERROR", "wall": START + 1.023,
         "addresses": ["198.51.100.10"]},
        {"event": "traffic", "bytes": 123456, "wall": START + 2.0},
    ]  # fmt: skip
    (path / "events.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines) + "not json\n")
    check(pcaps, events=events, budgets=budgets, mn_name="mn.mobile.test").write(path / "verdict.json")
    return path


def _labels(svg: ET.Element) -> list[str]:
    """Arrow labels in drawing (= time) order."""
    out = []
    for g in svg.iter(f"{SVG}g"):
        if g.get("class") == "msg":
            texts = [t.text or "" for t in g.iter(f"{SVG}text")]
            out.append(texts[1])  # [0] is the time column
    return out


def _parse(html: str) -> ET.Element:
    """The page is also well-formed XML; parse it whole (the HTML5 doctype is fine for expat)."""
    return ET.fromstring(html.split("\n", 1)[1])


def _first_index(labels: list[str], needle: str) -> int:
    return next(i for i, label in enumerate(labels) if needle in label)


class _Balanced(HTMLParser):
    """Checks that every opened (non-void) tag is closed in order."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <meta/>, <line/>: opened and closed at once

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def test_report_shows_the_appendix_a_ladder_in_order(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    out = render_report(run, ROLES, "Handover ar1 → ar2")
    assert out == run / "report.html"
    html = out.read_text()
    p = _Balanced()
    p.feed(html)
    assert not p.errors and not p.stack, (p.errors, p.stack)
    root = _parse(html)
    (svg,) = root.iter(f"{SVG}svg")
    labels = _labels(svg)
    order = [
        "Router Advertisement 2001:db8:a2::/64",
        "DHCP DISCOVER",
        "DHCP OFFER 198.51.100.10",
        "DHCP REQUEST",
        "DHCP ACK 198.51.100.10",
        "ASCONF ADD_IP 198.51.100.10",
        "ADD_IP ACK",
        "ASCONF SET_PRIMARY 198.51.100.10",
        "SET_PRIMARY ACK",
        "DNS UPDATE mn.mobile.test.",
        "DNS UPDATE reply NOERROR",
        "first DATA on the new path",
        "ASCONF DELETE_IP 192.0.2.10",
        "DELETE_IP ACK",
    ]
    idx = [_first_index(labels, n) for n in order]
    assert idx == sorted(idx), labels
    assert len(labels) == len(order), labels  # once each: copies on the second link merged
    assert "[SIG(0)]" in labels[idx[9]]
    assert not any(re.search(r"192\.0\.2\.1\b|2001:db8:a1", label) for label in labels), labels
    # columns of Appendix A, agent events on the MN's lifeline, the scenario step across
    header = [t.text for t in svg.iter(f"{SVG}text") if t.get("font-weight") == "bold"]
    assert header == list(ROLES)
    notes = [g for g in svg.iter(f"{SVG}g") if g.get("class") in ("note", "step")]
    assert len(notes) == 5
    assert "-60.0 ms" in html  # 'lost', 60 ms before the first message (the RA)
    # summary, rules, timeline, captures, events
    assert "PASS" in html
    verdict = json.loads((run / "verdict.json").read_text())
    for r in verdict["rules"]:
        assert f"<code>{r['id']}</code>" in html
    assert 'href="pcaps/ar2-mn.pcap"' in html or "href='pcaps/ar2-mn.pcap'" in html
    assert "pcaps/core-cn.pcap" in html
    assert "set_primary_acked" in html and "first_data_new_path" in html
    assert "configured" in html and "location" in html and "1 × traffic" in html
    assert "events.jsonl: 1 line(s) not JSON objects" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_failing_run_is_red_and_names_the_rule(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", Knobs(dns_rcode=5), budgets={"dns_acked": 0.05})
    html = render_report(run, ROLES, "refused").read_text()
    root = _parse(html)
    assert "FAIL" in html and "dns.answered" in html and "timeline.dns_acked" in html
    (svg,) = root.iter(f"{SVG}svg")
    reply = next(g for g in svg.iter(f"{SVG}g") if "REFUSED" in "".join(g.itertext()))
    (line,) = reply.iter(f"{SVG}line")
    assert line.get("stroke") == "#c62828" and line.get("stroke-dasharray")
    assert "over budget" in html


def test_ladder_merges_copies_and_keeps_first_frame(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    pcaps = sorted((run / "pcaps").iterdir())
    ladder = extract_ladder(pcaps, ROLES)
    both = [m.label for m in ladder.messages]
    one = [m.label for m in extract_ladder(pcaps[:1], ROLES).messages]
    assert both == one
    assert {c.name: c.frames for c in ladder.captures} == {"ar2-mn.pcap": 47, "core-cn.pcap": 47}
    first = ladder.messages[0]
    assert (first.src_role, first.dst_role, first.kind) == ("New AR", "MN", "ra")
    asconf = [m for m in ladder.messages if m.label.startswith("ASCONF ")]
    assert [m.detail.split(";")[0] for m in asconf] == ["serial 1000", "serial 1001", "serial 1002"]
    assert all(m.pcap in ("ar2-mn.pcap", "core-cn.pcap") and m.frame > 0 for m in ladder.messages)
    dns = next(m for m in ladder.messages if m.label.startswith("DNS UPDATE mn"))
    assert (dns.src_role, dns.dst_role) == ("MN", "Location manager")


def test_unknown_ends_get_an_other_column(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    roles = {k: v for k, v in ROLES.items() if k != "CN"}
    ladder = extract_ladder(sorted((run / "pcaps").iterdir()), roles)
    assert ladder.columns == [*roles, "Other"]
    assert any(m.dst_role == "Other" for m in ladder.messages)


def test_run_without_pcaps_or_verdict_still_renders(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    html = render_report(run, ROLES, "nothing").read_text()
    _parse(html)
    assert "NO VERDICT" in html
    assert html.count("not captured") >= 5
    assert "<svg" not in html


def test_empty_and_truncated_pcaps_are_listed_not_fatal(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    (run / "pcaps" / "zero.pcap").write_bytes(b"")  # tcpdump killed before its header
    Capture().write_pcap(run / "pcaps" / "core-dns.pcap")  # header only
    good = (run / "pcaps" / "ar2-mn.pcap").read_bytes()
    (run / "pcaps" / "ar1-mn.pcap").write_bytes(good[:-7])  # last record cut
    (run / "verdict.json").write_text("{broken")
    html = render_report(run, ROLES, "partial").read_text()
    _parse(html)
    assert "zero.pcap" in html and "unreadable" in html
    assert "truncated last record" in html
    assert "verdict.json: unreadable" in html and "NO VERDICT" in html
    assert "ASCONF ADD_IP" in html


def test_text_is_escaped(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    roles = {"MN <&> \"'": ROLES["MN"], **{k: v for k, v in ROLES.items() if k != "MN"}}
    html = render_report(run, roles, "<script>alert('x')</script> & co", mn_role="MN <&> \"'").read_text()
    root = _parse(html)
    assert "<script>" not in html
    assert root.find("head/title").text == "<script>alert('x')</script> & co"  # type: ignore[union-attr]
    (svg,) = root.iter(f"{SVG}svg")
    header = [t.text for t in svg.iter(f"{SVG}text") if t.get("font-weight") == "bold"]
    assert header[0] == "MN <&> \"'"


def test_report_draws_from_the_verdicts_facts_without_reading_the_captures(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    verdict = check(run / "pcaps", mn_name="mn.mobile.test")
    assert verdict.facts is not None and [c.frames for c in verdict.facts.captures] == [47, 47]
    for p in (run / "pcaps").iterdir():
        p.write_bytes(b"not a capture any more")  # whatever reads them now finds nothing
    html = render_report(run, ROLES, "from facts", verdict=verdict).read_text()
    assert "ASCONF ADD_IP 198.51.100.10" in html and "DHCP ACK 198.51.100.10" in html
    assert "unreadable" not in html
    again = render_report(run, ROLES, "from the files").read_text()  # no verdict: reads them
    assert "ASCONF ADD_IP 198.51.100.10" not in again and "unreadable" in again


def test_timeline_shows_durations_beside_protocol_floors(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    html = render_report(run, ROLES, "floors").read_text()
    _parse(html)
    for what in ("DHCP DISCOVER → ACK", "ASCONF ADD_IP → ASCONF-ACK", "DNS UPDATE → response"):
        assert what in html
    row = re.search(r"<tr><td>detected</td>.*?</tr>", html)
    assert row is not None  # link_up → detected 50 ms, 15 ms of it the DHCP exchange
    assert "50.0 ms" in row.group(0) and "15.0 ms" in row.group(0) and "35.0 ms" in row.group(0)
    verdict = check(run / "pcaps", mn_name="mn.mobile.test")  # no agent events
    html = render_report(run, ROLES, "no events", verdict=verdict).read_text()
    assert "t0 (the new link&#x27;s link_up) unknown" in html
    assert "missing from the agent&#x27;s events" in html


def test_attacks_and_faults_each_get_their_own_part(tmp_path: Path) -> None:
    from dataclasses import replace

    from testbed.conformance.verdict import Evidence, RuleResult

    run = make_run_dir(tmp_path / "run")
    v = check(run / "pcaps")
    extra = (RuleResult("attack.update.replay.in_window", "fail", "accepted: replay answered NOERROR",
                        (Evidence("link.pcap", 3, 1_700_000_000.5, "replay id 7"),)),
             RuleResult("fault.kill.named", "fail", "named on dns killed"))
    v = replace(v, rules=(*v.rules, *extra)).expecting({"attack.update.replay.in_window": "fail"})
    html = render_report(run, ROLES, "forged", verdict=v).read_text()
    p = _Balanced()
    p.feed(html)
    assert not p.errors and not p.stack
    assert html.index("Forged location updates") < html.index("Faults") < html.index("id='rules'")
    assert "accepted: replay answered NOERROR" in html and "fail met" in html
    assert "Forged binding updates" not in html  # no such rule in this run: no such part
