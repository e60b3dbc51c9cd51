"""Debian package versions: what a run used (verdict.json's ``lab.packages``).

Set-up records what it installed in /var/lib/testbed/packages.txt, beside the lab state
(scripts/setup-system.sh writes it in ``QUERY_FORMAT``); a run asks again, as packages may
have changed since.

A run's daemons come from the Debian packages of whatever root runs them: the host's for a
namespace lab or a lab machine (it boots on the host's root), a role image's for a container
lab. ``dpkg-query`` asked in that root says which.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Sequence

# the packages whose versions a verdict names: the daemons, the kernels under test, the capture
VERDICT_PACKAGES = ("bind9", "isc-dhcp-server", "dhcpcd-base", "radvd", "user-mode-linux",
                    "qemu-system-x86", "tcpdump", "libusrsctp2")
QUERY_FORMAT = "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"

Run = Callable[[Sequence[str]], str]  # argv -> stdout, in the root to ask


def query_argv(names: Iterable[str]) -> list[str]:
    return ["dpkg-query", "-W", "-f", QUERY_FORMAT, *names]


def parse(text: str) -> dict[str, str]:
    """package -> version of the installed ones in ``dpkg-query -f QUERY_FORMAT`` output
    (a package known but removed reads as absent)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].startswith("ii") and parts[1]:
            out[parts[0]] = parts[1]
    return out


def host_run(argv: Sequence[str]) -> str:
    """dpkg-query in this host's root; a package it does not know makes it exit 1 but still
    print the others."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def installed(names: Iterable[str], run: Run = host_run) -> dict[str, str]:
    return parse(run(query_argv(names)))
