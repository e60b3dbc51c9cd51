"""The guest agent on a console tty (as in a UML guest), driven through a pty from the test."""

from __future__ import annotations

import json
import os
import pty
import select
import threading

import pytest

from testbed.runtimes import guest_agent


def _read_line(fd: int, timeout: float = 10.0) -> dict:
    buf = b""
    while b"\n" not in buf:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no line from the agent in {timeout} s (got {buf!r})"
        buf += os.read(fd, 65536)
    line, rest = buf.split(b"\n", 1)
    assert rest == b"", f"more than one line: {buf!r}"
    return json.loads(line)


def _until_ready(fd: int) -> tuple[list[bytes], dict]:
    """Lines before the hello (a cooked tty's echo, which the relay ignores) and the hello."""
    buf, before = b"", []
    while True:
        ready, _, _ = select.select([fd], [], [], 10)
        assert ready, f"no hello from the agent (got {buf!r})"
        buf += os.read(fd, 65536)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg.get("event") == "ready":
                assert buf == b""
                return before, msg
            before.append(line)


def test_parse_args() -> None:
    assert guest_agent.parse_args(["--port", "/dev/tty1", "--tty"]) == ("/dev/tty1", True)
    assert guest_agent.parse_args(["--port=/dev/vport1p1"]) == ("/dev/vport1p1", False)
    with pytest.raises(SystemExit):
        guest_agent.parse_args(["--tty"])
    with pytest.raises(SystemExit):
        guest_agent.parse_args(["--port", "x", "--nope"])


def test_tty_agent_announces_itself_answers_without_echo_and_ends_on_hangup() -> None:
    master, slave = pty.openpty()
    os.write(master, b'{"id": 99, "op": "ping"}\n')  # typed while the line is still cooked
    agent = guest_agent.GuestAgent(os.ttyname(slave), tty=True)
    os.close(slave)
    served = threading.Thread(target=agent.serve, daemon=True)
    served.start()
    try:
        before, hello = _until_ready(master)
        # typed while cooked: echoed (with CR) if the line discipline got to it before the flush,
        # else flushed; either way never answered (the relay ignores all before the hello)
        assert before in ([], [b'{"id": 99, "op": "ping"}\r'])
        assert hello["release"] == os.uname().release and "t" in hello
        os.write(master, b'{"id": 1, "op": "run", "argv": ["echo", "hi"]}\n')
        reply = _read_line(master)  # raw now: exactly one line, no echo, no CR, not id 99
        assert reply == {"id": 1, "ok": True, "rc": 0, "stdout": "hi\n", "stderr": ""}
        os.write(master, b'{"id": 2, "op": "read", "path": "/nonexistent"}\n')
        err = _read_line(master)
        assert err["id"] == 2 and err["ok"] is False and "FileNotFoundError" in err["error"]
    finally:
        os.close(master)  # hang-up: the agent's reads fail and it ends
    served.join(10)
    assert not served.is_alive()


def test_shutdown_ends_serve() -> None:
    master, slave = pty.openpty()
    agent = guest_agent.GuestAgent(os.ttyname(slave), tty=True)
    os.close(slave)
    served = threading.Thread(target=agent.serve, daemon=True)
    served.start()
    try:
        _until_ready(master)
        os.write(master, b'{"id": 7, "op": "shutdown"}\n')
        assert _read_line(master) == {"id": 7, "ok": True}
        served.join(10)
        assert not served.is_alive()
    finally:
        os.close(master)


def test_clock_step_arguments() -> None:
    """The step itself changes the clock (never in a test): its struct and offset encoding."""
    import ctypes

    assert ctypes.sizeof(guest_agent.timex_type()) == 208  # sizeof(struct timex) on LP64
    assert guest_agent.split_ns(0.25) == (0, 250_000_000)
    assert guest_agent.split_ns(-0.0066) == (-1, 993_400_000)
    assert guest_agent.split_ns(-2.5) == (-3, 500_000_000)
