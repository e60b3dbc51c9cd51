"""The CLI's output is its own: known-harmless dependency warnings are filtered where it starts
(and nothing else is), errors are one line, and machine output is JSON on stdout alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter with Python's default warning filters (no PYTHONWARNINGS, no -W)."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**base, **(env or {})})


def test_importing_dnspythons_dnssec_algorithms_prints_nothing():
    cp = python("-c", "from testbed import warning_filters; warning_filters.install(); "
                "import dns.dnssecalgs")
    assert cp.returncode == 0 and cp.stderr == ""


def test_the_filter_hides_only_what_it_names():
    # the warning as dnspython triggers it with cryptography 51 (attributed to its DSA module),
    # beside the same category from another module and a plain user warning
    cp = python("-c", "from testbed import warning_filters; warning_filters.install(); import warnings; "
                "from cryptography.utils import CryptographyDeprecationWarning as C; "
                "warnings.warn_explicit('DSA is deprecated', C, 'dsa.py', 14, module='dns.dnssecalgs.dsa'); "
                "warnings.warn_explicit('from elsewhere', C, 'x.py', 1, module='somewhere.else'); "
                "warnings.warn('a user warning')")
    assert "DSA is deprecated" not in cp.stderr
    assert "from elsewhere" in cp.stderr and "a user warning" in cp.stderr


def test_a_bad_topology_is_one_line_on_stderr_and_nothing_on_stdout(tmp_path, run_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "topologies/two-ar.yaml").read_text().replace("b: dns,", "b: dnz,"))
    cp = python("-m", "testbed", "--lab", "tbcli", "up", str(bad), env={"TESTBED_RUN_ROOT": str(run_root)})
    assert cp.returncode == 2
    assert cp.stderr.count("\n") == 1, cp.stderr
    assert f"{bad}: links.2.b: unknown node 'dnz'" in cp.stderr
    assert cp.stdout == ""
    assert not (run_root / "tbcli").exists()


def test_json_goes_to_stdout_alone_whatever_stderr_carries(capsys, monkeypatch):
    from testbed.cli import main

    data = {"nodes": [{"name": "mn", "note": "x" * 300}], "status": "up"}
    print("a dependency's note on stderr", file=sys.stderr)
    main.print_json(data)
    got = capsys.readouterr()
    assert json.loads(got.out) == data
    assert "note on stderr" in got.err
