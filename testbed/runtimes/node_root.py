"""The filesystem a kernel node's supervisor and guest run in, and how the host reaches it.

A User-Mode Linux node's guest mounts its supervisor's ``/`` over hostfs, so the guest runs
whatever that root holds: on a namespace node the host's own root (this checkout, this venv),
in a container the image's (its venv, its copy of the package, its UML build). Paths handed to
the guest (interpreter, PYTHONPATH, init script, kernel, memory-file directory) are paths in
that root; the host reads and writes the same files through ``/proc/<pid>/root`` of a process
living there, and reads its mount table from ``/proc/<pid>/mountinfo``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from testbed.host import mounts

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_INIT_SCRIPT = REPO_ROOT / "images" / "uml-init.sh"


@dataclass(frozen=True)
class NodeRoot:
    """Where a kernel node's supervisor runs: paths inside that root, and the host's view of it."""

    python: str = sys.executable  # interpreter with the testbed package's dependencies
    package_root: Path = REPO_ROOT  # PYTHONPATH: the directory holding ``testbed/``
    init_script: Path = HOST_INIT_SCRIPT  # images/uml-init.sh as this root holds it
    # exec-able tmpfs for the guest's memory file; None: pick one (state dir, /dev/shm)
    mem_parent: Path | None = None
    pid: int = 0  # a process whose root and mounts these are; 0: this process's own

    @property
    def is_host(self) -> bool:
        return self.pid == 0

    @property
    def mountinfo(self) -> Path:
        return Path("/proc/self/mountinfo" if self.is_host else f"/proc/{self.pid}/mountinfo")

    def host_path(self, path: Path | str) -> Path:
        """``path`` (absolute, in this root) as the host reaches it."""
        p = Path(path)
        return p if self.is_host else Path(f"/proc/{self.pid}/root") / p.relative_to("/")

    def real(self, path: Path | str) -> Path:
        """``path`` with symlinks resolved where the host can do that faithfully (its own root;
        a container's absolute symlinks would resolve against the host's root)."""
        return Path(path).resolve() if self.is_host else Path(os.path.normpath(path))

    def mount_of(self, path: Path | str) -> tuple[str, str, set[str]]:
        """(mount point, filesystem type, mount options) holding ``path`` in this root: the
        longest mount-point prefix in the root's own mount table."""
        return mounts.mount_of(self.real(path), self.mountinfo)

    def free_mb(self, path: Path | str) -> int:
        st = os.statvfs(self.host_path(path))
        return st.f_bavail * st.f_frsize // (1 << 20)
