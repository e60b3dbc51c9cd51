"""Host-side supervisor of one User-Mode Linux node: UML's parent and the relay of its agent.

Why a process of its own. The guest agent speaks over one UML console channel (one end of a
socketpair, handed to UML as ``con1=fd:3``), yet several host processes use a node at once (the
lab, a scenario runner, ``testbed exec`` from another shell). The relay serves a Unix socket,
gives every request a relay-wide id and routes the reply back under the client's own id, so
clients neither see nor disturb each other. It holds requests until the agent announces itself
(``{"event": "ready"}``), so a client waits for the boot by sending ``ping``: no polling.

Being UML's parent (and a child subreaper, so UML's per-process host stubs come back to it if
UML dies first), it learns of UML's exit at once through a pidfd, answers the pending requests
with the reason, writes the exit record with the console tail, kills and reaps whatever is
left, and removes the node's host files (agent socket, UML's umid dir, the memory file's
directory). On SIGTERM (``testbed down``, or the lab killing every process in the node's
netns) it lets UML clean up first (SIGTERM), then SIGKILLs UML's process group.

Ops for the relay itself: ``relay`` (its state: UML's pid, clients, the agent's hello) and
``hostlink`` (the host-side end of one of the node's links up/down, by ioctl in the node's netns).

Standard library only (and ``ifflags``), one thread: it runs as ``python -S`` next to UML.
Started as ``python -S -m testbed.runtimes.uml_relay --config FILE --listen SOCKET --ready FIFO``.
It binds the socket itself, so it may be started through any runtime (``ip netns exec``, a
container's exec) with no descriptor handed over; once the socket listens it writes one line
to the FIFO, which the caller opened for reading before starting it: the caller waits on that
(or on this process's exit), not on the socket's file appearing. The config is JSON:
``{"argv": [...], "env": {...}, "console": path, "exit_file": path, "remove": [paths],
"links": [host-side ifnames]}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbed.runtimes import ifflags

CHANNEL_FD = 3  # UML reads and writes the agent's console channel on this fd (``con1=fd:3``)
TERM_GRACE = 2.0  # seconds UML gets to exit after SIGTERM before its process group is killed
TAIL_LINES = 40
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Conn:
    """One non-blocking stream socket with line framing and an output buffer."""

    sock: socket.socket
    inbuf: bytes = b""
    outbuf: bytearray = field(default_factory=bytearray)

    def lines(self, data: bytes) -> list[bytes]:
        self.inbuf += data
        *done, self.inbuf = self.inbuf.split(b"\n")
        return [ln for ln in done if ln.strip()]


def console_tail(path: str, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of the console log (UML's stdout and stderr)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def describe_status(status: int) -> dict[str, Any]:
    """A waitpid status as the exit record states it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"returncode": -sig, "signal": signal.Signals(sig).name}
    return {"returncode": os.WEXITSTATUS(status), "signal": None}


class Multiplexer:
    """Request-id rewriting between many clients and one agent channel (no I/O of its own).

    ``local`` answers ops addressed to the relay itself by name (an exception is the error)."""

    def __init__(self, local: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None) -> None:
        self._ids = itertools.count(1)
        self.local = local or {}
        self.pending: dict[int, tuple[Any, Any]] = {}  # relay id -> (client key, client's id)
        self.held: list[tuple[int, bytes]] = []  # requests that came before the agent was ready
        self.ready = False
        self.hello: dict[str, Any] = {}

    def from_client(self, client: Any, line: bytes) -> tuple[bytes | None, bytes | None]:
        """(line for the agent or None, immediate reply for the client or None)."""
        try:
            msg = json.loads(line)
        except ValueError:
            return None, _line({"id": None, "ok": False, "error": "relay: not a JSON line"})
        if not isinstance(msg, dict) or "op" not in msg:
            return None, _line({"id": msg.get("id") if isinstance(msg, dict) else None, "ok": False,
                                "error": "relay: no op in request"})
        if msg["op"] in self.local:
            try:
                return None, _line({"id": msg.get("id"), "ok": True, **self.local[msg["op"]](msg)})
            except Exception as e:  # noqa: BLE001 - goes back to the client
                return None, _line({"id": msg.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}"})
        rid = next(self._ids)
        self.pending[rid] = (client, msg.get("id"))
        out = _line({**msg, "id": rid})
        if not self.ready:
            self.held.append((rid, out))
            return None, None
        return out, None

    def from_agent(self, line: bytes) -> tuple[Any, bytes | None, list[bytes]]:
        """(client key, reply line for it, held requests now due for the agent)."""
        try:
            msg = json.loads(line)
        except ValueError:
            return None, None, []  # not the agent's (kernel noise on a cooked tty)
        if not isinstance(msg, dict):
            return None, None, []
        if msg.get("event") == "ready":
            self.ready, self.hello = True, msg
            due = [line for rid, line in self.held if rid in self.pending]
            self.held = []
            return None, None, due
        if not self.ready or "ok" not in msg or not isinstance(msg.get("id"), int):
            return None, None, []  # before "ready" the tty may echo requests: never a reply
        target = self.pending.pop(msg["id"], None)
        if target is None:
            return None, None, []  # its client left, or not a reply
        client, cid = target
        return client, _line({**msg, "id": cid}), []

    def drop_client(self, client: Any) -> None:
        """Forget a gone client's requests: late replies to them are dropped."""
        self.pending = {k: v for k, v in self.pending.items() if v[0] is not client}

    def fail_all(self, error: str) -> list[tuple[Any, bytes]]:
        """Error replies for every pending request (the agent will not answer any more)."""
        out = [(c, _line({"id": cid, "ok": False, "error": error})) for c, cid in self.pending.values()]
        self.pending.clear()
        self.held.clear()
        self.ready = False
        return out


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj) + "\n").encode()


