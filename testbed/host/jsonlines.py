"""JSON lines, the one format the lab's processes share: logs appended and tailed, and one
request/one reply over a Unix socket (``request``, and ``CommandServer`` on the other end).
Standard library only: guest agents import it too."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str) + "\n"


def append(path: str | os.PathLike[str], *records: dict[str, Any], stamp: bool = False) -> None:
    """Append records (one ``write``: lines from concurrent writers do not interleave).
    ``stamp`` adds ``wall`` and ``mono`` times where a record has none."""
    if stamp:
        now_wall, now_mono = time.time(), time.monotonic()
        for r in records:
            r.setdefault("wall", now_wall)
            r.setdefault("mono", now_mono)
    with open(path, "a") as f:
        f.write("".join(dumps(r) for r in records))


def write(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    Path(path).write_text("".join(dumps(r) for r in records))


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete record; a torn last line (a writer mid-append) is left for later."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in text.splitlines(keepends=True) if x.endswith("\n") and x.strip()]


class Tail:
    """The records appended to a file since this object was made (or last read)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # complete lines only
        self.offset += end
        return [json.loads(x) for x in data[:end].splitlines() if x.strip()]


class RequestError(OSError):
    """The socket was absent, refused, timed out, or closed without a reply."""


def request(path: str | os.PathLike[str], msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one JSON line to a Unix socket and return its one-line JSON reply."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(dumps(msg).encode())
            line = s.makefile("rb").readline()
    except OSError as e:
        raise RequestError(f"{path}: {e}") from e
    if not line:
        raise RequestError(f"{path}: closed without a reply")
    return json.loads(line)


class CommandServer:
    """Unix-socket JSON-lines server in front of a handler, served from a daemon thread."""

    def __init__(self, path: Path, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.path = path
        self.handler = handler
        path.unlink(missing_ok=True)
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(str(path))
        self.lsock.listen(8)
        self.thread = threading.Thread(target=self._serve, name="driver-cmd", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                try:
                    cmd = json.loads(line)
                    reply = self.handler(cmd) if isinstance(cmd, dict) else {"ok": False}
                except ValueError as e:
                    reply = {"ok": False, "error": f"bad JSON: {e}"}
                f.write(dumps(reply).encode())
                f.flush()

    def close(self) -> None:
        self.lsock.close()
        self.path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m testbed.host.jsonlines request SOCKET JSON [--timeout S]``: one request, its
    reply on stdout; exit 0 when the reply says ``ok`` (how a deployed host's playbooks talk to
    the mobility agent and the traffic client). ``since --wall T FILE…``: one JSON object on
    stdout, each file's name -> its records stamped ``wall`` >= T (a run's share of logs that
    grow across runs, fetched in one round trip)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m testbed.host.jsonlines")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("request")
    r.add_argument("socket")
    r.add_argument("message", help="a JSON object")
    r.add_argument("--timeout", type=float, default=10.0)
    s = sub.add_parser("since")
    s.add_argument("--wall", type=float, required=True)
    s.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    if a.cmd == "since":
        out = {Path(f).name: [rec for rec in read(f) if isinstance(rec.get("wall"), int | float)
                              and rec["wall"] >= a.wall] for f in a.files}
        sys.stdout.write(dumps(out))
        return 0
    try:
        reply = request(a.socket, json.loads(a.message), a.timeout)
    except RequestError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 1
    sys.stdout.write(dumps(reply))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
