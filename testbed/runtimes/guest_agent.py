"""Guest agent: runs inside a VM (started by the initramfs init) and executes host requests.

Wire protocol, one JSON object per line over a virtio-serial port, both directions::

    -> {"id": 7, "op": "run", "argv": [...], "run_timeout": 30}
    <- {"id": 7, "ok": true, "rc": 0, "stdout": "...", "stderr": "..."}

Ops: ping, run, spawn, kill, wait, read, write, unix (relay), settime, shutdown.
Each request runs in its own thread so a long ``run`` does not hold up a ``kill``.
Errors come back as ``{"ok": false, "error": ...}``.
Only the standard library is used: the agent starts before anything else in the guest.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import subprocess
import threading
from typing import Any

_procs: dict[int, subprocess.Popen[bytes]] = {}
_procs_lock = threading.Lock()


def op_ping(req: dict[str, Any]) -> dict[str, Any]:
    return {"release": platform.release(), "hostname": platform.node()}


def op_run(req: dict[str, Any]) -> dict[str, Any]:
    try:
        cp = subprocess.run(
            req["argv"],
            capture_output=True,
            timeout=req.get("run_timeout", 30.0),
            input=(req.get("input") or "").encode(),
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        return {"rc": -1, "timeout": True, "stdout": _text(e.stdout), "stderr": _text(e.stderr)}
    except FileNotFoundError as e:
        return {"rc": 127, "stdout": "", "stderr": str(e)}
    return {"rc": cp.returncode, "stdout": _text(cp.stdout), "stderr": _text(cp.stderr)}


def _text(b: bytes | None) -> str:
    return (b or b"").decode(errors="replace")


def op_spawn(req: dict[str, Any]) -> dict[str, Any]:
    with open(req["log"], "ab") as log:
        p = subprocess.Popen(
            req["argv"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **req.get("env", {})},
        )
    with _procs_lock:
        _procs[p.pid] = p
    return {"pid": p.pid}


def op_kill(req: dict[str, Any]) -> dict[str, Any]:
    try:
        os.kill(req["pid"], req.get("sig", signal.SIGTERM))
    except ProcessLookupError:
        return {"alive": False}
    return {"alive": True}


def op_wait(req: dict[str, Any]) -> dict[str, Any]:
    """Wait up to ``wait_s`` seconds for a spawned process; ``rc`` is None while it still runs."""
    with _procs_lock:
        p = _procs.get(req["pid"])
    if p is None:
        return {"rc": None, "known": False}
    try:
        rc = p.wait(timeout=req["wait_s"]) if req.get("wait_s") else p.poll()
    except subprocess.TimeoutExpired:
        rc = None
    if rc is not None:
        with _procs_lock:
            _procs.pop(req["pid"], None)
    return {"rc": rc, "known": True}


def op_settime(req: dict[str, Any]) -> dict[str, Any]:
    """Step the guest clock to the host's (the RTC gives it whole seconds only at boot)."""
    import time

    before = time.time()
    time.clock_settime(time.CLOCK_REALTIME, req["t"])
    return {"offset": before - req["t"]}


def op_read(req: dict[str, Any]) -> dict[str, Any]:
    with open(req["path"], "rb") as f:
        data = f.read(req.get("max", 1 << 20))
    return {"data": base64.b64encode(data).decode()}


def op_write(req: dict[str, Any]) -> dict[str, Any]:
    with open(req["path"], "w") as f:  # /proc/sys files want one write
        f.write(req["data"])
    return {}


def op_unix(req: dict[str, Any]) -> dict[str, Any]:
    """Relay one JSON line to a unix socket in the guest (e.g. the traffic client's driver
    channel) and return its one-line JSON reply: saves a ~1 s python start under TCG."""
    from testbed.host import jsonlines

    return {"reply": jsonlines.request(req["path"], req["msg"], req.get("wait_s", 10.0))}


OPS = {
    "ping": op_ping,
    "run": op_run,
    "spawn": op_spawn,
    "kill": op_kill,
    "wait": op_wait,
    "read": op_read,
    "write": op_write,
    "unix": op_unix,
    "settime": op_settime,
}


class GuestAgent:
    """Reads requests from the port, answers each from a worker thread."""

    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR)
        self.wlock = threading.Lock()
        self.done = threading.Event()

    def send(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj) + "\n").encode()
        with self.wlock:
            while data:
                data = data[os.write(self.fd, data) :]

    def handle(self, req: dict[str, Any]) -> None:
        rid = req.get("id")
        try:
            if req.get("op") == "shutdown":
                self.send({"id": rid, "ok": True})
                self.done.set()
                return
            result = OPS[req["op"]](req)
            self.send({"id": rid, "ok": True, **result})
        except Exception as e:  # noqa: BLE001 - every failure goes back to the host
            self.send({"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"})

    def serve(self) -> None:
        buf = b""
        while not self.done.is_set():
            chunk = os.read(self.fd, 65536)
            if not chunk:  # host side not connected: virtio-serial reads return 0 then
                threading.Event().wait(0.05)
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    req = json.loads(line)
                except ValueError:
                    continue
                threading.Thread(target=self.handle, args=(req,), daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", required=True, help="virtio-serial device, e.g. /dev/vport1p1")
    args = ap.parse_args()
    GuestAgent(args.port).serve()


if __name__ == "__main__":
    main()
