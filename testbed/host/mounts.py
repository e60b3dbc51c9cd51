"""Which mount holds a path: the longest mount point above it in a mount table."""

from __future__ import annotations

from pathlib import Path

SELF_MOUNTINFO = Path("/proc/self/mountinfo")


def mount_of(path: Path | str, mountinfo: Path = SELF_MOUNTINFO) -> tuple[str, str, set[str]]:
    """(mount point, filesystem type, mount options) holding ``path`` (already resolved) in the
    mount table ``mountinfo`` (/proc/PID/mountinfo: a process's own view); empty when unreadable."""
    best: tuple[str, str, set[str]] = ("", "", set())
    target = str(path)
    try:
        with open(mountinfo) as f:
            for line in f:
                left, right = line.split(" - ", 1)
                fields = left.split()
                mnt = fields[4]
                inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best[0]):
                    best = (mnt, right.split()[0], set(fields[5].split(",")))
    except (OSError, ValueError, IndexError):
        return ("", "", set())
    return best
