"""Interop labs: the same TraSH handover between different SCTP stacks must pass.

* two-ar-interop: the MN on Debian's 6.1, the CN on bookworm-backports' 6.12, both QEMU VMs
  (distribution kernel builds stay covered; both fetched by `make setup`).

UML against QEMU 6.12, both ways, is a cell of the CI interop matrix
(tests/integration/test_interop_matrix.py).
"""

from __future__ import annotations

import pytest

from testbed.lab import Lab
from testbed.scenario import model
from testbed.scenario.runner import Runner
from testbed.status import collect

pytestmark = [pytest.mark.integration, pytest.mark.vm]

LABS = {
    "two-ar-interop": {"mn": ("qemu", "6.1.0-"), "cn": ("qemu", "6.12.")},
}


@pytest.mark.parametrize("topology", sorted(LABS))
def test_trash_handover_between_different_kernels(topology, tmp_path):
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    lab = Lab.up(topology, "tbk")
    try:
        nodes = {n["name"]: n for n in collect(lab)["nodes"]}
        for name, (stack, release) in LABS[topology].items():
            node = nodes[name]
            assert (node["stack"], node["kernel"][: len(release)]) == (stack, release), node
        verdict = Runner(model.load("trash-handover"), lab, tmp_path).run().verdict
        statuses = {r.id: r.status for r in verdict.rules}
        for rid in ("asconf.auth", "asconf.serial", "asconf.ack", "asconf.success", "order.trash",
                    "dns.signed", "dns.answered", "continuity.tsn"):
            assert statuses[rid] == "pass", (rid, [r.message for r in verdict.rules if r.id == rid])
        assert verdict.lab["nodes"]["mn"]["stack"] == LABS[topology]["mn"][0]
    finally:
        lab.close()
        Lab.open("tbk").down()
