"""The testbed version deployed on each host against the controller's, before a run.

A host runs the package ``testbed deploy`` put there (its agent, binding process, traffic
apps); a controller whose package has changed since would render commands and judge records of
another version. One SSH command per host (in parallel) reads what the deploy recorded; a host
that differs fails the run before anything starts, named with both versions.
"""

from __future__ import annotations

import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from testbed.deploy import package
from testbed.deploy.clock import CONNECT_TIMEOUT, ssh_argv
from testbed.errors import TestbedError

SEPARATOR = "--testbed-init--"


class VersionError(TestbedError):
    """A host runs another testbed version than the controller, or none."""


def read(name: str, hv: dict[str, Any]) -> str:
    """The host's deployed version (``package.deployed_version``)."""
    cmd = (f"cat {shlex.quote(str(package.SOURCE_DIGEST))} 2>/dev/null; echo {SEPARATOR}; "
           f"cat {shlex.quote(str(package.SOURCE_INIT))} 2>/dev/null")
    try:
        cp = subprocess.run([*ssh_argv(name, hv), cmd], capture_output=True, text=True,
                            timeout=CONNECT_TIMEOUT + 10, check=False)
    except subprocess.TimeoutExpired as e:
        raise VersionError(f"{name}: reading its testbed version over SSH timed out") from e
    if cp.returncode != 0 or SEPARATOR not in cp.stdout:
        raise VersionError(f"{name}: reading its testbed version over SSH failed "
                           f"({' '.join(cp.stderr.split())[:300] or f'exit {cp.returncode}'})")
    digest, init_py = cp.stdout.split(SEPARATOR, 1)
    if not digest.strip():
        return "none"
    return package.deployed_version(digest, init_py)


def check_all(hosts: dict[str, dict[str, Any]], want: str, inventory: str) -> dict[str, str]:
    """Each host's version (in parallel); a host whose version is not ``want`` fails, named."""
    with ThreadPoolExecutor(max_workers=min(16, len(hosts)) or 1) as pool:
        futures = {n: pool.submit(read, n, hv) for n, hv in hosts.items()}
        found = {n: f.result() for n, f in futures.items()}
    for name, got in sorted(found.items()):
        if got != want:
            raise VersionError(f"{name}: deployed testbed {got}, the controller's {want}: deploy "
                               f"again (testbed deploy {inventory})")
    return found
