#!/usr/bin/python3
"""Ansible module: one testbed daemon on a host, started, restarted or stopped, and ready.

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
short_description: run a testbed daemon (foreground process) with a pid file and a readiness probe
options:
  name: {type: str, required: true}
  argv: {type: list, elements: str}
  env: {type: dict, default: {}}
  log: {type: str}
  state: {type: str, choices: [started, stopped, restarted], default: started}
  restart: {type: bool, default: false, description: a file the daemon reads changed}
  ready: {type: list, elements: str, description: argv that exits 0 once the daemon answers}
  ready_timeout: {type: float, default: 30}
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


def main() -> None:
    m = AnsibleModule(argument_spec={
        "name": {"type": "str", "required": True},
        "argv": {"type": "list", "elements": "str"},
        "env": {"type": "dict", "default": {}},
        "log": {"type": "str"},
        "state": {"type": "str", "choices": ["started", "stopped", "restarted"], "default": "started"},
        "restart": {"type": "bool", "default": False},
        "ready": {"type": "list", "elements": "str"},
        "ready_timeout": {"type": "float", "default": 30.0},
        "run_dir": {"type": "str", "default": "/run/testbed"},
        "stop_signal": {"type": "str", "default": "TERM"},
        "stop_grace": {"type": "float", "default": 5.0},
    }, supports_check_mode=True, required_if=[("state", "started", ["argv", "log"]),
                                              ("state", "restarted", ["argv", "log"])])
    p = m.params
    os.makedirs(p["run_dir"], exist_ok=True)
    pidfile = os.path.join(p["run_dir"], f"{p['name']}.pid")
    specfile = os.path.join(p["run_dir"], f"{p['name']}.spec")
    env = {k: str(v) for k, v in (p["env"] or {}).items()}
    spec = hashlib.sha256(json.dumps([p["argv"], env], sort_keys=True).encode()).hexdigest()
    pid = running(pidfile)
    try:
        with open(specfile) as f:
            old_spec = f.read().strip()
    except OSError:
        old_spec = ""
    result = {"changed": False, "name": p["name"], "pid": pid}
    sig = getattr(signal, f"SIG{p['stop_signal'].upper().removeprefix('SIG')}")
    if p["state"] == "stopped":
        if pid:
            result["changed"] = True
            if not m.check_mode:
                stop(pid, p["stop_grace"], sig)
        m.exit_json(**result)
    restart = pid and (p["state"] == "restarted" or p["restart"] or spec != old_spec)
    if pid and not restart:
        m.exit_json(**result)
    result["changed"] = True
    result["action"] = "restarted" if pid else "started"
    if m.check_mode:
        m.exit_json(**result)
    if pid:
        stop(pid, p["stop_grace"], sig)
    new = start(p["argv"], env, p["log"])
    with open(pidfile, "w") as f:
        f.write(f"{new}\n")
    with open(specfile, "w") as f:
        f.write(spec + "\n")
    result["pid"] = new
    if p["ready"]:
        why = wait_ready(p["ready"], new, p["ready_timeout"])
        if why:
            stop(new, grace=1.0)
            m.fail_json(msg=f"{p['name']} {why}: {tail(p['log'])}", **result)
    m.exit_json(**result)


if __name__ == "__main__":
    main()
