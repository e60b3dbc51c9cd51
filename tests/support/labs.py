"""A real lab for the length of a block: up (after the prerequisite check) and down again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from testbed.lab import Lab


@contextmanager
def lab_up(topology: str, name: str) -> Iterator[Lab]:
    from testbed.pytest_plugin import require_lab_prerequisites

    require_lab_prerequisites()
    lab = Lab.up(topology, name)
    try:
        yield lab
    finally:
        lab.close()
        Lab.open(name).down()
