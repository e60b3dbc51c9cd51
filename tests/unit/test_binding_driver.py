"""The one dispatcher and the client end of the binding-driver channel, on a recording driver:
in memory (``loopback``), over a Unix socket, and from the status command line."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from testbed.host import jsonlines
from testbed.mobility import driver, protocol
from testbed.mobility.driver import DriverError, NoAnswer, loopback, request
from testbed.mobility.protocol import Add, Delete, Done, Failed, Primary, State, Status


class Recording:
    """A BindingDriver that does nothing but remember what it was asked."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def _done(self, op, address: str, *extra: str) -> Done:
        self.calls.append((op, address, *extra))
        if self.fail is not None:
            raise self.fail
        return Done(op, address, 1.0, 0.001)

    def add(self, address: str, ifname: str = "") -> Done:
        return self._done("add", address, ifname)

    def primary(self, address: str) -> Done:
        return self._done("primary", address)

    def delete(self, address: str) -> Done:
        return self._done("delete", address)

    def status(self) -> State:
        return State("ESTABLISHED", tuple(sorted({c[1] for c in self.calls})), mode="test")


def test_the_dispatcher_maps_each_command_to_its_call() -> None:
    d = Recording()
    link = loopback(d)
    for cmd in (Add("198.51.100.10", "mn-ar2"), Primary("198.51.100.10"), Delete("192.0.2.10")):
        reply = request(link, cmd, "under test")
        assert isinstance(reply, Done) and reply.op == cmd.OP and reply.address == cmd.address
    assert d.calls == [("add", "198.51.100.10", "mn-ar2"), ("primary", "198.51.100.10"),
                       ("delete", "192.0.2.10")]
    assert request(link, Status(), "under test") == State("ESTABLISHED", ("192.0.2.10", "198.51.100.10"),
                                                          mode="test")


@pytest.mark.parametrize("exc", [OSError(99, "Cannot assign requested address"), TimeoutError("no join"),
                                 ValueError("'x' does not appear to be an IPv4 or IPv6 address")])
def test_a_refused_call_is_a_failed_reply(exc) -> None:
    reply = request(loopback(Recording(exc)), Add("192.0.2.99"), "under test")
    assert reply == Failed("add", f"{type(exc).__name__}: {exc}")


def test_a_bug_in_a_driver_is_not_swallowed() -> None:
    with pytest.raises(KeyError):
        driver.dispatch(Recording(KeyError("x")), Delete("192.0.2.10"))


def test_a_request_not_of_this_protocol_is_answered_in_it() -> None:
    d = Recording()
    for req, said in (({"op": "add", "addr": "192.0.2.1"}, 'no protocol version (field "v"'),
                      ({"v": 2, "op": "status"}, "protocol version 2"),
                      ({"v": 1, "op": "del", "address": "192.0.2.1"}, "unknown op 'del'")):
        reply = protocol.decode_reply(driver.answer(d, req))
        assert isinstance(reply, Failed) and said in reply.error, reply
    assert d.calls == []


def test_an_answer_in_another_version_is_one_line_naming_the_driver() -> None:
    def v2(msg: dict) -> dict:
        return {**driver.answer(Recording(), msg), "v": 2}

    with pytest.raises(DriverError) as e:
        request(v2, Status(), "at /run/testbed-traffic.sock")
    said = str(e.value)
    assert said.startswith("binding driver at /run/testbed-traffic.sock: protocol version 2")
    assert "\n" not in said


def test_a_reply_to_another_command_is_refused() -> None:
    def confused(msg: dict) -> dict:
        return protocol.encode(Done("delete", "192.0.2.10", 1.0))

    with pytest.raises(DriverError, match="answered 'delete' to 'add'"):
        request(confused, Add("198.51.100.10"), "x")
    with pytest.raises(DriverError, match="answered 'delete' to 'status'"):
        request(confused, Status(), "x")


def test_no_answer_names_the_socket(tmp_path: Path) -> None:
    sock = tmp_path / "gone.sock"
    with pytest.raises(NoAnswer) as e:
        request(driver.unix_channel(sock, timeout=1), Status(), f"at {sock}")
    assert str(e.value).startswith(f"binding driver at {sock}: no answer") and "\n" not in str(e.value)


def test_served_on_a_unix_socket(tmp_path: Path) -> None:
    d = Recording()
    srv = driver.serve(tmp_path / "c.sock", d)
    try:
        link = driver.unix_channel(tmp_path / "c.sock")
        assert isinstance(request(link, Add("198.51.100.10"), "c.sock"), Done)
        assert request(link, Status(), "c.sock").local == ("198.51.100.10",)
        # what is not this protocol still gets one line back, in it
        reply = jsonlines.request(tmp_path / "c.sock", {"op": "status"})
        assert reply["v"] == protocol.VERSION and reply["ok"] is False
        with socket.socket(socket.AF_UNIX) as s:  # and a line that is not JSON, a refusal
            s.connect(str(tmp_path / "c.sock"))
            s.sendall(b"not json\n")
            assert json.loads(s.makefile("rb").readline())["ok"] is False
    finally:
        srv.close()
    assert not (tmp_path / "c.sock").exists()


def test_the_status_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "c.sock"
    assert driver.main(["status", str(sock), "--timeout", "1"]) == 1
    assert capsys.readouterr().err.strip().startswith(f"binding driver at {sock}: no answer")
    srv = driver.serve(sock, Recording())
    try:
        assert driver.main(["status", str(sock)]) == 0
        assert json.loads(capsys.readouterr().out)["state"] == "ESTABLISHED"
    finally:
        srv.close()
    v2 = jsonlines.CommandServer(sock, lambda req: {**driver.answer(Recording(), req), "v": 2})
    try:
        assert driver.main(["status", str(sock)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"binding driver at {sock}: protocol version 2" in err
    finally:
        v2.close()
