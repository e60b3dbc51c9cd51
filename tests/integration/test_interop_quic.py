"""`testbed interop --transport quic --stacks aioquic,ngtcp2`: the three QUIC pairs in real labs
(aioquic on both ends, aioquic against gtlsserver, gtlsclient against aioquic), each ending as
its scenario expects, each verdict naming the stacks that served it; no lab left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testbed.pytest_plugin import lab_name
from testbed.state import LabState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_the_quic_pairs_end_as_expected(tmp_path):
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    prefix = lab_name("qi")
    cp = subprocess.run([sys.executable, "-m", "testbed.cli.main", "--lab", prefix, "interop", "--transport",
                         "quic", "--stacks", "aioquic,ngtcp2", "--out", str(tmp_path)],
                        capture_output=True, text=True, timeout=600)
    doc = json.loads((tmp_path / "matrix.json").read_text())
    cells = {(c["mn"], c["cn"]): c for c in doc["cells"]}
    assert set(cells) == {("aioquic", "aioquic"), ("aioquic", "ngtcp2"), ("ngtcp2", "aioquic")}, cp.stderr
    want = {("aioquic", "aioquic"): ("pass", []), ("aioquic", "ngtcp2"): ("pass", []),
            ("ngtcp2", "aioquic"): ("expected-fail", ["order.quic"])}  # the timer's migration
    for pair, c in cells.items():
        assert (c["status"], c["failed_rules"]) == want[pair], (pair, c)
        verdict = json.loads((tmp_path / c["verdict"]).read_text())
        served = verdict["lab"]["quic"]["nodes"]
        assert (served["mn"]["stack"], served["cn"]["stack"]) == pair
        assert verdict["lab"]["quic"]["agent_driven"] is (pair[0] == "aioquic")
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "aioquic" in (tmp_path / "matrix.html").read_text()
    assert not [n for n in (f"{prefix}{i}" for i in range(8)) if LabState.exists(n)]


def test_bad_stacks_are_refused_in_one_line(tmp_path):
    cp = subprocess.run([sys.executable, "-m", "testbed.cli.main", "--lab", lab_name("qx"), "interop",
                         "--transport", "quic", "--stacks", "aioquic,picoquic", "--out", str(tmp_path)],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2
    assert "--stacks: picoquic: not a QUIC stack of the lab" in cp.stderr.strip().splitlines()[-1]
    cp = subprocess.run([sys.executable, "-m", "testbed.cli.main", "--lab", lab_name("qx"), "interop",
                         "--transport", "quic", "--stacks", "ngtcp2", "--out", str(tmp_path)],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2 and "no pair to play" in cp.stderr
