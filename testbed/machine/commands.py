"""The CLI's side of lab machines: ``up``/``run`` with ``--machine uml``, and every later
command on such a lab run inside its machine (found from the host state, no flag needed)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.errors import LabStateError, TestbedError
from testbed.lab import teardown_state
from testbed.machine.uml import LabMachine, refuse_unservable
from testbed.model import loader
from testbed.progress import Progress, quiet
from testbed.runtimes.uml_boot import GUEST_TMPFS
from testbed.state import LabState, lab_dir, locked

INSIDE = "TESTBED_MACHINE"  # set for commands run inside a machine: they act there, not forward


def inside_machine() -> bool:
    return bool(os.environ.get(INSIDE))


def machine_of(lab: str) -> LabMachine | None:
    """The machine a lab runs in, when it runs in one (and this process is on the host)."""
    if inside_machine() or not LabState.exists(lab):
        return None
    st = LabState.load(lab)
    return LabMachine(st) if st.machine == "uml" else None


def visible_path(machine: LabMachine, path: Path) -> str:
    """A host path as the machine can read it: the root is the host's, except its own tmpfs
    directories, whose host contents are shared in at the same path."""
    path = path.resolve()
    if any(path.is_relative_to(t) for t in GUEST_TMPFS):
        machine.share(path.parent if path.is_file() else path)
    return str(path)


def boot(lab: str, topology: Path, progress: Progress = quiet, needs: Sequence[str] = ()) -> LabMachine:
    """Host state (``machine: uml``) and a booted machine for ``lab``; refuses what it cannot
    serve before anything exists; on failure removes what it made."""
    topo = loader.load(topology)
    refuse_unservable(topo, str(topology), needs)
    with locked(lab):
        if LabState.exists(lab):
            raise LabStateError(f"lab {lab!r} already exists ({lab_dir(lab)}); `testbed down` first")
        state = LabState(lab, str(topology.resolve()), topo.model_dump(mode="json"), owner_pid=os.getpid(),
                         machine="uml")
        state.save()
        m = LabMachine(state)
        try:
            m.boot(progress)
        except BaseException:
            teardown_state(state)
            raise
    return m


def finish(machine: LabMachine, ok: bool) -> None:
    """After the command that builds the inner lab: the host state says up, or all goes."""
    st = machine.state
    if ok:
        st.status, st.owner_pid = "up", 0
        st.save()
        machine.node and machine.node.close()
    else:
        with locked(st.lab):
            teardown_state(st)


def down(machine: LabMachine, forward: Callable[[Sequence[str]], int]) -> int:
    """``down`` inside (the inner lab stops its daemons cleanly), then the machine goes."""
    rc = forward(["down"])
    with locked(machine.state.lab):
        try:
            machine.shutdown()
        except TestbedError:
            pass  # the namespace removal below ends it either way
        teardown_state(machine.state)
    return rc
