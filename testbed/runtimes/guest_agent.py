"""Guest agent: runs inside a kernel node (started by its init) and executes host requests.

Wire protocol, one JSON object per line, both directions, over a virtio-serial port (QEMU) or a
console tty (User-Mode Linux, ``--tty``)::

    -> {"id": 7, "op": "run", "argv": [...], "run_timeout": 30}
    <- {"id": 7, "ok": true, "rc": 0, "stdout": "...", "stderr": "..."}

Ops: ping, run, spawn, kill, wait, read, write, unix (relay), settime, stepclock, link,
shutdown.
Requests that may block (run, spawn, wait, unix, link) run in threads of their own, so a long
``run`` does not hold up a ``kill``; the short ones (``INLINE_OPS``) are answered at once.
Errors come back as ``{"ok": false, "error": ...}``. On a tty the agent first announces itself
with ``{"event": "ready", ...}`` (the host side holds requests until then, so nothing is sent
while the line is still in cooked mode, where it would be echoed). The agent exits after
``shutdown`` or when its channel hangs up; the init then powers the guest off.
Only the standard library is used: the agent starts before anything else in the guest. Its
start is on every boot's path, so it imports little (no argparse, typing or platform).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_procs: dict[int, subprocess.Popen[bytes]] = {}
_procs_lock = threading.Lock()


def op_ping(req: dict[str, Any]) -> dict[str, Any]:
    """``t`` is the guest's wall clock, for the host to measure the offset between the two."""
    import time

    u = os.uname()
    return {"release": u.release, "hostname": u.nodename, "t": time.time()}


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
    """Output to ``log``; standard error with it, or to ``err_log`` when the request names one."""
    with open(req["log"], "ab") as log, open(req.get("err_log") or os.devnull, "ab") as err:
        p = subprocess.Popen(
            req["argv"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=err if req.get("err_log") else subprocess.STDOUT,
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


def timex_type() -> type:
    """``struct timex`` (linux/timex.h, LP64 layout) for clock_adjtime; built on first use so
    the agent's start does not import ctypes."""
    import ctypes

    long, int_ = ctypes.c_long, ctypes.c_int

    class Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("offset", long), ("freq", long), ("maxerror", long),
                    ("esterror", long), ("status", int_), ("constant", long), ("precision", long),
                    ("tolerance", long), ("tv_sec", long), ("tv_usec", long), ("tick", long),
                    ("ppsfreq", long), ("jitter", long), ("shift", int_), ("stabil", long),
                    ("jitcnt", long), ("calcnt", long), ("errcnt", long), ("stbcnt", long), ("tai", int_),
                    ("_reserved", int_ * 11)]

    return Timex


def split_ns(delta: float) -> tuple[int, int]:
    """Seconds and nanoseconds as ADJ_SETOFFSET|ADJ_NANO wants them: 0 <= ns < 1e9, so a
    negative offset has negative seconds (-6.6 ms is -1 s + 993.4e6 ns)."""
    ns = round(delta * 1e9)
    return ns // 1_000_000_000, ns % 1_000_000_000


def op_stepclock(req: dict[str, Any]) -> dict[str, Any]:
    """Step the guest's wall clock by ``delta`` seconds, atomically in the kernel
    (clock_adjtime ADJ_SETOFFSET). Relative, so the request's transit time does not enter (it
    does for ``settime``); atomic, so a preemption between reading and setting the clock (long
    under a loaded UML host) cannot make the value set stale."""
    import ctypes

    adj_setoffset, adj_nano, clock_realtime = 0x0100, 0x2000, 0
    sec, nsec = split_ns(float(req["delta"]))
    tx = timex_type()(modes=adj_setoffset | adj_nano, tv_sec=sec, tv_usec=nsec)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.clock_adjtime(clock_realtime, ctypes.byref(tx)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return {}


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


def op_link(req: dict[str, Any]) -> dict[str, Any]:
    """Set a guest interface administratively up or down (``ifflags``: ioctls, no ``ip``)."""
    from testbed.runtimes import ifflags

    return {"was_up": ifflags.set_admin(req["ifname"], bool(req["up"]), bool(req.get("cycle")))}


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
    "stepclock": op_stepclock,
    "link": op_link,
}


# Answered in the reader thread: short and never blocking. A thread start is several system
# calls, each a ptrace round trip under UML; inline, a ping's round trip (the clock-offset
# measurement) is shorter and steadier.
INLINE_OPS = frozenset({"ping", "read", "write", "kill", "settime", "stepclock"})


class GuestAgent:
    """Reads requests from the port, answers each from a worker thread."""

    def __init__(self, port: str, tty: bool = False) -> None:
        self.tty = tty
        self.fd = os.open(port, os.O_RDWR | (os.O_NOCTTY if tty else 0))
        if tty:  # raw: no echo, no line editing, no CR/LF translation, no flow-control bytes
            import termios
            import tty as ttymod

            ttymod.setraw(self.fd)
            termios.tcflush(self.fd, termios.TCIFLUSH)  # whatever arrived while it was cooked
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

    def read_loop(self) -> None:
        buf = b""
        while not self.done.is_set():
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the tty was hung up
                chunk = b""
            if not chunk:
                if self.tty:  # the host end of the console channel is gone for good
                    self.done.set()
                    return
                threading.Event().wait(0.05)  # virtio-serial reads 0 while the host is away
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    req = json.loads(line)
                except ValueError:
                    continue
                if req.get("op") in INLINE_OPS:
                    self.handle(req)
                else:
                    threading.Thread(target=self.handle, args=(req,), daemon=True).start()

    def serve(self) -> None:
        """Until ``shutdown`` or hang-up; reading happens in a thread so that either ends it."""
        if self.tty:
            self.send({"event": "ready", **op_ping({})})
        threading.Thread(target=self.read_loop, name="agent-reader", daemon=True).start()
        self.done.wait()


USAGE = "usage: guest_agent --port DEVICE [--tty]  (a virtio-serial port, or a console tty: raw mode, hello)"


def parse_args(argv: list[str]) -> tuple[str, bool]:
    """``--port DEVICE [--tty]`` (by hand: argparse alone costs tens of ms at every boot)."""
    port, tty, rest = "", False, list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--port" and rest:
            port = rest.pop(0)
        elif arg.startswith("--port="):
            port = arg.split("=", 1)[1]
        elif arg == "--tty":
            tty = True
        else:
            raise SystemExit(f"{USAGE}\nunknown argument {arg!r}")
    if not port:
        raise SystemExit(USAGE)
    return port, tty


def main() -> None:
    port, tty = parse_args(sys.argv[1:])
    GuestAgent(port, tty=tty).serve()


if __name__ == "__main__":
    main()
