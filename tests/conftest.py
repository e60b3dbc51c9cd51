"""Shared fixtures: a private run root for every test that touches lab state, and a lab of
fakes (``fake_lab``) for the lab's logic without namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.backends import BACKENDS
from testbed.lab import Lab
from testbed.model import loader
from testbed.state import LabState
from tests.support.fakes import FakeBackend


@pytest.fixture
def run_root(tmp_path, monkeypatch):
    """``TESTBED_RUN_ROOT`` under the test's tmp dir: lab state never mixes with real labs."""
    root = tmp_path / "run"
    monkeypatch.setenv("TESTBED_RUN_ROOT", str(root))
    return root


@pytest.fixture
def fake_backend(monkeypatch) -> FakeBackend:
    backend = FakeBackend()
    monkeypatch.setitem(BACKENDS, "fake", lambda: backend)
    return backend


def make_fake_lab(backend: FakeBackend, topology: str | None = None, name: str = "tbfake") -> Lab:
    """A topology's lab object over fake runtimes, its state saved as up, nothing built."""
    topo = loader.load(loader.resolve(topology))
    state = LabState(name, str(loader.resolve(topology)), topo.model_dump(mode="json"), backend="fake")
    state.status = "up"
    state.save()
    return Lab(state, topo, backend)


@pytest.fixture
def fake_lab(run_root, fake_backend) -> Iterator[Lab]:
    """The default topology (two-ar) over fake runtimes."""
    yield make_fake_lab(fake_backend)
