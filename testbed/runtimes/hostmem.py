"""What a node costs the host in memory: PSS of its host processes plus its guest-RAM file.

PSS (proportional set size) splits each shared page among the processes mapping it, so the sum
over a node's processes charges shared libraries fairly when many nodes run. Two corrections:

* UML's helper processes are clones sharing the kernel process's address space (CLONE_VM
  without CLONE_THREAD): each reports that same space's PSS. Processes are grouped by address
  space (``kcmp(KCMP_VM)``) and every space is counted once.
* A UML guest's RAM is an unlinked file on tmpfs (its "memory file"), mapped shared by the UML
  kernel process and by every per-process stub. Pages of it that are mapped appear in PSS as
  ``Pss_Shmem``; pages the guest touched but nobody maps now are only in the file. The total
  therefore takes PSS without ``Pss_Shmem`` and adds the file's allocated size once.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

KCMP_VM = 1
_KCMP_NR = {"x86_64": 312, "aarch64": 272}


@dataclass(frozen=True)
class NodeMemory:
    """Host memory of one node, KiB."""

    processes: int  # host processes counted (after merging shared address spaces)
    pss_kib: int  # summed PSS, including the mapped part of the memory file
    pss_shmem_kib: int  # the shmem part of that PSS (the mapped memory file)
    memfile_kib: int  # allocated size of the guest-RAM file(s)

    @property
    def total_kib(self) -> int:
        """PSS without its shmem part, plus the memory file counted once by its size."""
        return self.pss_kib - self.pss_shmem_kib + self.memfile_kib

    def to_dict(self) -> dict[str, int]:
        return {"processes": self.processes, "pss_kib": self.pss_kib, "pss_shmem_kib": self.pss_shmem_kib,
                "memfile_kib": self.memfile_kib, "total_kib": self.total_kib}


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (by parent pid, from /proc)."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parent[int(entry.name)] = ppid
    if root not in parent:
        return []
    out, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        out += frontier
    return out


def rollup(pid: int) -> dict[str, int]:
    """The KiB fields of /proc/PID/smaps_rollup (empty when the process is gone)."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return fields


def _same_vm() -> Callable[[int, int], bool] | None:
    """kcmp(2) KCMP_VM through libc's syscall(): Python has no binding for it."""
    nr = _KCMP_NR.get(platform.machine())
    if nr is None:
        return None
    syscall = ctypes.CDLL(None, use_errno=True).syscall

    def same_vm(a: int, b: int) -> bool:
        return int(syscall(nr, a, b, KCMP_VM, 0, 0)) == 0

    return same_vm


def address_spaces(pids: Iterable[int]) -> list[list[int]]:
    """``pids`` grouped by shared address space (one group per mm)."""
    same = _same_vm()
    groups: list[list[int]] = []
    for pid in pids:
        for g in groups:
            if same is not None and same(g[0], pid):
                g.append(pid)
                break
        else:
            groups.append([pid])
    return groups


def memfiles(pids: Iterable[int], directory: Path) -> int:
    """Allocated bytes of the distinct files under ``directory`` that ``pids`` hold open
    (unlinked ones included: /proc/PID/fd/N still reaches their inode).

    ``directory`` is a path as those processes see it, symlinks resolved: the kernel names an
    open file by its path in the holder's mount namespace (a container's own, for instance),
    and /proc/PID/fd/N is stat'ed through that same namespace."""
    prefix = str(directory) + "/"
    seen: dict[tuple[int, int], int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            link = f"/proc/{pid}/fd/{fd}"
            try:
                if not os.readlink(link).startswith(prefix):
                    continue
                st = os.stat(link)
            except OSError:
                continue
            seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


def node_memory(root: int, memory_dir: Path | None = None) -> NodeMemory:
    """Memory of the process tree under ``root`` (a node's supervisor, by host pid), and of
    the memory file(s) it holds under ``memory_dir`` (as that tree sees it, see ``memfiles``)."""
    pids = descendants(root)
    pss = shmem = 0
    groups = address_spaces(pids)
    for g in groups:
        r = rollup(g[0])
        pss += r.get("Pss", 0)
        shmem += r.get("Pss_Shmem", 0)
    mem = memfiles(pids, memory_dir) // 1024 if memory_dir is not None else 0
    return NodeMemory(len(groups), pss, shmem, mem)
