"""The UML relay: id rewriting and multiplexing (pure), and the process itself around a stand-in
for UML that speaks the agent's side of the console channel on fd 3 (no root, no kernel)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from testbed.runtimes import uml_relay
from testbed.runtimes.channels import AgentError, GuestAgentClient
from testbed.runtimes.node_root import NodeRoot
from testbed.runtimes.uml import _wait_exit
from testbed.runtimes.uml_boot import relay_argv, relay_env
from testbed.runtimes.uml_relay import Multiplexer


def _j(line: bytes | None) -> dict[str, Any]:
    assert line is not None
    return json.loads(line)


# ---- Multiplexer ------------------------------------------------------------------------------
def test_ids_are_rewritten_and_replies_routed_to_their_client() -> None:
    mux = Multiplexer()
    mux.from_agent(b'{"event": "ready", "release": "r"}')
    a_out, _ = mux.from_client("A", b'{"id": 1, "op": "ping"}')
    b_out, _ = mux.from_client("B", b'{"id": 1, "op": "run", "argv": ["x"]}')
    ra, rb = _j(a_out)["id"], _j(b_out)["id"]
    assert ra != rb and _j(b_out)["argv"] == ["x"]
    client, reply, _ = mux.from_agent(json.dumps({"id": rb, "ok": True, "rc": 0}).encode())
    assert client == "B" and _j(reply) == {"id": 1, "ok": True, "rc": 0}
    client, reply, _ = mux.from_agent(json.dumps({"id": ra, "ok": True}).encode())
    assert client == "A" and _j(reply)["id"] == 1
    assert mux.from_agent(json.dumps({"id": ra, "ok": True}).encode())[0] is None  # answered once


def test_requests_wait_for_the_agent_to_announce_itself() -> None:
    mux = Multiplexer()
    out, reply = mux.from_client("A", b'{"id": 5, "op": "ping"}')
    assert out is None and reply is None
    mux.from_client("B", b'{"id": 6, "op": "ping"}')
    mux.drop_client("B")  # gone before the agent came up: its request is not sent
    assert mux.from_agent(b'{"id": 1, "op": "ping"}') == (None, None, [])  # an echo, not a reply
    assert mux.from_agent(b"login: garbage") == (None, None, [])
    _, _, due = mux.from_agent(b'{"event": "ready", "release": "6.1"}')
    assert [_j(d)["op"] for d in due] == ["ping"] and mux.ready and mux.hello["release"] == "6.1"


def test_gone_client_replies_are_dropped_and_failures_reach_everyone() -> None:
    mux = Multiplexer()
    mux.from_agent(b'{"event": "ready"}')
    a, _ = mux.from_client("A", b'{"id": 1, "op": "wait"}')
    mux.from_client("B", b'{"id": 2, "op": "wait"}')
    mux.drop_client("A")
    assert mux.from_agent(json.dumps({"id": _j(a)["id"], "ok": True}).encode())[0] is None
    failed = mux.fail_all("UML exited")
    assert [(c, _j(r)) for c, r in failed] == [("B", {"id": 2, "ok": False, "error": "UML exited"})]
    assert not mux.ready and not mux.pending


def test_bad_requests_and_local_ops() -> None:
    def fails(msg: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no such link")

    mux = Multiplexer({"relay": lambda msg: {"uml_pid": 42}, "hostlink": fails})
    assert _j(mux.from_client("A", b"not json")[1])["ok"] is False
    assert _j(mux.from_client("A", b'{"id": 3}')[1]) == {
        "id": 3, "ok": False, "error": "relay: no op in request"}
    assert _j(mux.from_client("A", b'{"id": 4, "op": "relay"}')[1]) == {"id": 4, "ok": True, "uml_pid": 42}
    assert _j(mux.from_client("A", b'{"id": 5, "op": "hostlink"}')[1]) == {
        "id": 5, "ok": False, "error": "ValueError: no such link"}
    assert not mux.pending  # local ops never reach the agent


def test_describe_status() -> None:
    assert uml_relay.describe_status(0) == {"returncode": 0, "signal": None}
    assert uml_relay.describe_status(signal.SIGKILL) == {"returncode": -9, "signal": "SIGKILL"}


# ---- the relay process ------------------------------------------------------------------------
FAKE_UML = textwrap.dedent('''
    """Stands in for UML: fd 3 is the agent channel; prints like a console on stdout."""
    import json, os, signal, sys, time
    print("fake kernel booting", flush=True)
    child = os.fork()
    if child == 0:  # a guest process's host stub: same process group, outlives nothing
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
        os._exit(0)
    open(sys.argv[1], "w").write(str(child))
    def say(obj): os.write(3, (json.dumps(obj) + "\\n").encode())
    os.write(3, b"early noise\\n")
    say({"event": "ready", "release": "fake"})
    buf = b""
    while True:
        chunk = os.read(3, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            req = json.loads(line)
            if req["op"] == "exit":
                print("fake kernel: power down", flush=True)
                os._exit(req.get("code", 0))
            if req["op"] == "hold":
                continue  # never answered
            say({"id": req["id"], "ok": True, "op": req["op"], "arg": req.get("arg")})
''')


class RelayProc:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        fake = tmp / "fake_uml.py"
        fake.write_text(FAKE_UML)
        self.child_file = tmp / "child.pid"
        self.sock = tmp / "agent.sock"
        self.memdir = tmp / "mem"
        self.memdir.mkdir()
        self.exit_file = tmp / "exit.json"
        cfg = {"argv": [sys.executable, "-S", str(fake), str(self.child_file)],
               "env": {"TMPDIR": str(self.memdir)}, "console": str(tmp / "console.log"),
               "exit_file": str(self.exit_file),
               "remove": [str(self.sock), str(self.memdir)]}
        (tmp / "relay.json").write_text(json.dumps(cfg))
        # the relay binds the socket itself and says so on a FIFO opened here first
        ready = tmp / "ready"
        os.mkfifo(ready)
        fd = os.open(ready, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self.proc = subprocess.Popen(
                relay_argv(sys.executable, tmp / "relay.json", self.sock, ready), stdout=subprocess.DEVNULL,
                env={**os.environ, **relay_env(NodeRoot())}, stderr=open(tmp / "relay.log", "wb"),  # noqa: SIM115
                start_new_session=True)
            readable, _, _ = select.select([fd], [], [], 10)
            assert readable and os.read(fd, 64) == b"listening\n"
        finally:
            os.close(fd)

    def exit_record(self) -> dict[str, Any]:
        assert self.proc.wait(timeout=10) == 0
        return json.loads(self.exit_file.read_text())

    def stub_pid(self) -> int:
        return int(self.child_file.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def relay(tmp_path: Path):  # type: ignore[no-untyped-def]
    r = RelayProc(tmp_path)
    yield r
    r.kill()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def test_clients_share_the_node_and_its_exit_is_reported(relay: RelayProc) -> None:
    a, b = GuestAgentClient(relay.sock), GuestAgentClient(relay.sock)  # connected before the "boot" ends
    try:
        results: dict[str, Any] = {}

        def use(name: str, client: GuestAgentClient) -> None:
            results[name] = [client.request("echo", arg=f"{name}{i}", timeout=10)["arg"] for i in range(20)]

        threads = [threading.Thread(target=use, args=(n, c)) for n, c in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {n: [f"{n}{i}" for i in range(20)] for n in "ab"}
        info = a.request("relay", timeout=5)
        assert info["ready"] and info["clients"] == 2 and info["hello"]["release"] == "fake"
        with pytest.raises(AgentError, match="not one of the node's links"):
            a.request("hostlink", ifname="eth0", up=False, timeout=5)  # only the node's own links
        held = threading.Thread(target=lambda: results.update(held=_error(b, "hold")))
        held.start()
        with pytest.raises(AgentError, match=r"UML exited \(status 3\) before answering"):
            a.request("exit", code=3, timeout=10)
        held.join(10)
        assert "UML exited (status 3) before answering" in results["held"]
        assert "fake kernel: power down" in results["held"]  # the console tail comes along
    finally:
        a.close()
        b.close()
    rec = relay.exit_record()
    assert rec["returncode"] == 3 and rec["signal"] is None
    assert rec["console_tail"][-1] == "fake kernel: power down"
    assert _gone(relay.stub_pid())  # the stub UML left behind was killed and reaped
    assert not relay.sock.exists() and not relay.memdir.exists()


def _error(client: GuestAgentClient, op: str) -> str:
    try:
        client.request(op, timeout=10)
    except AgentError as e:
        return str(e)
    return ""


def test_sigterm_stops_uml_and_cleans_up(relay: RelayProc) -> None:
    c = GuestAgentClient(relay.sock)
    assert c.request("echo", arg=1, timeout=10)["arg"] == 1
    c.close()
    os.kill(relay.proc.pid, signal.SIGTERM)
    rec = relay.exit_record()
    assert rec["signal"] == "SIGTERM"
    assert _gone(relay.stub_pid())
    assert not relay.sock.exists() and not relay.memdir.exists()
    assert _wait_exit(relay.proc.pid, 1.0)


def test_unstartable_uml_is_reported(tmp_path: Path) -> None:
    cfg = {"argv": [str(tmp_path / "no-such-linux")], "console": str(tmp_path / "c.log"),
           "exit_file": str(tmp_path / "exit.json"), "remove": [str(tmp_path / "agent.sock")]}
    (tmp_path / "r.json").write_text(json.dumps(cfg))
    argv = relay_argv(sys.executable, tmp_path / "r.json", tmp_path / "agent.sock", tmp_path / "no-reader")
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                        env={**os.environ, **relay_env(NodeRoot())})
    assert cp.returncode == 1 and "cannot start UML" in cp.stderr
    assert "No such file" in json.loads((tmp_path / "exit.json").read_text())["console_tail"][0]
    assert not (tmp_path / "agent.sock").exists()
