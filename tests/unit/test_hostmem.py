"""Host memory accounting: process trees, address-space grouping, unlinked memory files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testbed.runtimes import hostmem


def test_tree_of_a_child_process_and_its_memory(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = hostmem.descendants(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        assert hostmem.descendants(child.pid) == [child.pid]
        groups = hostmem.address_spaces([os.getpid(), child.pid, os.getpid()])
        assert groups == [[os.getpid(), os.getpid()], [child.pid]]  # same mm once, others apart
        m = hostmem.node_memory(child.pid)
        assert m.processes == 1 and m.pss_kib > 1000 and m.memfile_kib == 0
    finally:
        child.kill()
        child.wait()
    assert hostmem.descendants(child.pid) == []


def test_unlinked_memory_file_counted_once_by_allocation(tmp_path: Path) -> None:
    f = tmp_path / "vm_file"
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o600)
    fd2 = os.dup(fd)  # two descriptors of one file: counted once
    try:
        os.ftruncate(fd, 64 << 20)  # sparse: only written pages are allocated
        os.pwrite(fd, b"x" * (1 << 20), 0)
        f.unlink()
        got = hostmem.memfiles([os.getpid()], tmp_path)
        assert (1 << 20) <= got < (2 << 20)
        assert hostmem.memfiles([os.getpid()], tmp_path / "elsewhere") == 0
    finally:
        os.close(fd)
        os.close(fd2)


def test_total_leaves_out_the_mapped_file_once() -> None:
    m = hostmem.NodeMemory(processes=4, pss_kib=68000, pss_shmem_kib=49000, memfile_kib=50000)
    assert m.total_kib == 69000
    assert m.to_dict()["total_kib"] == 69000
