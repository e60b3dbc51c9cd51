"""pytest plugin (entry point ``testbed``): fixtures for suites that need a running lab.

Fixtures:
  ``testbed_lab``   a lab of the default topology, up for the whole session, torn down after.
                    Options: ``--testbed-topology`` and ``--testbed-lab`` (namespace prefix).
  ``testbed_fresh_lab_name``  a lab name no other test uses, for tests that bring labs up/down.
A missing prerequisite (root, the Debian packages) fails the test with what to install.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator

import pytest

_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("testbed")
    g.addoption("--testbed-topology", default=None, help="topology for the testbed_lab fixture")
    g.addoption("--testbed-lab", default="tbt", help="lab name (netns prefix) for testbed_lab")


def require_lab_prerequisites() -> None:
    """Fail (not skip) with the fix when the machine cannot run a lab."""
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network namespaces): run the tests as root", pytrace=False)
    missing = [
        f"{b} ({pkg})"
        for b, pkg in (
            ("named", "bind9"),
            ("dhcpd", "isc-dhcp-server"),
            ("radvd", "radvd"),
            ("dhclient", "isc-dhcp-client"),
            ("mnexec", "mininet"),
            ("rdisc6", "ndisc6"),
            ("tcpdump", "tcpdump"),
        )
        if not shutil.which(b, path="/usr/sbin:/usr/bin:/sbin:/bin")
    ]
    if missing:
        pytest.fail(f"missing: {', '.join(missing)}; run `make setup`", pytrace=False)


@pytest.fixture(scope="session")
def testbed_lab(request: pytest.FixtureRequest) -> Iterator:
    from testbed.lab import Lab
    from testbed.state import LabState

    require_lab_prerequisites()
    name = request.config.getoption("--testbed-lab")
    if LabState.exists(name):  # a previous run crashed: its leftovers are ours to remove
        from testbed.lab import teardown_state

        teardown_state(LabState.load(name))
    lab = Lab.up(request.config.getoption("--testbed-topology"), name)
    try:
        yield lab
    finally:
        Lab.open(name).down()


@pytest.fixture
def testbed_fresh_lab_name() -> str:
    return f"tbf{os.getpid() % 1000}{next(_counter)}"
