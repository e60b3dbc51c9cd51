"""`testbed compare trash-handover --transports sctp,mptcp,quic,tcp`: one movement, every
transport, on the same User-Mode Linux nodes: SCTP and QUIC survive the move with no message
lost, plain TCP breaks as the scenario expects, MPTCP is refused (Debian's UML build has no
MPTCP) and says so; compare.json and compare.html hold every row; no lab is left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testbed.pytest_plugin import lab_name
from testbed.state import LabState

pytestmark = [pytest.mark.integration, pytest.mark.long, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    out = tmp_path_factory.mktemp("compare")
    prefix = lab_name("cmp")
    cp = subprocess.run([sys.executable, "-m", "testbed.cli.main", "--lab", prefix, "compare",
                         "trash-handover", "--transports", "sctp,mptcp,quic,tcp", "--out", str(out)],
                        capture_output=True, text=True, timeout=900)
    return cp, out, prefix


def test_every_row_ends_as_expected(compared):
    cp, out, _ = compared
    doc = json.loads((out / "compare.json").read_text())
    rows = {r["transport"]: r for r in doc["rows"]}
    assert [r["transport"] for r in doc["rows"]] == ["sctp", "mptcp", "quic", "tcp"], cp.stderr[-2000:]
    assert {t: r["status"] for t, r in rows.items()} == {"sctp": "pass", "mptcp": "refused", "quic": "pass",
                                                         "tcp": "expected-fail"}, cp.stderr[-3000:]
    assert "CONFIG_MPTCP is not set" in rows["mptcp"]["refused"]
    for t in ("sctp", "quic"):
        assert rows[t]["messages"]["lost"] == 0 and rows[t]["messages"]["duplicated"] == 0
        (stall,) = rows[t]["stalls"]
        assert stall["resumed"] and stall["longest_s"] < 2.0
        assert rows[t]["comparable"] and (out / rows[t]["report"]).is_file()
        assert {k["stack"] for k in rows[t]["served"].values()} == {"uml"}
    assert rows["quic"]["changes"]["mn"] == {"quic.stack": ["none", "aioquic"]}
    (stall,) = rows["tcp"]["stalls"]
    assert not stall["resumed"] and rows["tcp"]["messages"]["lost"] > 0
    assert rows["tcp"]["failed_rules"] == ["continuity.tcp"]
    assert cp.returncode == 0, cp.stderr[-2000:]


def test_the_page_draws_each_run_and_no_lab_is_left(compared):
    _, out, prefix = compared
    page = (out / "compare.html").read_text()
    assert page.count("<svg") == 3 and "CONFIG_MPTCP" in page and "sctp/run/report.html" in page
    assert not [n for n in (f"{prefix}{i}" for i in range(4)) if LabState.exists(n)]
