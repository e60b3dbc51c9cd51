"""Host ends of a VM's two control sockets: the guest agent (virtio-serial) and QEMU's QMP.

Both are JSON over a unix socket that QEMU listens on. QMP is hand-rolled: the three messages we
need (greeting, qmp_capabilities, one command) do not justify the async ``qemu.qmp`` package.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from testbed.errors import TestbedError


class AgentError(TestbedError):
    """The guest agent did not answer or reported a failure."""


class GuestAgentClient:
    """Request/response over the agent socket; replies are matched by id (stale ones dropped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self._ids = itertools.count(1)
        self._wlock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._waiting: set[int] = set()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name=f"agent:{path}", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # console noise can never reach this port, but be lenient
                with self._cond:
                    if msg.get("id") in self._waiting:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()

    def request(self, op: str, *, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raise AgentError on failure or timeout."""
        rid = next(self._ids)
        with self._cond:
            self._waiting.add(rid)
        data = (json.dumps({"id": rid, "op": op, **args}) + "\n").encode()
        try:
            with self._wlock:
                try:
                    self.sock.sendall(data)
                except OSError as e:
                    raise AgentError(f"guest agent at {self.path}: {e}") from e
            deadline = time.monotonic() + timeout
            with self._cond:
                while rid not in self._replies:
                    left = deadline - time.monotonic()
                    if self._closed:
                        raise AgentError(f"guest agent at {self.path} closed the connection ({op})")
                    if left <= 0:
                        raise AgentError(f"guest agent at {self.path}: no answer to {op} in {timeout:g} s")
                    self._cond.wait(left)
                reply = self._replies.pop(rid)
        finally:
            with self._cond:
                self._waiting.discard(rid)
        if not reply.get("ok"):
            raise AgentError(f"guest agent: {op} failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Qmp:
    """One-shot QMP commands (a new connection per command: QMP is rarely used here)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def execute(self, command: str, timeout: float = 5.0, **arguments: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.path))
            f = s.makefile("rwb")
            _qmp_read(f)  # greeting
            for cmd, args in (("qmp_capabilities", {}), (command, arguments)):
                msg: dict[str, Any] = {"execute": cmd}
                if args:
                    msg["arguments"] = args
                f.write((json.dumps(msg) + "\n").encode())
                f.flush()
                reply = _qmp_read(f)
                if "error" in reply:
                    raise TestbedError(f"QMP {cmd} failed: {reply['error'].get('desc')}")
            return reply.get("return")


def _qmp_read(f: Any) -> dict[str, Any]:
    """Next non-event message."""
    while True:
        line = f.readline()
        if not line:
            raise TestbedError("QMP connection closed")
        msg = json.loads(line)
        if "event" not in msg:
            return msg
