"""``testbed check``: exit codes, verdict.json, events and budgets from the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from testbed.conformance import main
from tests.support.synth import Knobs, agent_events, trash_capture


def _main(argv: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    code = main(argv, console=Console(file=buf, width=200, color_system=None))
    return code, buf.getvalue()


def test_pass_writes_verdict_and_prints_table(tmp_path: Path) -> None:
    trash_capture().write_pcap(tmp_path / "a.pcap")
    out = tmp_path / "verdict.json"
    code, text = _main([str(tmp_path), "--out", str(out), "--mn-name", "mn.mobile.test"])
    assert code == 0, text
    assert "asconf.auth" in text and "verdict: PASS" in text
    d = json.loads(out.read_text())
    assert d["passed"] is True and d["handovers"][0]["address"] == "198.51.100.10"


def test_failing_rule_exits_1(tmp_path: Path) -> None:
    trash_capture(Knobs(skip_serial=True)).write_pcap(tmp_path / "a.pcap")
    code, text = _main([str(tmp_path / "a.pcap"), "--rules", "asconf"])
    assert code == 1
    assert "asconf.serial" in text and "fail" in text and "dns.signed" not in text


def test_unusable_input_exits_2(tmp_path: Path) -> None:
    code, text = _main([str(tmp_path)])
    assert code == 2 and "no capture files" in text
    (tmp_path / "x.pcap").write_text("not a capture")
    code, text = _main([str(tmp_path)])
    assert code == 2 and "not a pcap" in text
    code, _text = _main([str(tmp_path / "missing")])
    assert code == 2


def test_events_file_and_budgets(tmp_path: Path) -> None:
    trash_capture().write_pcap(tmp_path / "a.pcap")
    ev = tmp_path / "events.jsonl"
    ev.write_text("\n".join(json.dumps(e) for e in agent_events()) + "\n")
    out = tmp_path / "v.json"
    code, text = _main(
        [str(tmp_path / "a.pcap"), "--events", str(ev), "--budget", "dns_acked=0.01", "--out", str(out)]
    )
    assert code == 1, text
    d = json.loads(out.read_text())
    (rule,) = [r for r in d["rules"] if r["id"] == "timeline.dns_acked"]
    assert rule["status"] == "fail" and "budget" in rule["evidence"][0]["what"]
    assert d["handovers"][0]["offsets"]["link_up"] == 0.0
    code, text = _main([str(tmp_path / "a.pcap"), "--budget", "dns_acked"])
    assert code == 2 and "PHASE=SECONDS" in text


def test_auth_key_option(tmp_path: Path) -> None:
    trash_capture().write_pcap(tmp_path / "a.pcap")
    code, text = _main([str(tmp_path), "--rules", "asconf.auth", "--auth-key", "0:6b6579"])
    assert code == 1 and "HMAC does not verify (key id 0, the configured" in text  # not this key
    code, text = _main([str(tmp_path), "--auth-key", "0:zz"])
    assert code == 2 and "--auth-key: 0:zz: expected [ID:]HEX" in text