class Relay:
    """The event loop: listener, clients, the agent channel, UML's pidfd and signals."""

    def __init__(self, cfg: dict[str, Any], listener: socket.socket) -> None:
        self.cfg = cfg
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.mux = Multiplexer({"relay": self._info, "hostlink": self._hostlink})
        self.clients: dict[socket.socket, Conn] = {}
        self.chan: Conn | None = None
        self.uml_pid = 0
        self.pidfd = -1
        self.status: int | None = None
        self.term_at: float | None = None
        self.sig_r, self.sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ---- set-up ----------------------------------------------------------------------------
    def start(self) -> None:
        # signals first: a SIGTERM from now on ends UML too, never the relay alone
        signal.set_wakeup_fd(self.sig_w)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, lambda *_: None)  # the wakeup fd carries it to the loop
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a panicking UML aborts: no core files
        _set_subreaper()
        ours, theirs = socket.socketpair()
        fd = theirs.detach()
        if fd == CHANNEL_FD:  # dup2 onto itself would keep close-on-exec
            fd, old = os.dup(fd), fd
            os.close(old)
        log = os.open(self.cfg["console"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
            (os.POSIX_SPAWN_DUP2, fd, CHANNEL_FD),
        ]
        env = {**os.environ, **self.cfg.get("env", {})}
        argv = self.cfg["argv"]
        try:
            self.uml_pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
        finally:
            os.close(fd)
            os.close(log)
        self.pidfd = os.pidfd_open(self.uml_pid)
        ours.setblocking(False)
        self.chan = Conn(ours)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(ours, selectors.EVENT_READ, "chan")
        self.sel.register(self.pidfd, selectors.EVENT_READ, "exit")
        self.sel.register(self.sig_r, selectors.EVENT_READ, "signal")
        print(f"relay: UML pid {self.uml_pid}", file=sys.stderr, flush=True)

    # ---- loop ------------------------------------------------------------------------------
    def run(self) -> int:
        while self.status is None:
            timeout = None if self.term_at is None else max(0.0, self.term_at - time.monotonic())
            for key, events in self.sel.select(timeout):
                what = key.data
                if what == "listen":
                    self._accept()
                elif what == "chan":
                    self._chan_event(events)
                elif what == "exit":
                    _, status = os.waitpid(self.uml_pid, 0)
                    self.status = status
                elif what == "signal":
                    self._signalled()
                else:
                    self._client_event(key.fileobj, events)  # type: ignore[arg-type]
            if self.term_at is not None and self.status is None and time.monotonic() >= self.term_at:
                _killpg(self.uml_pid, signal.SIGKILL)
                self.term_at = None
        return self._finish()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self.clients[sock] = Conn(sock)
        self.sel.register(sock, selectors.EVENT_READ, "client")

    def _client_event(self, sock: socket.socket, events: int) -> None:
        conn = self.clients.get(sock)
        if conn is None:
            return
        if events & selectors.EVENT_WRITE:
            self._flush(conn)
        if events & selectors.EVENT_READ:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(sock)
                return
            for line in conn.lines(data):
                to_agent, reply = self.mux.from_client(sock, line)
                if reply is not None:
                    self._send(conn, reply)
                if to_agent is not None and self.chan is not None:
                    self._send(self.chan, to_agent)

    def _hostlink(self, msg: dict[str, Any]) -> dict[str, Any]:
        """The host-side end of one of the node's links up or down: the relay runs in the
        node's netns, so two ioctls here replace an ``ip -n`` process start."""
        if msg.get("ifname") not in self.cfg.get("links", []):
            raise ValueError(f"{msg.get('ifname')!r} is not one of the node's links")
        return {"was_up": ifflags.set_admin(msg["ifname"], bool(msg["up"]))}

    def _info(self, msg: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"uml_pid": self.uml_pid, "relay_pid": os.getpid(), "clients": len(self.clients),
                "ready": self.mux.ready, "hello": self.mux.hello}

    def _chan_event(self, events: int) -> None:
        chan = self.chan
        assert chan is not None
        if events & selectors.EVENT_WRITE:
            self._flush(chan)
        if not events & selectors.EVENT_READ:
            return
        try:
            data = chan.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # UML closed the console channel: the guest is going down
            self.sel.unregister(chan.sock)
            chan.sock.close()
            self.chan = None
            self._fail_pending("guest agent channel closed (the guest is shutting down)")
            return
        for line in chan.lines(data):
            client, reply, due = self.mux.from_agent(line)
            for held in due:
                self._send(chan, held)
            conn = self.clients.get(client) if client is not None else None
            if conn is not None and reply is not None:
                self._send(conn, reply)

    def _signalled(self) -> None:
        try:
            os.read(self.sig_r, 64)
        except BlockingIOError:
            pass
        if self.term_at is None and self.status is None:
            _kill(self.uml_pid, signal.SIGTERM)  # UML's own handler kills its stubs and exits
            self.term_at = time.monotonic() + TERM_GRACE

    # ---- output ----------------------------------------------------------------------------
    def _send(self, conn: Conn, data: bytes) -> None:
        conn.outbuf += data
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                conn.outbuf.clear()
                if conn is not self.chan:
                    self._drop(conn.sock)
                return
            del conn.outbuf[:n]
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        try:
            self.sel.modify(conn.sock, want, self.sel.get_key(conn.sock).data)
        except (KeyError, ValueError):
            pass

    def _drop(self, sock: socket.socket) -> None:
        self.clients.pop(sock, None)
        self.mux.drop_client(sock)
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _fail_pending(self, error: str) -> None:
        for client, reply in self.mux.fail_all(error):
            conn = self.clients.get(client)
            if conn is not None:
                self._send(conn, reply)

    # ---- the end ---------------------------------------------------------------------------
    def _finish(self) -> int:
        assert self.status is not None
        desc = describe_status(self.status)
        tail = console_tail(self.cfg["console"])
        record = {"uml_pid": self.uml_pid, **desc, "t": time.time(), "console_tail": tail}
        _write_json(self.cfg["exit_file"], record)  # before clients see EOF: they read it next
        how = f"signal {desc['signal']}" if desc["signal"] else f"status {desc['returncode']}"
        self._fail_pending(f"UML exited ({how}) before answering; console: {' | '.join(tail[-3:])}")
        for conn in list(self.clients.values()):
            conn.sock.setblocking(True)
            conn.sock.settimeout(1.0)
            try:
                conn.sock.sendall(conn.outbuf)
            except OSError:
                pass
            self._drop(conn.sock)
        _killpg(self.uml_pid, signal.SIGKILL)  # host stubs of guest processes, if UML left any
        _reap_children()
        for path in self.cfg.get("remove", []):
            _remove(path)
        print(f"relay: UML {how}", file=sys.stderr, flush=True)
        return 0


def _set_subreaper() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_children() -> None:
    """Every child left (orphaned UML stubs re-parented here), each SIGKILLed and waited for."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:  # a live child that is not in UML's process group
            for child in _children(os.getpid()):
                _kill(child, signal.SIGKILL)
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return


def _children(ppid: int) -> list[int]:
    try:
        with open(f"/proc/{ppid}/task/{ppid}/children") as f:
            text = f.read()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _write_json(path: str, obj: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def listen(path: str) -> socket.socket:
    """The clients' socket, bound here (a stale one from a killed run is replaced)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock.bind(path)
    sock.listen(64)
    return sock


def announce(fifo: str) -> None:
    """One line to the caller's FIFO: the socket listens. A caller that stopped reading (it gave
    up) leaves no reader: nothing to tell."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"listening\n")
    except OSError:
        pass
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--listen", required=True, help="the Unix socket to serve clients on")
    ap.add_argument("--ready", help="a FIFO to write one line to once the socket listens")
    args = ap.parse_args(argv)
    with open(args.config) as f:
        cfg = json.load(f)
    try:
        listener = listen(args.listen)
        if args.ready:
            announce(args.ready)
        relay = Relay(cfg, listener)
        relay.start()
    except OSError as e:
        _write_json(cfg["exit_file"], {"uml_pid": 0, "returncode": None, "signal": None, "t": time.time(),
                                       "console_tail": [f"relay: cannot start UML: {e}"]})
        for path in cfg.get("remove", []):
            _remove(path)
        print(f"relay: cannot start UML: {e}", file=sys.stderr)
        return 1
    return relay.run()


if __name__ == "__main__":
    sys.exit(main())
