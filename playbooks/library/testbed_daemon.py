#!/usr/bin/python
"""Ansible module: testbed daemons on a host, started (in order, each ready before the next),
restarted or stopped.

Written for testbed because its daemons run in the foreground with a command line the lab
renders (named -f, dhcpd -f, radvd -n, dhcpcd -B, the Python agent and binding process), on
hosts with or without systemd (a container, a User-Mode Linux machine): the module starts the
argv in a session of its own with its output appended to a log, keeps its pid and its argv and
environment in ``run_dir``, restarts it when those change (or ``restart`` says a file it reads
did), and waits until the ``ready`` probe exits 0, failing with the log's tail when it never
does or the daemon exits. A second run with nothing changed reports changed=false.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: testbed_daemon
short_description: run testbed daemons (foreground processes) with pid files and readiness probes
options:
  daemons: {type: list, elements: dict, required: true, description: "each: name, argv, env, log,
    ready (argv that exits 0 once the daemon answers), ready_timeout"}
  state: {type: str, choices: [started, stopped, restarted], default: started}
  restart: {type: list, elements: str, default: [], description: daemons a file of which changed}
  run_dir: {type: str, default: /run/testbed}
  stop_signal: {type: str, default: TERM, description: e.g. INT for tcpdump (flushes its file)}
  stop_grace: {type: float, default: 5}
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def running(pidfile: str) -> int:
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid > 0 and alive(pid) else 0


def stop(pid: int, grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def tail(path: str, lines: int = 6) -> str:
    try:
        with open(path, errors="replace") as f:
            kept = [ln for ln in f.read().splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(kept[-lines:]) or "(empty log)"


def start(argv: list[str], env: dict[str, str], log: str) -> int:
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True, close_fds=True, cwd="/")
    return proc.pid


def wait_ready(probe: list[str], pid: int, timeout: float) -> str:
    """'' once the probe exits 0; else why not."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        cp = subprocess.run(probe, capture_output=True, timeout=max(1.0, timeout), check=False)
        if cp.returncode == 0:
            return ""
        if not alive(pid):
            return "exited during start-up"
        if time.monotonic() > deadline:
            return f"did not answer within {timeout:g} s"
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def converge(m: AnsibleModule, d: dict, state: str, restart: bool, sig: int, grace: float,
             run_dir: str) -> dict:
    """One daemon to ``state``; its result (``changed``, ``action``, ``pid``)."""
    pidfile = os.path.join(run_dir, f"{d['name']}.pid")
    specfile = os.path.join(run_dir, f"{d['name']}.spec")
    env = {k: str(v) for k, v in (d.get("env") or {}).items()}
    spec = hashlib.sha256(json.dumps([d.get("argv"), env], sort_keys=True).encode()).hexdigest()
    pid = running(pidfile)
    try:
        with open(specfile) as f:
            old_spec = f.read().strip()
    except OSError:
        old_spec = ""
    out = {"name": d["name"], "changed": False, "pid": pid}
    if state == "stopped":
        if pid:
            out |= {"changed": True, "action": "stopped"}
            if not m.check_mode:
                stop(pid, grace, sig)
        return out
    if pid and not (state == "restarted" or restart or spec != old_spec):
        return out
    out |= {"changed": True, "action": "restarted" if pid else "started"}
    if m.check_mode:
        return out
    if pid:
        stop(pid, grace, sig)
    new = start(d["argv"], env, d["log"])
    with open(pidfile, "w") as f:
        f.write(f"{new}\n")
    with open(specfile, "w") as f:
        f.write(spec + "\n")
    out["pid"] = new
    if d.get("ready"):
        why = wait_ready(d["ready"], new, float(d.get("ready_timeout") or 30.0))
        if why:
            stop(new, grace=1.0)
            m.fail_json(msg=f"{d['name']} {why}: {tail(d['log'])}", daemon=out)
    return out


def main() -> None:
    m = AnsibleModule(argument_spec={
        "daemons": {"type": "list", "elements": "dict", "required": True},
        "state": {"type": "str", "choices": ["started", "stopped", "restarted"], "default": "started"},
        "restart": {"type": "list", "elements": "str", "default": []},
        "run_dir": {"type": "str", "default": "/run/testbed"},
        "stop_signal": {"type": "str", "default": "TERM"},
        "stop_grace": {"type": "float", "default": 5.0},
    }, supports_check_mode=True)
    p = m.params
    os.makedirs(p["run_dir"], exist_ok=True)
    sig = getattr(signal, f"SIG{p['stop_signal'].upper().removeprefix('SIG')}")
    results = [converge(m, d, p["state"], d["name"] in p["restart"], sig, p["stop_grace"], p["run_dir"])
               for d in p["daemons"]]
    m.exit_json(changed=any(r["changed"] for r in results), daemons=results)


if __name__ == "__main__":
    main()
