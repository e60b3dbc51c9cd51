"""Removing a lab: exactly what its state records, or, without a state, what carries its label.

``clean`` is for labs whose builder crashed (or was killed): it tears down every lab whose
state says it failed or is half-built with a dead owner, or whose namespaces are gone, and
sweeps labelled namespaces of this run root that no readable state file accounts for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from testbed import backends
from testbed.errors import LabStateError
from testbed.host import netns
from testbed.host.procs import alive, start_time, stop_pids
from testbed.progress import Progress, quiet
from testbed.state import LabState, known_labs, lab_dir, lab_of_label, lock_file, locked, run_root

RESOLVER_MARK = "# testbed lab "


def teardown_state(state: LabState, progress: Progress = quiet) -> None:
    """Remove what ``state`` records: daemons, kernel nodes, nodes and links, resolver dirs,
    the run dir."""
    progress("stopping services")
    # a process in a node's own kernel ends with that kernel; the rest stop in two waves, each
    # in parallel: the mobile node's first, while named still answers (its agent withdraws the
    # MN's name on TERM: a few ms when it has a route, so a short grace; a detached MN's
    # retries are cut there), then the infrastructure's
    host = [r for r in state.service_records() if not r.guest]
    mobile = state.topology.get("mobile", {}).get("node", "mn")
    stop_pids([r.pid for r in host if r.node == mobile], grace=0.5)
    stop_pids([r.pid for r in host if r.node != mobile], grace=1.0)
    backends.get(state.backend).teardown(state, progress)  # kernel nodes run in the namespaces
    for rec in state.kernel_nodes:
        sock_dir = Path(rec.get("sock_dir") or state.dir)
        if not sock_dir.is_relative_to(state.dir):  # a short socket dir outside the run dir
            shutil.rmtree(sock_dir, ignore_errors=True)
    for d in state.etc_netns:
        p = Path(d)
        if p.parent == netns.NETNS_ETC_DIR:
            shutil.rmtree(p, ignore_errors=True)
    shutil.rmtree(state.dir, ignore_errors=True)
    lock_file(state.lab).unlink(missing_ok=True)  # a command waiting on it then finds no lab


def sweep(lab: str, progress: Progress = quiet) -> list[str]:
    """Without a state file: labelled namespaces of ``lab`` (every backend's), their resolver
    dirs (recognised by the lab's mark), and the run dir."""
    progress(f"sweeping {lab}")
    gone: list[str] = []
    for name in backends.BACKENDS:
        gone += backends.get(name).sweep(lab)
    for d in netns.NETNS_ETC_DIR.glob(f"{lab}-*") if netns.NETNS_ETC_DIR.is_dir() else []:
        conf = d / "resolv.conf"
        if conf.exists() and conf.read_text().startswith(f"{RESOLVER_MARK}{lab}\n"):
            shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(lab_dir(lab), ignore_errors=True)
    lock_file(lab).unlink(missing_ok=True)
    return gone


def labelled_labs() -> set[str]:
    """Labs of this run root that own at least one namespace (by label)."""
    labs = set()
    for ns in netns.list_names():
        lab = lab_of_label(netns.label_of(ns))
        if lab is not None and ns.startswith(f"{lab}-"):
            labs.add(lab)
    return labs


def clean(progress: Progress = quiet, force: bool = False) -> list[str]:
    """Tear down every crashed or broken lab (every lab with ``force``); returns their names."""
    removed = []
    root = run_root()
    # a lab's run dir; hidden entries belong to other users of the run root (an engine's state)
    run_dirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} \
        if root.is_dir() else set()
    candidates = set(known_labs()) | labelled_labs() | run_dirs
    for name in backends.BACKENDS:  # e.g. containers whose run dir a reboot emptied
        candidates |= backends.get(name).labs()
    for lab in sorted(candidates):
        with locked(lab):
            try:
                st = LabState.load(lab)
            except LabStateError:
                sweep(lab, progress)
                removed.append(lab)
                continue
            if st.status == "up" and not force and not _broken(st):
                continue
            if st.owner_pid and alive(st.owner_pid) and st.status == "building":
                continue  # being built right now by a live process
            teardown_state(st, progress)
            removed.append(lab)
    return removed


def teardown_leftover(name: str) -> bool:
    """The lab ``name`` as a crashed run left it, torn down before the name is used again."""
    if not LabState.exists(name):
        return False
    teardown_state(LabState.load(name))
    return True


def holder_tag(kind: str) -> str:
    """``KIND:PID:START``: what a lab built by this process records as its holder (a test
    session's kind names its lab prefix); ``clean_held`` tells from it whether that holder
    still runs."""
    return f"{kind}:{os.getpid()}:{start_time(os.getpid())}"


def _holder_gone(tag: str) -> bool:
    parts = tag.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not a holder_tag: nothing tells whether it runs
    pid = int(parts[1])
    return not alive(pid) or str(start_time(pid)) != parts[2]


def clean_held(kind: str, progress: Progress = quiet) -> list[str]:
    """Tear down every lab that a holder of ``kind`` (e.g. an earlier test session of the same
    lab prefix) built and left behind when it was killed: its holder no longer runs. Labs of a
    holder that still runs (a session side by side) are left alone."""
    removed = []
    for lab in known_labs():
        with locked(lab):
            try:
                st = LabState.load(lab)
            except LabStateError:
                continue
            if not st.holder.startswith(f"{kind}:") or not _holder_gone(st.holder):
                continue
            if st.owner_pid and alive(st.owner_pid):
                continue  # being built right now
            teardown_state(st, progress)
            removed.append(lab)
    return removed


def _broken(st: LabState) -> bool:
    return any(not netns.exists(ns) for ns in st.netns)
