"""pytest plugin (entry point ``testbed``): fixtures for suites that need a running lab.

Fixtures:
  ``testbed_lab``   a lab of the default topology, up for the whole session, torn down after.
                    Options: ``--testbed-topology``, ``--testbed-lab`` (namespace prefix) and
                    ``--testbed-backend``. Parametrize it indirectly with backend names to run
                    a test on each backend (one lab per backend, up while its tests run):
                    ``@pytest.mark.parametrize("testbed_lab", ["mininet", "docker"],
                    indirect=True)``; a docker lab's name ends in ``d``.
  ``testbed_fresh_lab_name``  a lab name no other test uses, for tests that bring labs up/down.
  ``testbed_run``   ``testbed_run(scenario, lab=None) -> RunResult``: run a scenario (name in
                    topologies/scenarios/, path, or Scenario) on ``lab`` (default: the
                    session lab), output under the test's tmp_path; ``.verdict`` is the
                    checker's verdict.
Assertion helpers (import them from ``testbed.pytest_plugin``):
  ``assert_rules(verdict, *rule_ids_or_groups)`` every named rule passed, else a message with
                    each failing rule's message and evidence (pcap#frame).
  ``assert_verdict(verdict)`` every selected rule passed or was skipped.
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
    g.addoption("--testbed-backend", default=None, choices=["mininet", "docker"],
                help="backend of testbed_lab (default: the topology's, else mininet)")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Labs built under this pytest run carry its holder tag (the lab prefix and this process);
    labs an earlier pytest run of the same prefix left behind (killed before its teardown ran)
    are removed first, so a test's ``Lab.up`` does not find its name taken. A pytest run still
    going is no earlier one: its labs stay."""
    from testbed.lab import clean_held
    from testbed.lab.teardown import holder_tag

    kind = f"pytest:{os.environ.get('TESTBED_LAB_PREFIX', 'tb')}"
    os.environ["TESTBED_LAB_HOLDER"] = holder_tag(kind)
    if os.geteuid() != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for lab in clean_held(kind):
        if reporter is not None:
            reporter.write_line(f"testbed: removed lab {lab!r}, left up by an earlier test session")


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
            ("dhcpcd", "dhcpcd-base"),
            ("unshare", "util-linux"),
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
    from testbed.lab import Lab, teardown_leftover

    require_lab_prerequisites()
    backend = getattr(request, "param", None) or request.config.getoption("--testbed-backend")
    name = request.config.getoption("--testbed-lab") + ("d" if backend == "docker" else "")
    teardown_leftover(name)  # a previous run crashed: its leftovers are ours to remove
    lab = Lab.up(request.config.getoption("--testbed-topology"), name, backend=backend)
    try:
        yield lab
    finally:
        Lab.open(name).down()


def lab_name(suffix: str) -> str:
    """A test lab's name: ``$TESTBED_LAB_PREFIX`` (default ``tb``) then ``suffix``, so suites run
    side by side on one host (namespaces are global) under prefixes of their own."""
    return os.environ.get("TESTBED_LAB_PREFIX", "tb") + suffix


@pytest.fixture
def testbed_fresh_lab_name() -> str:
    return lab_name(f"f{os.getpid() % 1000}{next(_counter)}")


@pytest.fixture
def testbed_run(request: pytest.FixtureRequest, tmp_path):
    from testbed.scenario import model
    from testbed.scenario.runner import Runner

    def run(scenario, lab=None):
        sc = scenario if isinstance(scenario, model.Scenario) else model.load(scenario)
        lab = lab or request.getfixturevalue("testbed_lab")
        return Runner(sc, lab, tmp_path / sc.name).run()

    return run


def _explain(rules) -> str:
    lines = []
    for r in rules:
        ev = ", ".join(f"{e.pcap}#{e.frame} {e.what}" for e in r.evidence[:3])
        lines.append(f"{r.id}: {r.status}: {r.message}" + (f" [{ev}]" if ev else ""))
    return "\n".join(lines)


def assert_rules(verdict, *ids: str) -> None:
    """Each named rule (or every rule of a named group, e.g. "asconf") has status pass."""
    chosen = [r for r in verdict.rules if not ids or r.id in ids or r.id.split(".")[0] in ids]
    missing = [i for i in ids if not any(r.id == i or r.id.split(".")[0] == i for r in verdict.rules)]
    bad = [r for r in chosen if r.status != "pass"]
    if missing or bad:
        raise AssertionError(("no such rule(s): " + ", ".join(missing) + "\n" if missing else "")
                             + _explain(bad))


def assert_verdict(verdict) -> None:
    """The whole verdict passed (skips allowed)."""
    if not verdict.passed:
        raise AssertionError(_explain([r for r in verdict.rules if r.status == "fail"]))
