"""Lab backends: how a lab's nodes and links are made (``base.LabBackend``).

``mininet`` makes each node a named network namespace, ``docker`` a container whose
namespace is pinned by the same name. Backends are classes registered by
name; the lab records the name in its state so later commands find the same backend.
"""

from __future__ import annotations

from collections.abc import Callable

from testbed.backends.base import LabBackend
from testbed.errors import ConfigError


def _mininet() -> LabBackend:
    from testbed.backends.mininet import MininetBackend

    return MininetBackend()


def _docker() -> LabBackend:
    from testbed.backends.docker import DockerBackend

    return DockerBackend()


BACKENDS: dict[str, Callable[[], LabBackend]] = {"mininet": _mininet, "docker": _docker}


def get(name: str) -> LabBackend:
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ConfigError("backend", name, "unknown backend", f"one of {', '.join(BACKENDS)}") from None
