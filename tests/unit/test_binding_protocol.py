"""The binding-driver protocol's wire schema: every message survives the JSON text a socket
carries, and what is not this version of it is refused with one line naming the field."""

from __future__ import annotations

import json

import pytest

from testbed.mobility import protocol
from testbed.mobility.protocol import Add, Delete, Done, Failed, Primary, ProtocolError, State, Status

COMMANDS = [Add("198.51.100.10", "mn-ar2"), Add("2001:db8:a2::5"), Primary("198.51.100.10"),
            Delete("192.0.2.10"), Status()]
REPLIES = [
    Done("add", "198.51.100.10", 1700000000.25, 0.0004, acked=True, ack_s=0.012),
    Done("primary", "2001:db8:a2::5", 1700000001.0, 0.001, peer="2001:db8:ff:c::2"),
    Done("delete", "192.0.2.10", 1700000002.0, skipped="auto_asconf"),
    Done("add", "198.51.100.100", 1700000003.0, 0.02, detail={"id": 1, "joined": 1700000003.01}),
    State("ESTABLISHED", ("192.0.2.10", "2001:db8:a1::5"), ("203.0.113.14",), "203.0.113.14", (4, 6),
          "trash", {"srtt_ms": 12}),
    State("connected"),
    Failed("add", "OSError: [Errno 99] Cannot assign requested address"),
]


def _through_text(obj: dict) -> object:
    return json.loads(json.dumps(obj))


@pytest.mark.parametrize("cmd", COMMANDS, ids=repr)
def test_every_command_round_trips(cmd) -> None:
    wire = _through_text(protocol.encode(cmd))
    assert wire["v"] == protocol.VERSION and wire["op"] == cmd.OP and "ok" not in wire
    assert protocol.decode_command(wire) == cmd


@pytest.mark.parametrize("reply", REPLIES, ids=repr)
def test_every_reply_round_trips(reply) -> None:
    wire = _through_text(protocol.encode(reply))
    assert wire["v"] == protocol.VERSION and wire["ok"] is not isinstance(reply, Failed)
    assert protocol.decode_reply(wire) == reply


def test_the_wire_form_is_flat_with_lists() -> None:
    assert protocol.encode(Add("198.51.100.10", "mn-ar2")) == {
        "v": 1, "op": "add", "address": "198.51.100.10", "ifname": "mn-ar2"}
    wire = protocol.encode(State("ESTABLISHED", ("192.0.2.10",), families=(4,)))
    assert wire["op"] == "status" and wire["local"] == ["192.0.2.10"] and wire["families"] == [4]


@pytest.mark.parametrize("v", [2, 0, "1", None])
def test_another_version_is_refused_either_way(v) -> None:
    cmd = {**protocol.encode(Status()), "v": v}
    reply = {**protocol.encode(State("ESTABLISHED")), "v": v}
    if v is None:
        del cmd["v"], reply["v"]
    for decode, msg in ((protocol.decode_command, cmd), (protocol.decode_reply, reply)):
        with pytest.raises(ProtocolError, match='field "v"') as e:
            decode(msg)
        assert "\n" not in str(e.value) and "speaks 1" in str(e.value)


@pytest.mark.parametrize("msg, said", [
    ({"v": 1, "op": "add", "addr": "192.0.2.1"}, "add: unknown field 'addr' (fields: address, ifname)"),
    ({"v": 1, "op": "add"}, "add: missing field 'address'"),
    ({"v": 1, "op": "add", "address": 3}, "add.address: expected str, got 3"),
    ({"v": 1, "op": "del", "address": "192.0.2.1"}, "unknown op 'del'"),
    ({"v": 1}, "unknown op None"),
    ({"v": 1, "ok": True, "op": "status", "state": "x"}, "a reply where a command was expected"),
    (["add"], "expected a JSON object"),
])
def test_a_bad_command_names_its_field(msg, said) -> None:
    with pytest.raises(ProtocolError) as e:
        protocol.decode_command(msg)
    assert said in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("msg, said", [
    ({"v": 1, "ok": "yes"}, 'field "ok"'),
    ({"v": 1, "ok": True, "op": "fly"}, "reply to unknown op 'fly'"),
    ({"v": 1, "ok": True, "op": "add", "address": "a", "t": 1.0, "acked": "yes"}, "add.acked: expected bool"),
    ({"v": 1, "ok": True, "op": "add", "address": "a", "t": True}, "add.t: expected float"),
    ({"v": 1, "ok": True, "op": "status", "state": "E", "local": "a"}, "status.local: expected a list"),
    ({"v": 1, "ok": True, "op": "status", "state": "E", "families": ["4"]},
     "status.families[0]: expected int"),
    ({"v": 1, "ok": True, "op": "status"}, "status: missing field 'state'"),
    ({"v": 1, "ok": False, "error": "x"}, "reply: missing field 'op'"),
])
def test_a_bad_reply_names_its_field(msg, said) -> None:
    with pytest.raises(ProtocolError) as e:
        protocol.decode_reply(msg)
    assert said in str(e.value)

