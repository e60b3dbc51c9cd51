"""Running the playbooks through ansible-runner's Python API, with progress and a summary.

Each run gets a private data directory under the caller's output directory (the runner's
``artifacts/``: stdout, every event as JSON, the play recap), so a deploy's or a scenario's
results sit beside the Ansible record that made them. Progress is one line per host and task as
the events come (``Progress``). ``summary.json`` gives per host ``ok``, ``changed``, ``failed``,
``unreachable`` and ``skipped`` counts and the first error, for scripts; the exit status of
``testbed deploy`` is non-zero when any host failed or was unreachable.

Nothing waits without a bound: SSH connects time out (ansible.cfg ``timeout``, no retries), and
the whole run has ``timeout`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.errors import MissingDependency, TestbedError
from testbed.host.tools import require

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
RUN_TIMEOUT = 1800  # seconds, a whole playbook run
# SSH masters shared by the runs of one inventory (a scenario's runs reuse its connections);
# a directory per inventory, so two labs with the same addresses never share one
CONTROL_DIR = Path("/run/testbed-ansible")


class DeployError(TestbedError):
    """A playbook run failed on some host; the message names each host and its error."""


@dataclass
class HostResult:
    """A host's play recap (``ok`` counts the changed tasks too, as Ansible's does)."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    error: str = ""  # the first failure or unreachable message

    @property
    def good(self) -> bool:
        return not self.failed and not self.unreachable


@dataclass
class PlaybookResult:
    playbook: str
    status: str  # ansible-runner's: successful | failed | timeout | canceled
    rc: int
    seconds: float
    hosts: dict[str, HostResult] = field(default_factory=dict)
    artifacts: str = ""
    # host -> the stdout of its tasks named "result: ..." (what an action playbook reports)
    outputs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful" and all(h.good for h in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    def errors(self) -> list[str]:
        return [f"{name}: {'unreachable' if h.unreachable else 'failed'}: {h.error}"
                for name, h in sorted(self.hosts.items()) if not h.good]

    def to_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "status": self.status, "rc": self.rc, "ok": self.ok,
                "seconds": round(self.seconds, 2), "changed": self.changed, "artifacts": self.artifacts,
                "hosts": {n: asdict(h) for n, h in sorted(self.hosts.items())}}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def _message(res: dict[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("stdout") or ""
    if isinstance(msg, list):
        msg = " ".join(map(str, msg))
    return " ".join(str(msg).split())[:400]


class Events:
    """Turns the runner's events into progress lines and per-host counts of failures."""

    def __init__(self, hosts: list[str], progress: Callable[[str], None]) -> None:
        self.hosts = {h: HostResult() for h in hosts}
        self.progress = progress
        self.task = ""
        self.outputs: dict[str, list[str]] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            self.task = data.get("task", "")
        host = data.get("host")
        if host and kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            res = data.get("res") or {}
            r = self.hosts.setdefault(host, HostResult())
            if kind == "runner_on_ok":
                state = "changed" if res.get("changed") else "ok"
                if self.task.startswith("result:"):
                    self.outputs.setdefault(host, []).append(str(res.get("stdout", "")))
            elif kind == "runner_on_unreachable":
                state = "unreachable"
                r.unreachable += 1  # the play recap's counts replace these at the end
                r.error = r.error or _message(res)
            elif data.get("ignore_errors"):
                state = "failed (ignored)"
            else:
                state = "failed"
                r.failed += 1
                r.error = r.error or f"{self.task}: {_message(res)}"
            self.progress(f"{host}: {self.task}: {state}")
        return True


def run_playbook(playbook: str, inventory: Path, out: Path, *, extravars: dict[str, Any] | None = None,
                 limit: str | None = None, progress: Callable[[str], None] = lambda _: None,
                 timeout: int = RUN_TIMEOUT, hosts: list[str] | None = None) -> PlaybookResult:
    """Run ``playbooks/<playbook>`` on ``inventory``; the runner's files go to ``out``."""
    try:
        import ansible_runner
    except ImportError as e:
        raise MissingDependency("python module ansible_runner", "pip: ansible-runner (make setup)") from e
    binary = Path(sys.executable).parent / "ansible-playbook"
    if not binary.exists():
        raise MissingDependency(str(binary), "pip: ansible-core (make setup)")
    require("ssh", "openssh-client")  # Ansible's connection to every host
    out.mkdir(parents=True, exist_ok=True)
    control = CONTROL_DIR / hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:12]
    control.mkdir(parents=True, exist_ok=True, mode=0o700)
    events = Events(hosts or [], progress)
    import time

    t0 = time.monotonic()
    r = ansible_runner.run(
        private_data_dir=str(out), project_dir=str(PLAYBOOKS), playbook=playbook,
        inventory=str(inventory.resolve()), extravars=extravars or {}, limit=limit, quiet=True,
        event_handler=events, timeout=timeout, suppress_env_files=True,
        envvars={"PATH": f"{binary.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                 "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
                 "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
                 "ANSIBLE_LOCAL_TEMP": str(out / "tmp")},
    )
    seconds = time.monotonic() - t0
    stats = r.stats or {}
    for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"),
                      ("dark", "unreachable"), ("skipped", "skipped")):
        for host, n in (stats.get(key) or {}).items():
            setattr(events.hosts.setdefault(host, HostResult()), attr, int(n))
    result = PlaybookResult(playbook, str(r.status), int(r.rc if r.rc is not None else -1), seconds,
                            events.hosts, str(Path(r.config.artifact_dir)), events.outputs)
    if result.status != "successful" and not result.errors():
        tail = _stdout_tail(Path(r.config.artifact_dir))
        result.hosts.setdefault("(controller)", HostResult(failed=1, error=f"ansible-playbook "
                                                          f"{result.status} (rc {result.rc}): {tail}"))
    return result


def _stdout_tail(artifacts: Path) -> str:
    try:
        lines = [ln for ln in (artifacts / "stdout").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    return " | ".join(lines[-4:])[:600]
