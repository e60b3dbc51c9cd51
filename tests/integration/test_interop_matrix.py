"""The CI interop matrix: `testbed interop --kernels uml,6.12 --settings default,auth-off`.

Eight cells (Debian's UML 6.1 and bookworm-backports' 6.12 in QEMU, as MN and as CN, each
with AUTH-protected ASCONF and with AUTH off), on real kernels: every cell must end as its
setting expects (``pass``, or ``expected-fail`` where the 6.x peer refuses an INIT offering
ASCONF without AUTH), the files must hold every cell, and no lab may be left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.state import LabState

# eight cells, four of them with QEMU nodes: 6-7 minutes on 2 shared cores, more under load
pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.timeout(1500)]
PREFIX = "tbixm"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    out = tmp_path_factory.mktemp("interop")
    cp = subprocess.run(
        [sys.executable, "-m", "testbed.cli.main", "--lab", PREFIX, "interop", "--kernels", "uml,6.12",
         "--settings", "default,auth-off", "--out", str(out)],
        capture_output=True, text=True, timeout=1500)
    (out / "terminal.txt").write_text(cp.stdout + cp.stderr)  # what a user sees, kept with the run
    return cp, out


def test_every_cell_ends_as_its_setting_expects(matrix):
    cp, out = matrix
    doc = json.loads((out / "matrix.json").read_text())
    cells = {(c["mn"], c["cn"], c["setting"]): c for c in doc["cells"]}
    assert len(cells) == 8, cp.stderr[-2000:]
    bad = {k: (c["status"], c["unmet_rules"], c["error"]) for k, c in cells.items()
           if c["status"] not in ("pass", "expected-fail")}
    assert not bad, bad
    for (mn, cn, setting), c in cells.items():
        want = "pass" if setting == "default" else "expected-fail"
        assert c["status"] == want, (mn, cn, setting, c)
        if setting == "auth-off":
            assert c["failed_rules"] == ["continuity.association"]
        verdict = json.loads((out / c["verdict"]).read_text())
        assert verdict["lab"]["interop"]["setting"]["name"] == setting
        assert {verdict["lab"]["nodes"][n]["stack"] for n in ("mn", "cn")} == {
            "uml" if k == "uml" else "qemu" for k in (mn, cn)}
        assert (out / c["report"]).is_file()
    assert cp.returncode == 0, cp.stderr[-2000:]


def test_matrix_html_and_terminal_tables(matrix):
    cp, out = matrix
    page = (out / "matrix.html").read_text()
    assert page.count("<table>") == 2 and page.count("href='cells/") == 8
    assert "default" in cp.stdout and "auth-off" in cp.stdout and "expected-fail" in cp.stdout
    assert "8 cells in" in cp.stderr


def test_no_lab_is_left_behind(matrix):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in names.split() if n.startswith(PREFIX)]
    assert not [lab for lab in (f"{PREFIX}{i}" for i in range(8)) if LabState.exists(lab)]
