"""Host processes the lab started: is one alive, stop one (its process group) with a grace."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22): with its pid
    it names one process, whatever reuses the pid later."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs. Reaps it if it is our zombie child; a zombie re-parented to
    an init that reaps late (state Z) counts as gone."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_pid(pid: int, grace: float = 2.0) -> None:
    """TERM the process group led by ``pid`` (spawned in its own session), then KILL."""
    stop_pids([pid], grace)


def stop_pids(pids: list[int], grace: float = 2.0) -> None:
    """``stop_pid`` for several process groups at once: every one gets TERM, then the
    survivors KILL after one shared ``grace``, so stopping N daemons costs one grace, not N."""
    from testbed.host.poll import poll_until

    left = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(left):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                left.remove(pid)
        if not left or poll_until(lambda: not any(alive(p) for p in left), grace, interval=0.01):
            return


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def child_with_ns_pid(parent: int, ns_pid: int) -> int | None:
    """The host pid of ``parent``'s child whose pid in its own (innermost) pid namespace is
    ``ns_pid``: a container's process as the host names it. Equal on the host itself."""
    for task in Path(f"/proc/{parent}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            nspid = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), [])
            if nspid and int(nspid[-1]) == ns_pid:
                return child
    return None
