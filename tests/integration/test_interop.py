"""Interop lab: the MN on Debian's 6.1 kernel, the CN on bookworm-backports' 6.12 (both
fetched by `make setup`); the same TraSH handover must pass between the two SCTP stacks."""

from __future__ import annotations

import pytest

from testbed.lab import Lab
from testbed.scenario import model
from testbed.scenario.runner import Runner
from testbed.status import collect

pytestmark = [pytest.mark.integration, pytest.mark.vm]


def test_trash_handover_between_different_kernels(tmp_path):
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    lab = Lab.up("two-ar-interop", "tbk")
    try:
        nodes = {n["name"]: n for n in collect(lab)["nodes"]}
        assert nodes["mn"]["kernel"].startswith("6.1.0-"), nodes["mn"]["kernel"]
        assert nodes["cn"]["kernel"].startswith("6.12."), nodes["cn"]["kernel"]
        verdict = Runner(model.load("trash-handover"), lab, tmp_path).run().verdict
        statuses = {r.id: r.status for r in verdict.rules}
        for rid in ("asconf.auth", "asconf.serial", "asconf.ack", "asconf.success", "order.trash",
                    "dns.signed", "dns.answered", "continuity.tsn"):
            assert statuses[rid] == "pass", (rid, [r.message for r in verdict.rules if r.id == rid])
    finally:
        lab.close()
        Lab.open("tbk").down()
