"""Binding-update driver dispatch and its unix-socket command channel (no SCTP needed)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from testbed.host import jsonlines
from testbed.sctp import driver as drv


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        drv.sockapi, "bindx", lambda s, a, p, add=True: seen.append(("bindx", tuple(a), p, add))
    )
    monkeypatch.setattr(drv.sockapi, "set_peer_primary", lambda s, a, p: seen.append(("peerprim", a, p)))
    monkeypatch.setattr(drv.sockapi, "set_primary", lambda s, a, p: seen.append(("prim", a, p)))
    return seen


def test_trash_mode_maps_events_to_calls(calls: list[tuple[Any, ...]]) -> None:
    d = drv.BindingDriver(socket.socket(), local_port=4000, peer_port=5001)
    assert d.handle({"op": "add", "addr": "198.51.100.10"})["ok"]
    assert d.handle({"op": "primary", "addr": "198.51.100.10", "peer": "203.0.113.10"})["ok"]
    assert d.handle({"op": "del", "addr": "192.0.2.10"})["ok"]
    assert calls == [
        ("bindx", ("198.51.100.10",), 4000, True),
        ("peerprim", "198.51.100.10", 4000),  # SET_PEER_PRIMARY needs the LOCAL port
        ("prim", "203.0.113.10", 5001),  # SCTP_PRIMARY_ADDR needs the PEER's port
        ("bindx", ("192.0.2.10",), 4000, False),
    ]
    assert [e["op"] for e in d.log] == ["add", "primary", "del"]


def test_auto_asconf_mode_does_nothing(calls: list[tuple[Any, ...]]) -> None:
    d = drv.BindingDriver(socket.socket(), 4000, 5001, mode="auto_asconf")
    r = d.handle({"op": "add", "addr": "198.51.100.10"})
    assert r["ok"] and r["skipped"] == "auto_asconf" and calls == []


def test_errors_come_back_as_replies(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise OSError(99, "Cannot assign requested address")

    monkeypatch.setattr(drv.sockapi, "bindx", boom)
    d = drv.BindingDriver(socket.socket(), 4000, 5001)
    assert d.handle({"op": "add", "addr": "192.0.2.99"}) == {
        "ok": False,
        "error": "OSError: [Errno 99] Cannot assign requested address",
    }
    assert d.handle({"op": "fly"})["ok"] is False
    assert d.handle({"op": "add"})["ok"] is False  # missing addr


def test_bad_mode_rejected() -> None:
    with pytest.raises(ValueError):
        drv.BindingDriver(socket.socket(), 1, 2, mode="magic")


def test_command_channel_roundtrip(tmp_path: Path) -> None:
    srv = jsonlines.CommandServer(tmp_path / "c.sock", lambda cmd: {"ok": True, "echo": cmd})
    try:
        assert jsonlines.request(tmp_path / "c.sock", {"op": "status"}) == {
            "ok": True,
            "echo": {"op": "status"},
        }
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(tmp_path / "c.sock"))
            s.sendall(b"not json\n")
            assert b'"ok": false' in s.recv(4096)
    finally:
        srv.close()
    assert not (tmp_path / "c.sock").exists()
