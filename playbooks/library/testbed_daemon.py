#!/usr/bin/python
"""Ansible module: testbed daemons on a host, started (in order, each ready before the next),
restarted or stopped.

Written for testbed because its daemons run in the foreground with a command line the lab
renders (named -f, dhcpd -f, radvd -n, dhcpcd -B, the Python agent and binding process), on
hosts with or without systemd (a container, a User-Mode Linux machine): the module starts the
argv in a session of its own with its output appended to a log, keeps its pid and its argv and
environment in ``run_dir``, restarts it when those change (or ``restart`` says a file it reads
did), and waits until the ``ready`` probe exits 0, failing with the log's tail when it never
does or the daemon exits. A second run with nothing changed reports changed=false. The process
primitives are ``testbed.host.daemonctl``'s (module_utils/testbed_daemonctl.py links it), which
starts a run's daemons over plain SSH the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testbed_daemonctl import read_pid, spawn, stop_session, tail, wait_ready

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


def converge(m: AnsibleModule, d: dict, state: str, restart: bool, sig: int, grace: float,
             run_dir: str) -> dict:
    """One daemon to ``state``; its result (``changed``, ``action``, ``pid``)."""
    pidfile = os.path.join(run_dir, f"{d['name']}.pid")
    specfile = os.path.join(run_dir, f"{d['name']}.spec")
    env = {k: str(v) for k, v in (d.get("env") or {}).items()}
    spec = hashlib.sha256(json.dumps([d.get("argv"), env], sort_keys=True).encode()).hexdigest()
    pid = read_pid(pidfile)
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
                stop_session(pid, sig, grace)
        return out
    if pid and not (state == "restarted" or restart or spec != old_spec):
        return out
    out |= {"changed": True, "action": "restarted" if pid else "started"}
    if m.check_mode:
        return out
    if pid:
        stop_session(pid, sig, grace)
    new = spawn(d["argv"], env, d["log"])
    with open(pidfile, "w") as f:
        f.write(f"{new}\n")
    with open(specfile, "w") as f:
        f.write(spec + "\n")
    out["pid"] = new
    if d.get("ready"):
        why = wait_ready(d["ready"], new, float(d.get("ready_timeout") or 30.0))
        if why:
            stop_session(new, grace=1.0)
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
