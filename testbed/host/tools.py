"""The host's programs: where one is, or the Debian package that gives it."""

from __future__ import annotations

import shutil

from testbed.errors import MissingDependency

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def require(binary: str, package: str) -> str:
    """The path of ``binary`` in the system's directories; MissingDependency naming ``package``
    (the fix) when it is not installed."""
    path = shutil.which(binary, path=SYSTEM_PATH)
    if not path:
        raise MissingDependency(binary, package)
    return path
