"""Kernel specs: a series (6.12) picks the newest cached build; a missing one says how to fetch."""

from __future__ import annotations

import pytest

from testbed.errors import ConfigError
from testbed.runtimes import kernels as kernel


def fake(cache, release):
    d = cache / "kernels" / release
    (d / "lib" / "modules" / release).mkdir(parents=True)
    (d / "vmlinuz").write_bytes(b"")
    (d / ".complete").write_text("")


def test_series_picks_newest_cached(tmp_path):
    for rel in ("6.12.9+deb12-amd64", "6.12.117+deb12-amd64", "6.1.0-56-amd64"):
        fake(tmp_path, rel)
    assert kernel.resolve("6.12", cache=tmp_path).release == "6.12.117+deb12-amd64"
    assert kernel.resolve("6.1", cache=tmp_path).release == "6.1.0-56-amd64"


def test_missing_series_names_the_fix(tmp_path):
    fake(tmp_path, "6.1.0-56-amd64")
    with pytest.raises(ConfigError, match=r"scripts/fetch-kernel.sh 6.12"):
        kernel.resolve("6.12", cache=tmp_path)
