"""A daemon started, or stopped, on a deployed host in one process: ``python -m testbed.host.daemonctl``.

What the ``testbed_daemon`` module does for a deploy, for a run's processes (the traffic server
and client) that must start within a second or two: an Ansible module run costs 2-5 s on a
User-Mode Linux host (its Python and the module's payload unpacked under ptrace), a plain SSH
command about one. The run playbooks send these commands with ``ansible.builtin.raw``.

``start SPEC``: SPEC is the daemon as JSON (``name``, ``argv``, ``env``, ``log``, ``ready``,
``ready_timeout``, as ``testbed.deploy.render`` makes it); a running one of that name is
stopped first; the new one runs in a session of its own, its pid in ``RUN_DIR/<name>.pid``;
returns once ``ready`` exits 0, failing with the log's tail when it exits first or never does.
``stop NAME [--wait S] [--signal SIG] [--grace S]``: after up to ``--wait`` seconds for it to
end by itself, the signal to its session, SIGKILL after ``--grace``. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN_DIR = Path("/run/testbed")


# -- the process primitives, also the testbed_daemon module's (playbooks/module_utils links
# this file): standard library only, so a host without the package runs them
def alive(pid: int) -> bool:
    """Running, not a zombie (an exited child its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(pidfile: Path) -> int:
    """The live pid the file names, else 0."""
    try:
        pid = int(Path(pidfile).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid > 0 and alive(pid) else 0


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_session(pid: int, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """``sig`` to the session ``pid`` leads, SIGKILL after ``grace`` seconds."""
    for s, g in ((sig, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pid, s)
        except ProcessLookupError:
            return
        if wait_gone(pid, g):
            return


def tail(path: str | Path, lines: int = 6, skip: tuple[str, ...] = ()) -> str:
    """A log's last ``lines`` non-empty lines on one line; lines starting with one of ``skip``
    (a daemon's boilerplate) left out."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [ln for ln in text.splitlines() if ln.strip() and not (skip and ln.startswith(skip))]
    return " | ".join(kept[-lines:]) or "(empty log)"


def spawn(argv: list[str], env: dict[str, str], log: str) -> int:
    """``argv`` in a session of its own, its output appended to ``log``; its pid."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True, close_fds=True, cwd="/")
    return proc.pid


def wait_ready(probe: list[str], pid: int, timeout: float) -> str:
    """'' once ``probe`` exits 0; else why not (the daemon exited, or the time ran out), with
    the probe's last line of output when it said why it refused (an answer in another protocol
    version, say)."""
    deadline, delay = time.monotonic() + timeout, 0.02
    while True:
        cp = subprocess.run(probe, capture_output=True, text=True, check=False, timeout=max(1.0, timeout))
        if cp.returncode == 0:
            return ""
        said = (cp.stderr.strip().splitlines() or [""])[-1]
        if not alive(pid):
            return "exited during start-up"
        if time.monotonic() > deadline:
            return f"did not answer within {timeout:g} s" + (f" (ready probe: {said})" if said else "")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


# -- the command
def pid_of(name: str) -> int:
    return read_pid(RUN_DIR / f"{name}.pid")


def stop(name: str, wait: float = 0.0, sig: int = signal.SIGTERM, grace: float = 5.0) -> dict:
    pid = pid_of(name)
    if not pid:
        return {"name": name, "stopped": False}
    if wait_gone(pid, wait):
        return {"name": name, "stopped": False, "ended": True}
    stop_session(pid, sig, grace)
    return {"name": name, "stopped": True}


def start(spec: dict) -> dict:
    name, log = spec["name"], spec["log"]
    stop(name)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    pid = spawn(spec["argv"], {k: str(v) for k, v in (spec.get("env") or {}).items()}, log)
    (RUN_DIR / f"{name}.pid").write_text(f"{pid}\n")
    if spec.get("ready"):
        why = wait_ready(spec["ready"], pid, float(spec.get("ready_timeout") or 30.0))
        if why:
            stop_session(pid, grace=1.0)
            raise SystemExit(f"{name} {why}: {tail(log)}")
    return {"name": name, "pid": pid, "started": True}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.host.daemonctl", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("spec", help="the daemon as JSON")
    t = sub.add_parser("stop")
    t.add_argument("name")
    t.add_argument("--wait", type=float, default=0.0, help="seconds to let it end by itself first")
    t.add_argument("--signal", default="TERM")
    t.add_argument("--grace", type=float, default=5.0)
    a = p.parse_args(argv)
    if a.cmd == "start":
        out = start(json.loads(a.spec))
    else:
        out = stop(a.name, a.wait, getattr(signal, f"SIG{a.signal.upper().removeprefix('SIG')}"), a.grace)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
